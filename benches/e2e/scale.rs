//! Scale: N jobs (1,000,000 by default) on one scheduler node: registration
//! through the control queue (`upsert-many`, 1,000 per command), the node's
//! RSS, fire lateness while ~5,000 fires/s are due, and the registry replay
//! time of a fresh node.

use std::time::{Duration, Instant};

use sundial_amqp::broker::connect;
use sundial_scheduler::{self as scheduler, SchedulerConfig};
use tokio_util::sync::CancellationToken;

use crate::sched::{
    drain_queues, measure_window, register_batch, rss_mib, settings, spread_jobs_range, Samples,
    Steady,
};

pub(crate) struct Scale {
    pub(crate) jobs: usize,
    pub(crate) register_s: f64,
    pub(crate) rss_growth_mib: f64,
    pub(crate) replay_s: f64,
    pub(crate) steady: Steady,
    /// The replayed node's API over HTTP, seconds per request: a page of 50
    /// jobs at a random place of the list, a search that matches one job
    /// (a walk over every id), one job with its next 10 fires.
    pub(crate) api_page: Vec<f64>,
    pub(crate) api_search: Vec<f64>,
    pub(crate) api_job: Vec<f64>,
}

/// Fires per second due in the scale phase.
pub(crate) const SCALE_RATE: usize = 5_000;

pub(crate) async fn scale(
    samples: &Samples,
    n: usize,
    shards: u32,
    secs: u64,
    settle: u64,
    progress: impl Fn(&str, u64, u64),
) -> Scale {
    let v = crate::common::vhost(&format!("scale{n}"));
    let s = settings(&v, shards);
    let conn = connect(&v.url(), "bench-scale").await.expect("connect");
    sundial_amqp::topology::apply(&conn, &s.topology.declarations())
        .await
        .expect("topology");
    let period = (n / SCALE_RATE).max(1) as u64;
    let rss_before = rss_mib();

    // Node 1: takes every registration, then fires.
    let token = CancellationToken::new();
    let cfg = SchedulerConfig::from_settings(&s, "scale-a".into());
    let health = cfg.health.clone();
    let node = actix::spawn(scheduler::run(cfg, token.clone()));
    wait_ready(&health).await;
    let t0 = Instant::now();
    let batch = 1_000;
    for from in (0..n).step_by(batch) {
        let jobs = spread_jobs_range(from, (from + batch).min(n), period, "s");
        register_batch(&conn, &s, jobs).await;
        progress("registering", (from + batch).min(n) as u64, n as u64);
    }
    let register_s = t0.elapsed().as_secs_f64();
    // Steady state, not the bulk load's aftermath: the broker has just
    // written the registry stream (hundreds of MB at 1M jobs).
    for t in 0..settle {
        tokio::time::sleep(Duration::from_secs(1)).await;
        progress("settling", t + 1, settle);
    }
    drain_queues(&v, shards).await;
    let steady = measure_window(samples, &v, shards, secs, n as f64 / period as f64, |t| {
        progress("firing", t, secs)
    })
    .await;
    let rss_growth_mib = rss_mib() - rss_before;
    token.cancel();
    let _ = node.await;
    drain_queues(&v, shards).await;

    // Node 2: a fresh start replays the registry (from its snapshot).
    progress("replaying", 0, 1);
    let token = CancellationToken::new();
    let cfg = SchedulerConfig::from_settings(&s, "scale-b".into());
    let api = sundial_web::api::Api::new(sundial_web::api::ApiConfig::from_settings(
        &s, "scale-b", None,
    ));
    api.set_registry(Some(std::sync::Arc::new(sundial::wiring::SchedulerJobs(
        cfg.reads.clone(),
    ))));
    let health = cfg.health.clone();
    let t1 = Instant::now();
    let node = actix::spawn(scheduler::run(cfg, token.clone()));
    wait_ready(&health).await;
    let replay_s = t1.elapsed().as_secs_f64();
    progress("replaying", 1, 1);
    let addr = crate::common::serve_api(api, token.clone()).await;
    let get = |path: String| async move {
        let (status, secs, bytes) =
            tokio::task::spawn_blocking(move || crate::common::timed_get(&addr, &path))
                .await
                .expect("request task");
        assert_eq!(status, 200, "the API answers");
        (secs, bytes)
    };
    let (mut api_page, mut api_search, mut api_job) = (Vec::new(), Vec::new(), Vec::new());
    for q in 0..200usize {
        progress("API", q as u64, 200);
        let at = (q * 7919) % n;
        api_page.push(get(format!("/api/v1/jobs?limit=50&cursor=s-{at}")).await.0);
        api_job.push(get(format!("/api/v1/jobs/s-{at}?next=10")).await.0);
        if q < 20 {
            api_search.push(get(format!("/api/v1/jobs?limit=50&q=s-{at}x")).await.0);
        }
    }
    token.cancel();
    let _ = node.await;
    let _ = conn.close(200, "".into()).await;
    drop(v);
    Scale {
        jobs: n,
        register_s,
        rss_growth_mib,
        replay_s,
        steady,
        api_page,
        api_search,
        api_job,
    }
}

/// Until the scheduler reports ready (connected, registry replayed).
async fn wait_ready(health: &sundial_runtime::Health) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while health.ready().is_err() {
        assert!(
            Instant::now() < deadline,
            "scheduler not ready within 10 min"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
