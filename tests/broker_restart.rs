//! Fault test in its own test binary: it stops and starts the RabbitMQ app,
//! so it must never overlap other tests (`cargo test` runs test binaries one
//! after another). It always leaves the broker running.
//!
//! A scheduler keeps firing an every-second job (default misfire policy,
//! `fire-once`) while the broker app is down for 30 s; afterwards every occurrence
//! from the first fire seen to the last one is present: the scheduler was
//! running throughout, so the outage is not a misfire (duplicates around the
//! outage are allowed: at least once), and the registry survived (the job
//! still exists and fires). Its `/readyz` answers 503 while the broker is
//! away and 200 again after.

use sundial_testkit as util;

use std::{collections::BTreeSet, time::Duration};

use chrono::{DateTime, Utc};
use util::{
    bounded, free_addr, rabbitmqctl, stderr, sundial, wait_status, AppGuard, FireTap,
    SchedulerProcess, Vhost, TEST_SHARDS,
};

/// How long the broker app stays down.
const OUTAGE: Duration = Duration::from_secs(30);

/// Reads fires of `job` from every work queue until `until` returns true.
async fn collect(
    v: &Vhost,
    job: &str,
    seen: &mut BTreeSet<DateTime<Utc>>,
    until: impl Fn(&BTreeSet<DateTime<Utc>>) -> bool,
) {
    let conn = bounded(
        "connect",
        sundial_amqp::broker::connect(&v.url(), "it-restart"),
    )
    .await
    .expect("connects");
    let mut tap = FireTap::new(&conn).await;
    while !until(seen) {
        seen.insert(tap.next(job).await.0.scheduled_at);
    }
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn firing_resumes_after_broker_app_restart_without_losing_occurrences() {
    let v = Vhost::new("restart");
    let http = free_addr();
    let _s = SchedulerProcess::start_with_env(
        &v,
        "r1",
        &[
            ("SUNDIAL__HTTP__ENABLED", "true"),
            ("SUNDIAL__HTTP__LISTEN", &http),
        ],
    );
    let dir = std::env::temp_dir().join(format!("{}-jobs", v.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("pulse.json");
    std::fs::write(
        &file,
        r#"{"id":"pulse","schedule":"* * * * * *","executor":{"type":"noop"}}"#,
    )
    .expect("write");
    let applied = sundial()
        .args([
            "job",
            "apply",
            "-f",
            &file.to_string_lossy(),
            "--broker",
            &v.url(),
            "--timeout",
            "30s",
        ])
        .env("SUNDIAL__TOPOLOGY__SHARDS", TEST_SHARDS.to_string())
        .output()
        .expect("runs");
    assert!(applied.status.success(), "{}", stderr(&applied));

    let mut seen = BTreeSet::new();
    collect(&v, "pulse", &mut seen, |s| s.len() >= 3).await;
    wait_status(&http, "/readyz", 200, Duration::from_secs(10));

    {
        let _guard = AppGuard;
        rabbitmqctl(&["stop_app"]);
        let outage = std::time::Instant::now();
        // /readyz flips while the broker is away; /healthz does not.
        let why = wait_status(&http, "/readyz", 503, Duration::from_secs(10));
        assert!(why.contains("scheduler"), "{why}");
        wait_status(&http, "/healthz", 200, Duration::from_secs(1));
        // The outage itself (not a synchronisation): the broker is
        // unreachable for 30 s while occurrences fall due; the scheduler keeps
        // retrying with backoff (about 7 restarts, within the intensity).
        tokio::time::sleep(OUTAGE.saturating_sub(outage.elapsed())).await;
    } // start_app + await_startup
    wait_status(&http, "/readyz", 200, Duration::from_secs(60));
    let back = Utc::now();
    collect(&v, "pulse", &mut seen, |s| {
        s.last()
            .is_some_and(|t| *t > back + chrono::Duration::seconds(3))
    })
    .await;

    let first = *seen.first().expect("fires");
    let last = *seen.last().expect("fires");
    let expected = (last - first).num_seconds() + 1;
    let missing: Vec<_> = (0..expected)
        .map(|k| first + chrono::Duration::seconds(k))
        .filter(|t| !seen.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "occurrences lost across the broker restart: {missing:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
