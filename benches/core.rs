//! Micro-benchmarks of the hot paths in `sundial-core`:
//! - `Schedule::next_after` for ten representative expressions, in UTC and in
//!   a DST zone (America/New_York), starting just before the 2026 spring-forward
//!   day so the DST walk is exercised;
//! - codec encode/decode of a fire event in bincode (its wire format) and JSON.
//!
//! `cargo bench -p sundial-core` prints time per operation (ns/op) for each.
//! No assertions: numbers go to docs/benchmarks.md, not into tests.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sundial_core::{
    codec::{decode, encode_as},
    job::Executor,
    protocol::{fire::FireEvent, Format},
    HumanDuration, Schedule,
};

const EXPRESSIONS: &[&str] = &[
    "* * * * *",
    "*/15 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "10,40 2 * * *",
    "0 9 * * 1-5",
    "0 0 1 * *",
    "0 0 L * *",
    "*/10 * * * * *",
    "0 0 * * FRI#2",
];

fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn next_after(c: &mut Criterion) {
    let start = instant("2026-03-07T12:00:00Z");
    for zone in [Tz::UTC, Tz::America__New_York] {
        let mut g = c.benchmark_group(format!("next_after/{}", zone.name()));
        for expr in EXPRESSIONS {
            let Ok(s) = Schedule::parse(expr, zone, start) else {
                continue;
            };
            g.bench_with_input(BenchmarkId::from_parameter(expr), &s, |b, s| {
                b.iter(|| black_box(s.next_after(black_box(start))));
            });
        }
        g.finish();
    }
}

fn fire_event() -> FireEvent {
    FireEvent {
        fire_id: "reports.daily@2026-03-08T07:00:00.000Z".into(),
        job_id: "reports.daily".into(),
        pool: "default".into(),
        shard: 17,
        epoch: 3,
        scheduled_at: instant("2026-03-08T07:00:00Z"),
        fired_at: instant("2026-03-08T07:00:00.002Z"),
        attempt: 1,
        manual: false,
        executor: Executor::Handler {
            name: "reports.daily".into(),
        },
        payload: serde_json::json!({"report": "daily", "recipients": ["ops@example.invalid"]}),
        timeout: HumanDuration::from_secs(300),
        retry: Default::default(),
        overlap: Default::default(),
        first_failure: None,
        signature: None,
    }
}

fn codec(c: &mut Criterion) {
    let ev = fire_event();
    let mut g = c.benchmark_group("codec/fire_event");
    for format in [Format::Bincode, Format::Json] {
        let name = format!("{format:?}").to_lowercase();
        let Ok(enc) = encode_as(&ev, format) else {
            continue;
        };
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| black_box(encode_as(black_box(&ev), format)));
        });
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| black_box(decode::<FireEvent>(&enc.meta, black_box(&enc.body))));
        });
    }
    g.finish();
}

criterion_group!(benches, next_after, codec);
criterion_main!(benches);
