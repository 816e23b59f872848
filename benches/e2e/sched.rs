//! Scheduler phases: the raw publish-with-confirms baseline, steady fire
//! lateness with N jobs registered, and a burst of fires due in the same
//! second (fire throughput), all with the scheduler running in this process
//! so its own metrics histograms give exact samples.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lapin::{options::*, BasicProperties, Connection};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use sundial_amqp::{broker::connect, client};
use sundial_core::{
    protocol::control::Command as Ctl,
    settings::{RawSettings, Settings},
    JobSpec,
};
use sundial_runtime::metrics as m;
use sundial_scheduler::{self as scheduler, SchedulerConfig};
use tokio_util::sync::CancellationToken;

use crate::common::{pct, raw_publish, raw_queues, Vhost};

/// Collects histogram samples by name; counters and gauges are ignored.
#[derive(Default)]
pub(crate) struct Samples(Mutex<BTreeMap<String, Vec<f64>>>);

struct Hist(Arc<Samples>, String);

impl HistogramFn for Hist {
    fn record(&self, value: f64) {
        if let Ok(mut m) = self.0 .0.lock() {
            m.entry(self.1.clone()).or_default().push(value);
        }
    }
}

pub(crate) struct Rec(pub(crate) Arc<Samples>);

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
    pub(crate) fn take(&self, name: &str) -> Vec<f64> {
        self.0
            .lock()
            .map(|mut m| m.remove(name).unwrap_or_default())
            .unwrap_or_default()
    }
}

pub(crate) fn rss_mib() -> f64 {
    rss_of("self")
}

/// The RSS of process `pid` (`self` for this one), MiB; NaN when unknown.
pub(crate) fn rss_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub(crate) fn settings(v: &Vhost, shards: u32) -> Settings {
    let mut raw = RawSettings::default();
    raw.broker.url = v.url();
    raw.topology.shards = shards;
    Settings::try_from(raw).expect("bench settings are valid")
}

/// The raw ceiling: the best of several shapes (publisher channels,
/// confirms in flight in all), each over `n` messages, after an untimed
/// warm-up (a cluster's fresh quorum queues are slow for their first
/// seconds). On a replicated queue a confirm takes longer and each channel
/// process does more, so more channels and more in flight help there:
/// Sundial's 64 shards each publish on a channel of their own with every due
/// fire in flight, and the ceiling must not be a shape it never has.
pub(crate) struct Ceiling {
    pub(crate) best: f64,
    /// (channels, in flight, msg/s), in the order given.
    pub(crate) per_shape: Vec<(usize, usize, f64)>,
    /// CPU per 1,000 messages of the best shape (broker, this process).
    pub(crate) cpu: crate::common::cpu::Split,
}

/// Raw lapin: (the ceiling, confirm latency p50/p99 paced at `rate`/s).
pub(crate) async fn raw_baseline(
    conn: &Connection,
    queues: u32,
    n: usize,
    shapes: &[(usize, usize)],
    rate: u32,
    paced_for: Duration,
) -> (Ceiling, f64, f64) {
    let ch = raw_queues(conn, queues).await;
    let body = vec![7u8; 256];
    let props = BasicProperties::default().with_delivery_mode(2);
    let _warm_up = ceiling(conn, queues, n / 10, 8, 1_000, &body, &props).await;
    let mut per_shape = Vec::new();
    let mut best_cpu = (0.0, crate::common::cpu::Split::default());
    for &(c, w) in shapes {
        let before = crate::common::cpu::now(&[]);
        let rate = ceiling(conn, queues, n, c, w, &body, &props).await;
        let cpu = (crate::common::cpu::now(&[]) - before).per_thousand(n);
        if rate > best_cpu.0 {
            best_cpu = (rate, cpu);
        }
        per_shape.push((c, w, rate));
    }
    let best = per_shape.iter().map(|(_, _, r)| *r).fold(0.0, f64::max);
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
    (
        Ceiling {
            best,
            per_shape,
            cpu: best_cpu.1,
        },
        pct(&mut l, 0.5),
        pct(&mut l, 0.99),
    )
}

