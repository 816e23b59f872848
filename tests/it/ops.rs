//! The operations endpoint: `/metrics` with real values after a few fires
//! and runs, `/healthz`, `/readyz` (its flip when the broker goes away is in
//! tests/broker_restart.rs, which may stop the broker).

use std::time::Duration;

use sundial_core::protocol::run::RunKind;

use crate::{
    fires::{connect, wait_for_consumers, EventTap},
    util::{
        apply_jobs, free_addr, http_get, stderr, sundial, wait_status, Daemon, SchedulerProcess,
        Vhost,
    },
};

/// The value of the first sample line starting with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_of_scheduler_and_worker() {
    let v = Vhost::new("ops");
    let (s_addr, w_addr) = (free_addr(), free_addr());
    let on = |addr: &str| {
        [
            ("SUNDIAL__HTTP__ENABLED", "true".to_string()),
            ("SUNDIAL__HTTP__LISTEN", addr.to_string()),
        ]
    };
    let s_env = on(&s_addr);
    let s_env: Vec<(&str, &str)> = s_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _s = SchedulerProcess::start_with_env(&v, "ops1", &s_env);
    let w_env = on(&w_addr);
    let w_env: Vec<(&str, &str)> = w_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _w = Daemon::worker(&v, "ops-w1", &w_env);
    wait_for_consumers(&v, 1).await;
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;

    apply_jobs(
        &v,
        "[[jobs]]\nid = \"beat\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n",
    );
    let mut succeeded = 0;
    while succeeded < 2 {
        if tap.next().await.kind == RunKind::Succeeded {
            succeeded += 1;
        }
    }

    for addr in [&s_addr, &w_addr] {
        wait_status(addr, "/readyz", 200, Duration::from_secs(10));
        assert_eq!(http_get(addr, "/healthz").map(|r| r.0), Some(200));
        assert_eq!(http_get(addr, "/nope").map(|r| r.0), Some(404));
    }
    let (_, m) = http_get(&s_addr, "/metrics").expect("scheduler /metrics");
    assert!(
        sample(&m, "sundial_fires_total{pool=\"default\"}").is_some_and(|n| n >= 2.0),
        "{m}"
    );
    assert!(
        m.contains("sundial_fire_lateness_seconds_bucket{le=\"0.005\"}"),
        "{m}"
    );
    assert_eq!(sample(&m, "sundial_shards_owned"), Some(4.0), "{m}");
    assert!(m.contains("sundial_registry_jobs"), "{m}");

    let (_, m) = http_get(&w_addr, "/metrics").expect("worker /metrics");
    assert!(
        m.lines().any(|l| l.starts_with("sundial_runs_total{")
            && l.contains("outcome=\"succeeded\"")
            && sample(l, "sundial_runs_total").is_some_and(|n| n >= 2.0)),
        "{m}"
    );
    assert!(m.contains("sundial_run_duration_seconds_bucket"), "{m}");
    assert!(
        m.contains("sundial_run_start_lateness_seconds_bucket"),
        "{m}"
    );
    assert_eq!(
        sample(&m, "sundial_dead_letters{pool=\"default\"}"),
        Some(0.0),
        "{m}"
    );
}

