//! Overlap policies, end to end: a scheduler process, a worker process and
//! jobs that run longer than their interval.

use chrono::{DateTime, Utc};
use sundial_core::protocol::run::{RunEvent, RunKind};

use crate::{
    fires::{connect, wait_for_consumers, EventTap},
    util::{apply_jobs, Daemon, SchedulerProcess, Vhost},
};

/// Events of `job` until `done` says stop.
async fn events_of(
    tap: &mut EventTap,
    job: &str,
    mut done: impl FnMut(&[RunEvent]) -> bool,
) -> Vec<RunEvent> {
    let mut seen = Vec::new();
    while !done(&seen) {
        let ev = tap.next().await;
        if ev.job_id == job {
            seen.push(ev);
        }
    }
    seen
}

fn count(evs: &[RunEvent], kind: RunKind) -> usize {
    evs.iter().filter(|e| e.kind == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_fires_while_the_previous_run_runs() {
    let v = Vhost::new("ov-forbid");
    let _s = SchedulerProcess::start(&v, "ov1");
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    let _w = Daemon::worker(
        &v,
        "ov-w1",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sleep")],
    );
    wait_for_consumers(&v, 1).await;
    apply_jobs(
        &v,
        r#"[[jobs]]
id = "slowpoke"
schedule = "* * * * * *"
overlap = "forbid"
timeout = "20s"
[jobs.executor]
type = "shell"
command = ["/bin/sleep", "2.5"]
"#,
    );
    let evs = events_of(&mut tap, "slowpoke", |e| count(e, RunKind::Succeeded) >= 2).await;
    let skipped: Vec<&RunEvent> = evs.iter().filter(|e| e.kind == RunKind::Skipped).collect();
    assert!(!skipped.is_empty(), "fires skipped while running: {evs:#?}");
    assert!(
        skipped
            .iter()
            .all(|e| e.reason.as_deref() == Some("overlap-forbid")),
        "{skipped:#?}"
    );
    // Runs never overlap: each start comes after the previous run ended.
    let mut ended: Option<DateTime<Utc>> = None;
    let mut running = false;
    for e in &evs {
        match e.kind {
            RunKind::Started => {
                assert!(!running, "a run started while another ran: {evs:#?}");
                assert!(ended.is_none_or(|t| e.at >= t));
                running = true;
            }
            RunKind::Succeeded => {
                running = false;
                ended = Some(e.at);
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_cancels_the_running_attempt_for_the_new_fire() {
    let v = Vhost::new("ov-replace");
    let _s = SchedulerProcess::start(&v, "ov2");
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    let _w = Daemon::worker(
        &v,
        "ov-w2",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sleep")],
    );
    wait_for_consumers(&v, 1).await;
    apply_jobs(
        &v,
        r#"[[jobs]]
id = "replaceable"
schedule = "*/3 * * * * *"
overlap = "replace"
timeout = "60s"
[jobs.executor]
type = "shell"
command = ["/bin/sleep", "30"]
"#,
    );
    let evs = events_of(&mut tap, "replaceable", |e| {
        count(e, RunKind::Failed) >= 1 && count(e, RunKind::Started) >= 2
    })
    .await;
    let first = evs
        .iter()
        .find(|e| e.kind == RunKind::Started)
        .expect("a first run");
    let failed = evs
        .iter()
        .find(|e| e.kind == RunKind::Failed)
        .expect("the first run cancelled");
    let second = evs
        .iter()
        .filter(|e| e.kind == RunKind::Started)
        .nth(1)
        .expect("a second run");
    assert_eq!(failed.fire_id, first.fire_id, "{evs:#?}");
    assert_eq!(
        failed.reason.as_deref(),
        Some(format!("replaced by {}", second.fire_id).as_str()),
        "{evs:#?}"
    );
    assert!(
        failed.duration_ms.is_some_and(|ms| ms < 10_000),
        "killed, not run to the end: {failed:?}"
    );
    assert_eq!(count(&evs, RunKind::Dead), 0);
    assert_eq!(
        count(&evs, RunKind::Retrying),
        0,
        "a replaced run is not retried"
    );
}
