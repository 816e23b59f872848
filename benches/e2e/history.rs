//! Phase 7, the history index (ADR 0015): records/s written into a fresh index
//! the way the indexer writes them (groups of stream messages of a few
//! hundred records, each attempt a `started` and a `succeeded` record),
//! size on disk, process RSS growth, and query latency with it full:
//! "the last 50 runs of a job" and "the failed runs of one pool in a given
//! hour" (newest 50). No broker: this is the store alone.

use std::{collections::HashMap, path::PathBuf, time::Instant};

use chrono::{TimeDelta, Utc};
use sundial_core::{
    history::{Outcome, RunQuery},
    protocol::run::{RunEvent, RunKind},
    settings::HistorySettings,
};
use sundial_store::{Batch, Index};

use crate::sched::rss_mib;

/// Jobs the rows are spread over, and the time they span.
const JOBS: usize = 10_000;
const SPAN_HOURS: i64 = 24;
/// Records per stream message, and messages per write (as the indexer).
const PER_MESSAGE: usize = 250;
const PER_WRITE: usize = 40;

/// The path of the `q`th request of a measured query.
type PathOf = fn(usize) -> String;

pub(crate) struct HistoryResult {
    pub(crate) rows: usize,
    pub(crate) records_per_s: f64,
    pub(crate) bytes: u64,
    pub(crate) rss_growth_mib: f64,
    pub(crate) last_50_of_a_job: Vec<f64>,
    pub(crate) failed_in_an_hour: Vec<f64>,
    /// `GET /api/v1/jobs/{id}/runs?limit=50` over HTTP, seconds.
    pub(crate) api_runs_of_a_job: Vec<f64>,
    /// The dashboard's list queries over HTTP (issue 26), seconds each:
    /// a jobs page's recent runs (50 jobs × 10), the failing jobs, a job's
    /// audit trail, the runs of a worker, the runs of a label, and the
    /// 7-day trend.
    pub(crate) api_lists: Vec<(&'static str, Vec<f64>)>,
}

fn record(i: usize, kind: RunKind, now: chrono::DateTime<Utc>, rows: usize) -> RunEvent {
    // Row i is at a point of the span, oldest first; every 100th fails.
    let span_ms = SPAN_HOURS * 3_600_000;
    let at = now - TimeDelta::milliseconds(span_ms - (i as i64 * span_ms) / rows.max(1) as i64);
    let job = format!("job-{:05}", i % JOBS);
    let failed = i.is_multiple_of(100);
    RunEvent {
        kind,
        fire_id: format!(
            "{job}@{}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        job_id: job,
        pool: if i.is_multiple_of(2) {
            "default"
        } else {
            "batch"
        }
        .into(),
        attempt: 1,
        worker: "bench-worker".into(),
        at,
        duration_ms: (kind != RunKind::Started).then_some(5 + (i % 1000) as u64),
        reason: (failed && kind == RunKind::Failed).then(|| "exit status 1".into()),
        output: (kind != RunKind::Started).then(|| "done\n".into()),
        deadline: None,
        scheduled_at: Some(at),
        replay: None,
        payload: None,
        by: None,
    }
}

pub(crate) async fn history(rows: usize, mut progress: impl FnMut(u64)) -> HistoryResult {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sundial-bench-history-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let settings = HistorySettings {
        path: dir.join("history.db"),
        keep_per_job: u32::MAX,
        ..HistorySettings::default()
    };
    let rss_before = rss_mib();
    let index = Index::open(&settings, sundial_runtime::Health::new()).expect("index opens");
    let now = Utc::now();
    let started = Instant::now();
    let mut offset = 0u64;
    let mut i = 0;
    let mut last = None;
    while i < rows {
        let mut batches = Vec::with_capacity(PER_WRITE);
        for _ in 0..PER_WRITE {
            let mut records = Vec::with_capacity(PER_MESSAGE);
            while records.len() < PER_MESSAGE && i < rows {
                let outcome = if i.is_multiple_of(100) {
                    RunKind::Failed
                } else {
                    RunKind::Succeeded
                };
                records.push(record(i, RunKind::Started, now, rows));
                records.push(record(i, outcome, now, rows));
                i += 1;
            }
            if records.is_empty() {
                break;
            }
            // An audit entry per 125 runs (a pause, a trigger…).
            let audit = (0..records.len() / 200)
                .map(|k| sundial_core::protocol::audit::AuditEntry {
                    job_id: Some(format!("job-{:05}", (i + k * 37) % JOBS)),
                    by: Some("bench".into()),
                    reason: Some("a reason".into()),
                    ..sundial_core::protocol::audit::AuditEntry::new("pause", now)
                })
                .collect();
            batches.push(Batch {
                audit,
                offset,
                id: None,
                records,
                alerts: Vec::new(),
                deliveries: Vec::new(),
            });
            offset += 1;
        }
        // Up to the writer's queue ahead, as the indexer does; a label per
        // job (team=t0..t9).
        let labels: HashMap<String, std::collections::BTreeMap<String, String>> = batches
            .iter()
            .flat_map(|b| b.records.iter())
            .map(|r| {
                let team = r.job_id.bytes().last().map_or(0, |b| b % 10);
                (
                    r.job_id.clone(),
                    [("team".to_string(), format!("t{team}"))].into(),
                )
            })
            .collect();
        last = Some(index.write(batches, labels).await.expect("queued"));
        progress(i as u64);
    }
    if let Some(done) = last {
        done.await.expect("written");
    }
    let records_per_s = (2 * rows) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let rss_growth_mib = rss_mib() - rss_before;

    let mut last_50_of_a_job = Vec::new();
    let mut failed_in_an_hour = Vec::new();
    for q in 0..200 {
        let t = Instant::now();
        let page = index
            .runs(RunQuery {
                job: Some(format!("job-{:05}", (q * 7919) % JOBS)),
                limit: 50,
                ..RunQuery::default()
            })
            .await
            .expect("query");
        last_50_of_a_job.push(t.elapsed().as_secs_f64());
        assert!(!page.runs.is_empty());
        let hour = now - TimeDelta::hours(1 + (q as i64 % (SPAN_HOURS - 1)));
        let t = Instant::now();
        let page = index
            .runs(RunQuery {
                pool: Some("default".into()),
                outcome: Some(Outcome::Failed),
                since: Some(hour),
                until: Some(hour + TimeDelta::hours(1)),
                limit: 50,
                ..RunQuery::default()
            })
            .await
            .expect("query");
        failed_in_an_hour.push(t.elapsed().as_secs_f64());
        assert!(!page.runs.is_empty());
    }
    // The same read through the HTTP API (what the dashboard's job page
    // asks).
    let stop = tokio_util::sync::CancellationToken::new();
    let settings =
        sundial_core::settings::Settings::try_from(sundial_core::settings::RawSettings::default())
            .expect("default settings");
    let api = sundial_web::api::Api::new(sundial_web::api::ApiConfig::from_settings(
        &settings,
        "bench",
        Some(index.clone()),
    ));
    let addr = crate::common::serve_api(api, stop.clone()).await;
    let mut api_runs_of_a_job = Vec::new();
    for q in 0..200 {
        let path = format!(
            "/api/v1/jobs/job-{:05}/runs?limit=50",
            (q * 7919 + 13) % JOBS
        );
        let (status, secs, bytes) =
            tokio::task::spawn_blocking(move || crate::common::timed_get(&addr, &path))
                .await
                .expect("request task");
        assert!(
            status == 200 && bytes > 1000,
            "the API answers a page of runs"
        );
        api_runs_of_a_job.push(secs);
    }
    let mut api_lists: Vec<(&'static str, Vec<f64>)> = Vec::new();
    let lists: [(&'static str, PathOf); 6] = [
        ("GET /api/v1/runs/recent (50 jobs x 10 runs)", |q| {
            let mut p = String::from("/api/v1/runs/recent?n=10");
            for k in 0..50 {
                p.push_str(&format!("&job=job-{:05}", (q * 50 + k) % JOBS));
            }
            p
        }),
        (
            "GET /api/v1/runs/failing?since=24h (every job fails: worst case)",
            |_| "/api/v1/runs/failing?since=24h&limit=100".into(),
        ),
        ("GET /api/v1/audit?job=ID", |q| {
            format!("/api/v1/audit?job=job-{:05}&limit=100", (q * 7919) % JOBS)
        }),
        ("GET /api/v1/runs?worker=W&limit=100", |_| {
            "/api/v1/runs?worker=bench-worker&limit=100&since=24h".into()
        }),
        ("GET /api/v1/runs?label=team=t3&limit=100", |_| {
            "/api/v1/runs?label=team%3Dt3&limit=100&since=24h".into()
        }),
        (
            "GET /api/v1/runs/per-hour?since=7d (a trend, not a list)",
            |_| "/api/v1/runs/per-hour?since=7d".into(),
        ),
    ];
    for (name, path_of) in lists {
        let rounds = if name.contains("per-hour") || name.contains("failing") {
            20
        } else {
            200
        };
        let mut times = Vec::with_capacity(rounds);
        for q in 0..rounds {
            let path = path_of(q);
            let (status, secs, _) =
                tokio::task::spawn_blocking(move || crate::common::timed_get(&addr, &path))
                    .await
                    .expect("request task");
            assert_eq!(status, 200, "{name}");
            times.push(secs);
        }
        api_lists.push((name, times));
    }
    stop.cancel();
    let bytes = ["history.db", "history.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
    HistoryResult {
        rows,
        records_per_s,
        bytes,
        rss_growth_mib,
        last_50_of_a_job,
        failed_in_an_hour,
        api_runs_of_a_job,
        api_lists,
    }
}
