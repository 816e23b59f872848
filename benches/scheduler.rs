//! Scheduler load benchmark against the local RabbitMQ, with a raw lapin
//! baseline measured in the same run (the machine is shared and noisy, so
//! only same-run ratios mean something).
//!
//! ```text
//! cargo bench -p sundial-actors --bench scheduler            # 10k and 100k jobs, 15 s each
//! cargo bench -p sundial-actors --bench scheduler -- --quick # 10k jobs, 8 s
//! ```
//!
//! Phases, each in its own vhost (created and deleted with rabbitmqctl):
//! 1. raw: lapin publish-with-confirms to quorum queues like the work
//!    queues: ceiling throughput (pipelined) and confirm latency (paced).
//! 2. steady: N jobs `@every 20s` anchored at random milliseconds (N/20
//!    fires per second, evenly spread), for D seconds: fires/s, timer
//!    precision (handed to the connection − due), confirmed lateness
//!    (confirmed − scheduled), RSS.
//! 3. burst: 20k cron jobs due in the same second (`*/15 * * * * *`): fire
//!    throughput vs the raw ceiling.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lapin::{options::*, BasicProperties, Connection};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use sundial_actors::{
    broker::connect,
    client, metrics as m,
    scheduler::{self, SchedulerConfig},
};
use sundial_core::{
    protocol::control::Command as Ctl,
    settings::{RawSettings, Settings},
    JobSpec,
};
use tokio_util::sync::CancellationToken;

#[path = "common.rs"]
mod common;
use common::{ms, pct, raw_publish, raw_queues, Vhost};

/// Collects histogram samples by name; counters and gauges are ignored.
#[derive(Default)]
struct Samples(Mutex<BTreeMap<String, Vec<f64>>>);

struct Hist(Arc<Samples>, String);

impl HistogramFn for Hist {
    fn record(&self, value: f64) {
        if let Ok(mut m) = self.0 .0.lock() {
            m.entry(self.1.clone()).or_default().push(value);
        }
    }
}

struct Rec(Arc<Samples>);

impl Recorder for Rec {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Hist(self.0.clone(), key.name().to_string())))
    }
}