/// `n` raw publishes from `channels` confirm channels of their own (as
/// Sundial's shards publish on channels of their own), pipelined, `window`
/// confirms outstanding in all: msg/s.
async fn ceiling(
    conn: &Connection,
    queues: u32,
    n: usize,
    channels: usize,
    window: usize,
    body: &[u8],
    props: &BasicProperties,
) -> f64 {
    let mut publishers = Vec::new();
    for c in 0..channels {
        let pch = conn.create_channel().await.expect("channel");
        pch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        publishers.push(async move {
            let mut pending = std::collections::VecDeque::new();
            for i in (c..n).step_by(channels) {
                let q = format!("raw.{}", i as u32 % queues);
                pending.push_back(raw_publish(&pch, &q, body, props).await);
                if pending.len() >= (window / channels).max(1) {
                    let c = pending.pop_front().expect("non-empty");
                    assert!(c.await.expect("confirm").is_ack());
                }
            }
            for c in pending {
                assert!(c.await.expect("confirm").is_ack());
            }
            let _ = pch.close(200, "".into()).await;
        });
    }
    let start = Instant::now();
    futures_util::future::join_all(publishers).await;
    n as f64 / start.elapsed().as_secs_f64()
}

pub(crate) async fn register(conn: &Connection, s: &Settings, jobs: Vec<JobSpec>) {
    for batch in jobs.chunks(1000) {
        register_batch(conn, s, batch.to_vec()).await;
    }
}