#[test]
fn a_taken_address_fails_at_start_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let v = Vhost::new("ops-port");
    let out = sundial()
        .args(["worker", "--broker", &v.url(), "--http", &addr])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("worker runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exceeding_the_restart_intensity_exits_non_zero() {
    // A vhost that does not exist: every connection attempt fails.
    let started = std::time::Instant::now();
    let out = sundial()
        .args([
            "worker",
            "--broker",
            "amqp://guest:guest@127.0.0.1:5672/no-such-vhost-sundial",
        ])
        .env("SUNDIAL__HTTP__ENABLED", "false")
        .env("SUNDIAL__SUPERVISOR__MAX_RESTARTS", "2")
        .env("SUNDIAL__SUPERVISOR__WITHIN", "60s")
        .output()
        .expect("worker runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 restarts within 1m, giving up"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "backoff, not forever"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_finds_every_expected_fire_of_a_window() {
    let v = Vhost::new("ledger");
    let _s = SchedulerProcess::start(&v, "led1");
    let _w = Daemon::worker(&v, "led-w1", &[]);
    wait_for_consumers(&v, 1).await;
    let before_jobs = chrono::Utc::now();
    apply_jobs(
        &v,
        "[[jobs]]\nid = \"tick\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n\
         [[jobs]]\nid = \"tock\"\nschedule = \"*/2 * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n",
    );
    let t0 = chrono::Utc::now();
    let out = sundial()
        .args(["ledger", "--for", "4s", "--json", "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("ledger runs");
    assert!(
        out.status.success(),
        "{}{}",
        crate::util::stdout(&out),
        stderr(&out)
    );
    let l: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(l["expected"].as_u64().is_some_and(|n| n >= 5), "{l}");
    assert_eq!(l["missing"], serde_json::json!([]), "{l}");
    assert_eq!(l["duplicates"], serde_json::json!({}), "{l}");
    assert_eq!(l["expected"], l["observed"], "{l}");

    // The same window after the fact, from the history stream.
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let past = sundial()
        .args(["ledger", "--json", "--broker", &v.url()])
        .args([
            "--from",
            &at(t0),
            "--to",
            &at(t0 + chrono::TimeDelta::seconds(4)),
        ])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("ledger runs");
    assert!(past.status.success(), "{}", stderr(&past));
    let p: serde_json::Value = serde_json::from_slice(&past.stdout).expect("JSON");
    assert!(p["expected"].as_u64().is_some_and(|n| n >= 5), "{p}");
    assert_eq!(p["missing"], serde_json::json!([]), "{p}");
    assert_eq!(p["duplicates"], serde_json::json!({}), "{p}");
    assert_eq!(p["expected"], p["observed"], "{p}");

    // A window that starts 5 s before the jobs existed: what came before
    // their creation was not due (the ledger used to call it missing).
    let across = sundial()
        .args(["ledger", "--json", "--broker", &v.url()])
        .args([
            "--from",
            &at(before_jobs - chrono::TimeDelta::seconds(5)),
            "--to",
            &at(t0 + chrono::TimeDelta::seconds(4)),
        ])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("ledger runs");
    assert!(
        across.status.success(),
        "{}{}",
        crate::util::stdout(&across),
        stderr(&across)
    );
    let a: serde_json::Value = serde_json::from_slice(&across.stdout).expect("JSON");
    assert_eq!(a["missing"], serde_json::json!([]), "{a}");
    assert!(a["expected"].as_u64().is_some_and(|n| n >= 5), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_about_a_job_carry_job_id_and_fire_id() {
    let v = Vhost::new("jsonlog");
    crate::util::topology_apply(&v);
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    let mut w = Daemon::worker(&v, "logger", &[("SUNDIAL__LOG__FORMAT", "json")]);
    wait_for_consumers(&v, 1).await;
    // Dead-lettered at once (no such handler): warns about the job.
    let mut f = crate::fires::noop_fire("logged");
    f.executor = sundial_core::job::Executor::Handler {
        name: "missing".into(),
    };
    let ch = sundial_amqp::broker::confirming_channel(&conn)
        .await
        .expect("channel");
    crate::fires::publish(&ch, std::slice::from_ref(&f)).await;
    tap.until(&f.fire_id, RunKind::Dead).await;
    w.stop();
    let log = std::fs::read_to_string(&w.log).expect("worker log");
    let about_job: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l.to_string().contains("logged"))
        .collect();
    assert!(!about_job.is_empty(), "JSON lines: {log}");
    for l in &about_job {
        assert_eq!(l["span"]["job_id"], "logged", "{l}");
        assert_eq!(l["span"]["fire_id"], f.fire_id.as_str(), "{l}");
    }
}

#[test]
fn a_scheduler_is_ready_only_once_it_consumes_control_and_holds_its_shards() {
    let v = Vhost::new("ops-ready");
    let addr = free_addr();
    let _s = SchedulerProcess::start_with_env(
        &v,
        "ready1",
        &[
            ("SUNDIAL__HTTP__ENABLED", "true"),
            ("SUNDIAL__HTTP__LISTEN", addr.as_str()),
        ],
    );
    // The first 200: by then the control consumer is attached and the
    // first lease round has taken every shard (a lone node holds them all).
    wait_status(&addr, "/readyz", 200, Duration::from_secs(60));
    let consumers = v.list("list_consumers", &["queue_name"]);
    assert!(
        consumers.iter().any(|l| l == "sundial.control"),
        "control consumer attached: {consumers:?}"
    );
    let queues = v.list("list_queues", &["name"]);
    let leases = queues
        .iter()
        .filter(|l| l.starts_with("sundial.lease."))
        .count();
    assert_eq!(
        leases,
        crate::util::TEST_SHARDS as usize,
        "leases held: {queues:?}"
    );
}