impl Samples {
    fn take(&self, name: &str) -> Vec<f64> {
        self.0
            .lock()
            .map(|mut m| m.remove(name).unwrap_or_default())
            .unwrap_or_default()
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn settings(v: &Vhost, shards: u32) -> Settings {
    let mut raw = RawSettings::default();
    raw.broker.url = v.url();
    raw.topology.shards = shards;
    Settings::try_from(raw).expect("bench settings are valid")
}

/// Raw lapin: (ceiling msgs/s with `window` confirms in flight, confirm
/// latency p50/p99 paced at `rate`/s).
async fn raw_baseline(
    conn: &Connection,
    queues: u32,
    n: usize,
    window: usize,
    rate: u32,
    paced_for: Duration,
) -> (f64, f64, f64) {
    let ch = raw_queues(conn, queues).await;
    let body = vec![7u8; 256];
    let props = BasicProperties::default().with_delivery_mode(2);
    // Ceiling: pipelined, `window` confirms outstanding.
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        let q = format!("raw.{}", i as u32 % queues);
        let c = raw_publish(&ch, &q, &body, &props).await;
        pending.push_back(c);
        if pending.len() >= window {
            let c = pending.pop_front().expect("non-empty");
            assert!(c.await.expect("confirm").is_ack());
        }
    }
    for c in pending {
        assert!(c.await.expect("confirm").is_ack());
    }
    let ceiling = n as f64 / start.elapsed().as_secs_f64();
    // Latency: paced, each confirm timed in its own task.
    let lat = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let end = Instant::now() + paced_for;
    let mut tasks = Vec::new();
    let mut i = 0u32;
    while Instant::now() < end {
        tick.tick().await;
        let q = format!("raw.{}", i % queues);
        i += 1;
        let sent = Instant::now();
        let c = raw_publish(&ch, &q, &body, &props).await;
        let lat = lat.clone();
        tasks.push(tokio::spawn(async move {
            if c.await.map(|c| c.is_ack()).unwrap_or(false) {
                if let Ok(mut l) = lat.lock() {
                    l.push(sent.elapsed().as_secs_f64());
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    (ceiling, pct(&mut l, 0.5), pct(&mut l, 0.99))
}

async fn register(conn: &Connection, s: &Settings, jobs: Vec<JobSpec>) {
    for batch in jobs.chunks(1000) {
        let reply = client::call(
            conn,
            &s.topology,
            &Ctl::UpsertMany {
                jobs: batch.to_vec(),
            },
            Duration::from_secs(120),
        )
        .await
        .expect("registration reply");
        assert!(
            reply.ok,
            "registration refused: {:?} (first: {:?})",
            reply.error,
            reply
                .results
                .as_ref()
                .and_then(|r| r.iter().find(|i| !i.ok))
        );
    }
}

/// `n` jobs `@every 20s`, anchored at random milliseconds of a 20 s window
/// (via `start_at`), so `n / 20` fires per second arrive evenly spread.
fn spread_jobs(n: usize, prefix: &str) -> Vec<JobSpec> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let base = chrono::Utc::now().timestamp_millis();
    (0..n)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Anchored up to 20 s in the past: the first fire is within 20 s.
            let offset = i64::try_from(seed % 20_000).unwrap_or(0);
            let start = chrono::DateTime::from_timestamp_millis(base - 20_000 + offset).expect("instant");
            serde_json::from_value(serde_json::json!({
                "id": format!("{prefix}-{i}"), "schedule": "@every 20s", "start_at": start.to_rfc3339(), "executor": {"type": "noop"}
            }))
            .expect("job")
        })
        .collect()
}

/// Runs a scheduler on `v` while `work` runs; returns what `work` returns.
async fn with_scheduler<T>(s: &Settings, work: impl std::future::Future<Output = T>) -> T {
    let token = CancellationToken::new();
    let cfg = SchedulerConfig::from_settings(s, "bench".into());
    // Declare first, as deployments do, so registration cannot race it.
    let conn = connect(&s.broker.url, "bench-topology")
        .await
        .expect("connect");
    sundial_actors::topology::apply(&conn, &s.topology.declarations())
        .await
        .expect("topology");
    let _ = conn.close(200, "".into()).await;
    let handle = actix::spawn(scheduler::run(cfg, token.clone()));
    let out = work.await;
    token.cancel();
    let _ = handle.await;
    out
}

async fn drain_queues(v: &Vhost, shards: u32) {
    // Keep the work queues from growing without bound: purge them.
    if let Ok(conn) = connect(&v.url(), "bench-purge").await {
        if let Ok(ch) = conn.create_channel().await {
            for q in 0..shards {
                let _ = ch
                    .queue_purge(
                        format!("sundial.work.default.{q}").as_str().into(),
                        QueuePurgeOptions::default(),
                    )
                    .await;
            }
        }
        let _ = conn.close(200, "".into()).await;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: Vec<usize> = if quick {
        vec![10_000]
    } else {
        vec![10_000, 100_000]
    };
    let secs: u32 = if quick { 8 } else { 15 };
    let shards = 64;

    let samples = Arc::new(Samples::default());
    metrics::set_global_recorder(Rec(samples.clone())).expect("first recorder");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    actix::System::with_tokio_rt(move || rt).block_on(async move {
        println!("sundial scheduler benchmark ({} shards, quorum work queues, 256-byte raw messages)", shards);
        let v = Vhost::new("raw");
        let conn = connect(&v.url(), "bench-raw").await.expect("connect");
        let (ceiling, raw_p50, raw_p99) = raw_baseline(&conn, shards, 20_000, 1_000, 5_000, Duration::from_secs(if quick { 3 } else { 5 })).await;
        let _ = conn.close(200, "".into()).await;
        drop(v);
        println!("raw lapin: publish-with-confirms ceiling {ceiling:.0} msg/s; confirm latency at 5k/s p50 {} p99 {}", ms(raw_p50), ms(raw_p99));

        for &n in &sizes {
            let v = Vhost::new(&format!("steady{n}"));
            let s = settings(&v, shards);
            let rss_before = rss_mib();
            let (mut prec, mut late, rss, elapsed) = with_scheduler(&s, async {
                let conn = connect(&v.url(), "bench-client").await.expect("connect");
                let t0 = Instant::now();
                register(&conn, &s, spread_jobs(n, "j")).await;
                println!("steady {n}: registered in {:.1} s", t0.elapsed().as_secs_f64());
                // Let the first round settle, then measure.
                tokio::time::sleep(Duration::from_secs(2)).await;
                samples.take(m::FIRE_PRECISION_SECONDS);
                samples.take(m::FIRE_LATENESS_SECONDS);
                let window = Instant::now();
                // Fires accumulate in the work queues (no workers), as the raw
                // baseline's messages do; purged after the window.
                tokio::time::sleep(Duration::from_secs(u64::from(secs))).await;
                let prec = samples.take(m::FIRE_PRECISION_SECONDS);
                let late = samples.take(m::FIRE_LATENESS_SECONDS);
                let elapsed = window.elapsed().as_secs_f64();
                drain_queues(&v, shards).await;
                let _ = conn.close(200, "".into()).await;
                (prec, late, rss_mib(), elapsed)
            })
            .await;
            let rate = late.len() as f64 / elapsed;
            println!(
                "steady {n} jobs: {rate:.0} fires/s (due: {:.0}/s); precision p50 {} p99 {} max {}; confirmed lateness p50 {} p99 {} max {} (raw confirm p99 {}: ratio {:.2}); RSS {rss:.0} MiB (+{:.0})",
                n as f64 / 20.0,
                ms(pct(&mut prec, 0.5)), ms(pct(&mut prec, 0.99)), ms(pct(&mut prec, 1.0)),
                ms(pct(&mut late, 0.5)), ms(pct(&mut late, 0.99)), ms(pct(&mut late, 1.0)),
                ms(raw_p99), pct(&mut late, 0.99) / raw_p99,
                rss - rss_before,
            );
        }

        // Burst: many fires due in the same second.
        let burst = if quick { 10_000 } else { 20_000 };
        let v = Vhost::new("burst");
        let s = settings(&v, shards);
        let mut late = with_scheduler(&s, async {
            let conn = connect(&v.url(), "bench-client").await.expect("connect");
            let jobs: Vec<JobSpec> = (0..burst)
                .map(|i| serde_json::from_value(serde_json::json!({"id": format!("b-{i}"), "schedule": "*/15 * * * * *", "executor": {"type": "noop"}})).expect("job"))
                .collect();
            register(&conn, &s, jobs).await;
            samples.take(m::FIRE_LATENESS_SECONDS);
            // Wait for one full round of `burst` confirmed fires.
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let got = samples.0.lock().map(|m| m.get(m::FIRE_LATENESS_SECONDS).map_or(0, Vec::len)).unwrap_or(0);
                if got >= burst || start.elapsed() > Duration::from_secs(60) {
                    break;
                }
            }
            let _ = conn.close(200, "".into()).await;
            samples.take(m::FIRE_LATENESS_SECONDS)
        })
        .await;
        let last = pct(&mut late, 1.0);
        let thr = late.len() as f64 / last.max(1e-9);
        println!(
            "burst {burst} fires due at once: all confirmed within {} → {thr:.0} fires/s; raw ceiling {ceiling:.0} msg/s: ratio {:.2} (target ≥ 0.8)",
            ms(last),
            thr / ceiling
        );
    });
}