/// One `upsert-many` command; panics when any job is refused.
pub(crate) async fn register_batch(conn: &Connection, s: &Settings, batch: Vec<JobSpec>) {
    let reply = client::call(
        conn,
        &s.topology,
        &Ctl::UpsertMany {
            by: None,
            reason: None,
            jobs: batch,
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

/// Jobs `@every {period}s` number `from..to`, anchored at pseudo-random
/// milliseconds of one period (via `start_at`, up to a period in the past),
/// so `n / period` fires per second arrive evenly spread.
pub(crate) fn spread_jobs_range(from: usize, to: usize, period: u64, prefix: &str) -> Vec<JobSpec> {
    let base = chrono::Utc::now().timestamp_millis();
    let period_ms = period * 1000;
    (from..to)
        .map(|i| {
            let mut x = (i as u64) ^ 0x9e37_79b9_7f4a_7c15;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let offset = i64::try_from(x % period_ms).unwrap_or(0);
            let start = chrono::DateTime::from_timestamp_millis(
                base - i64::try_from(period_ms).unwrap_or(0) + offset,
            )
            .expect("instant");
            serde_json::from_value(serde_json::json!({
                "id": format!("{prefix}-{i}"), "schedule": format!("@every {period}s"),
                "start_at": start.to_rfc3339(), "executor": {"type": "noop"}
            }))
            .expect("job")
        })
        .collect()
}

/// Runs a scheduler on `v` while `work` runs; returns what `work` returns.
pub(crate) async fn with_scheduler<T>(
    s: &Settings,
    work: impl std::future::Future<Output = T>,
) -> T {
    let token = CancellationToken::new();
    let cfg = SchedulerConfig::from_settings(s, "bench".into());
    // Declare first, as deployments do, so registration cannot race it.
    let conn = connect(&s.broker.url, "bench-topology")
        .await
        .expect("connect");
    sundial_amqp::topology::apply(&conn, &s.topology.declarations())
        .await
        .expect("topology");
    let _ = conn.close(200, "".into()).await;
    let handle = actix::spawn(scheduler::run(cfg, token.clone()));
    let out = work.await;
    token.cancel();
    let _ = handle.await;
    out
}

pub(crate) async fn drain_queues(v: &Vhost, shards: u32) {
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

/// What a steady phase measured.
pub(crate) struct Steady {
    pub(crate) fires_per_s: f64,
    pub(crate) due_per_s: f64,
    /// Seconds: handed to the connection − due.
    pub(crate) precision: Vec<f64>,
    /// Seconds: confirmed − scheduled.
    pub(crate) lateness: Vec<f64>,
}

/// Measures `secs` seconds of firing (after a 2 s settle) with whatever is
/// registered; fires accumulate in the work queues and are purged after.
pub(crate) async fn measure_window(
    samples: &Samples,
    v: &Vhost,
    shards: u32,
    secs: u64,
    due_per_s: f64,
    tick: impl Fn(u64),
) -> Steady {
    tokio::time::sleep(Duration::from_secs(2)).await;
    samples.take(m::FIRE_PRECISION_SECONDS);
    samples.take(m::FIRE_LATENESS_SECONDS);
    let window = Instant::now();
    for s in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tick(s + 1);
    }
    let precision = samples.take(m::FIRE_PRECISION_SECONDS);
    let lateness = samples.take(m::FIRE_LATENESS_SECONDS);
    let elapsed = window.elapsed().as_secs_f64();
    drain_queues(v, shards).await;
    Steady {
        fires_per_s: lateness.len() as f64 / elapsed,
        due_per_s,
        precision,
        lateness,
    }
}

/// Steady: `n` jobs `@every 20s` spread evenly (n / 20 fires/s), `secs`
/// seconds measured.
pub(crate) async fn steady(
    samples: &Samples,
    n: usize,
    secs: u64,
    shards: u32,
    tick: impl Fn(u64),
) -> Steady {
    let v = crate::common::vhost(&format!("steady{n}"));
    let s = settings(&v, shards);
    with_scheduler(&s, async {
        let conn = connect(&v.url(), "bench-client").await.expect("connect");
        register(&conn, &s, spread_jobs_range(0, n, 20, "j")).await;
        let out = measure_window(samples, &v, shards, secs, n as f64 / 20.0, tick).await;
        let _ = conn.close(200, "".into()).await;
        out
    })
    .await
}

/// Burst: `n` cron jobs due in the same second (`*/15 * * * * *`); returns
/// (fires confirmed per second over the burst, seconds to confirm all).
pub(crate) async fn burst(
    samples: &Samples,
    n: usize,
    shards: u32,
) -> (f64, f64, crate::common::cpu::Split) {
    let v = crate::common::vhost("burst");
    let s = settings(&v, shards);
    let mut cpu = crate::common::cpu::Split::default();
    let mut late = with_scheduler(&s, async {
        let conn = connect(&v.url(), "bench-client").await.expect("connect");
        let jobs: Vec<JobSpec> = (0..n)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "id": format!("b-{i}"), "schedule": "*/15 * * * * *", "executor": {"type": "noop"}
                }))
                .expect("job")
            })
            .collect();
        register(&conn, &s, jobs).await;
        // Measure one whole round: start counting just before the next
        // 15 s boundary, when no fire of an earlier round (one that began
        // while the jobs were being registered) is still in flight.
        let now = chrono::Utc::now();
        let ms_into = now.timestamp_millis().rem_euclid(15_000);
        let mut wait_ms = 15_000 - ms_into - 300;
        if wait_ms < 2_000 {
            wait_ms += 15_000;
        }
        tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))).await;
        samples.take(m::FIRE_LATENESS_SECONDS);
        // Wait for the round's `n` confirmed fires.
        let start = Instant::now();
        let cpu_before = crate::common::cpu::now(&[]);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let got = samples
                .0
                .lock()
                .map(|m| m.get(m::FIRE_LATENESS_SECONDS).map_or(0, Vec::len))
                .unwrap_or(0);
            if got >= n || start.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        cpu = (crate::common::cpu::now(&[]) - cpu_before).per_thousand(n);
        let _ = conn.close(200, "".into()).await;
        samples.take(m::FIRE_LATENESS_SECONDS)
    })
    .await;
    assert!(
        late.len() >= n,
        "burst: {} of {n} fires confirmed within 60 s",
        late.len()
    );
    let last = pct(&mut late, 1.0);
    (n as f64 / last.max(1e-9), last, cpu)
}
