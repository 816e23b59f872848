//! Workflow drill in its own test binary (issue 24): it SIGKILLs processes
//! for minutes, so it runs alone (`cargo test` runs binaries one after
//! another). The broker is never touched.
//!
//! A workflow every 10 s — `extract` → `transform` × 8 shards → `load`, and
//! `page` when something failed; `extract` fails for good on every
//! minute's first occurrence — on two schedulers and two workers for three
//! minutes. Meanwhile the scheduler that owns the workflow is SIGKILLed
//! while an occurrence is mid-way (its transforms running), and a worker is
//! SIGKILLed while it runs a step; both come back. Judged by the history
//! stream and `sundial ledger`: every step of every due occurrence ran
//! (0 missing), no `load` started before all 8 of its transforms had
//! succeeded, and an occurrence whose `extract` died ran `page` and never
//! `transform`.

use sundial_testkit as util;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sundial_core::protocol::run::{RunEvent, RunKind};
use util::{apply_jobs, bounded, ledger_json, Daemon, SchedulerProcess, Vhost};

const JOB: &str = r#"
[[jobs]]
id = "nightly"
schedule = "*/10 * * * * *"
[[jobs.steps]]
id = "extract"
retry = { max_attempts = 1 }
executor = { type = "shell", command = ["/bin/sh", "-c", "case \"$SUNDIAL_SCHEDULED_AT\" in *:00.000Z) echo 'source down'; exit 1;; esac; sleep 0.5"] }
[[jobs.steps]]
id = "transform"
after = ["extract"]
fanout = { shards = 8 }
retry = { max_attempts = 5, backoff = ["1s"] }
executor = { type = "shell", command = ["/bin/sh", "-c", "sleep 1"] }
[[jobs.steps]]
id = "load"
after = ["transform"]
executor = { type = "shell", command = ["/bin/sh", "-c", "sleep 0.2"] }
[[jobs.steps]]
id = "page"
after = ["extract", "transform", "load"]
when = "failure"
executor = { type = "noop" }
"#;

/// How long the drill's window lasts.
const WINDOW: Duration = Duration::from_secs(180);

/// Every history record, in stream order.
#[derive(Clone, Default)]
struct Records {
    all: Arc<Mutex<Vec<RunEvent>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Records {
    fn snapshot(&self) -> Vec<RunEvent> {
        self.all.lock().expect("records").clone()
    }

    /// Waits (bounded) until `found` picks something out of the records.
    async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        found: impl Fn(&[RunEvent]) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if let Some(t) = found(&self.all.lock().expect("records")) {
                return t;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("{what}: not seen within {within:?}");
            }
        }
    }
}

fn occurrence_of(fire_id: &str) -> &str {
    sundial_core::FireId::split_step(fire_id).map_or(fire_id, |s| s.occurrence)
}

fn is_run(r: &RunEvent) -> bool {
    !matches!(r.kind, RunKind::Fired | RunKind::Skipped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_survives_a_killed_owner_and_a_killed_worker() {
    let v = Vhost::new("wf-drill");
    let mut schedulers: BTreeMap<String, Daemon> = BTreeMap::new();
    schedulers.insert("wfd-s1".into(), SchedulerProcess::start(&v, "wfd-s1"));
    schedulers.insert(
        "wfd-s2".into(),
        Daemon::spawn(&v, &["scheduler", "--node", "wfd-s2"], "wfd-s2", &[]),
    );
    let worker_env = [("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")];
    let mut workers: BTreeMap<String, Daemon> = BTreeMap::new();
    for id in ["wfd-w1", "wfd-w2"] {
        workers.insert(id.into(), Daemon::worker(&v, id, &worker_env));
    }

    let conn = bounded("connect", sundial_amqp::broker::connect(&v.url(), "drill"))
        .await
        .expect("connects");
    let mut reader = bounded(
        "history consumer",
        sundial_amqp::history::Reader::open(
            &conn,
            "sundial.history",
            sundial_amqp::history::StreamStart::Next,
            200,
        ),
    )
    .await
    .expect("history consumer");
    let records = Records::default();
    let sink = records.clone();
    let follow = tokio::spawn(async move {
        while let Ok(Some(m)) = reader.next().await {
            if let Ok(b) = m.batch {
                sink.all.lock().expect("records").extend(b.records);
                sink.changed.notify_waiters();
            }
        }
    });

    apply_jobs(&v, JOB);
    // The window starts at the next occurrence boundary.
    let from = {
        let now = Utc::now().timestamp();
        DateTime::from_timestamp(now - now % 10 + 10, 0).expect("instant")
    };
    let to = from + chrono::Duration::from_std(WINDOW).expect("window");
    let opened_after = |t: DateTime<Utc>| {
        move |rs: &[RunEvent]| {
            rs.iter()
                .find(|r| {
                    r.reason.as_deref() == Some("workflow")
                        && r.kind == RunKind::Started
                        && r.scheduled_at.is_some_and(|s| s > t)
                })
                .map(|r| {
                    (
                        r.fire_id.clone(),
                        r.worker.clone(),
                        r.scheduled_at.unwrap_or(t),
                    )
                })
        }
    };

    // 1. The owner dies mid-occurrence: after extract succeeded, while
    //    transforms run (of the first such occurrence: one at a minute's
    //    first second has its extract fail, and runs no transform).
    let (occ, owner, at) = records
        .wait_for(
            "an occurrence's transforms run",
            Duration::from_secs(90),
            move |rs| {
                let running = rs.iter().find(|r| {
                    r.fire_id.contains("/transform")
                        && r.kind == RunKind::Started
                        && r.scheduled_at.is_some_and(|s| s > from)
                })?;
                let occ = occurrence_of(&running.fire_id);
                rs.iter()
                    .find(|r| r.fire_id == occ && r.reason.as_deref() == Some("workflow"))
                    .map(|o| {
                        (
                            occ.to_string(),
                            o.worker.clone(),
                            o.scheduled_at.unwrap_or(from),
                        )
                    })
            },
        )
        .await;
    eprintln!("drill: SIGKILL scheduler {owner} (owner) mid-way through {occ}");
    schedulers
        .get_mut(&owner)
        .expect("a scheduler of ours")
        .kill9();
    let (next_occ, next_owner, at) = records
        .wait_for(
            "the next occurrence opens",
            Duration::from_secs(40),
            opened_after(at),
        )
        .await;
    assert_ne!(
        next_owner, owner,
        "{next_occ}: a survivor took the shard over"
    );
    schedulers.insert(
        owner.clone(),
        Daemon::spawn(&v, &["scheduler", "--node", &owner], &owner, &[]),
    );

    // 2. A worker dies while it runs a step.
    let (victim, step) = records
        .wait_for(
            "a step running on a worker",
            Duration::from_secs(60),
            move |rs| {
                rs.iter()
                    .find(|r| {
                        r.kind == RunKind::Started
                            && r.fire_id.contains('/')
                            && r.scheduled_at.is_some_and(|s| s > at)
                    })
                    .map(|r| (r.worker.clone(), r.fire_id.clone()))
            },
        )
        .await;
    eprintln!("drill: SIGKILL worker {victim} while it runs {step}");
    workers.get_mut(&victim).expect("a worker of ours").kill9();
    let (_, _, at) = records
        .wait_for(
            "another occurrence opens",
            Duration::from_secs(40),
            opened_after(at + chrono::Duration::seconds(10)),
        )
        .await;
    workers.insert(victim.clone(), Daemon::worker(&v, &victim, &worker_env));

    // 3. Until the window is over and its last occurrence has ended.
    let last = to - chrono::Duration::seconds(10);
    records
        .wait_for(
            "the window's last occurrence ends",
            WINDOW + Duration::from_secs(60),
            move |rs| {
                rs.iter()
                    .any(|r| {
                        !r.fire_id.contains('/')
                            && matches!(r.kind, RunKind::Succeeded | RunKind::Dead)
                            && r.scheduled_at.is_some_and(|s| s >= last.max(at))
                    })
                    .then_some(())
            },
        )
        .await;
    // Late records of the window's occurrences (a redelivered step).
    records
        .wait_for(
            "an occurrence past the window opens",
            Duration::from_secs(60),
            opened_after(to + chrono::Duration::seconds(10)),
        )
        .await;
    let all = records.snapshot();
    follow.abort();

    // The ledger: every occurrence and every step that should have run did.
    let t = |x: DateTime<Utc>| x.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let l = ledger_json(&v.url(), from, to);
    eprintln!(
        "drill: window {} .. {}: occurrences expected {}, missing {}; step fires expected {}, missing {}; duplicated ids {}",
        t(from),
        t(to),
        l["expected"],
        l["missing"].as_array().map_or(0, Vec::len),
        l["steps_expected"],
        l["steps_missing"].as_array().map_or(0, Vec::len),
        l["duplicates"].as_object().map_or(0, |d| d.len()),
    );
    assert_eq!(l["expected"], 18, "18 occurrences in 3 minutes: {l}");
    assert_eq!(l["missing"], serde_json::json!([]), "{l}");
    assert_eq!(l["steps_missing"], serde_json::json!([]), "{l}");
    assert!(
        l["steps_expected"].as_u64().is_some_and(|n| n >= 15 * 10),
        "{l}"
    );

    // By occurrence, in stream order.
    let mut by_occ: BTreeMap<&str, Vec<(usize, &RunEvent)>> = BTreeMap::new();
    for (i, r) in all.iter().enumerate() {
        by_occ
            .entry(occurrence_of(&r.fire_id))
            .or_default()
            .push((i, r));
    }
    let mut loads = 0;
    let mut failed = 0;
    for (occ, rs) in &by_occ {
        let first =
            |pred: &dyn Fn(&RunEvent) -> bool| rs.iter().find(|(_, r)| pred(r)).map(|(i, _)| *i);
        if let Some(load) = first(&|r| r.fire_id.ends_with("/load") && is_run(r)) {
            loads += 1;
            for k in 0..8 {
                let fire = format!("{occ}/transform#{k}/8");
                let done = first(&|r| r.fire_id == fire && r.kind == RunKind::Succeeded);
                assert!(
                    done.is_some_and(|d| d < load),
                    "{occ}: load started before {fire} succeeded"
                );
            }
        }
        if first(&|r| r.fire_id.ends_with("/extract") && r.kind == RunKind::Dead).is_some() {
            failed += 1;
            assert!(
                first(&|r| r.fire_id.contains("/transform") && r.kind != RunKind::Skipped)
                    .is_none(),
                "{occ}: transform never runs after extract died"
            );
            assert!(
                first(&|r| r.fire_id.ends_with("/page") && r.kind == RunKind::Succeeded).is_some(),
                "{occ}: page ran"
            );
            assert!(
                first(&|r| r.fire_id == *occ && r.kind == RunKind::Dead).is_some(),
                "{occ}: the occurrence ended dead"
            );
        }
    }
    eprintln!("drill: {loads} loads checked after their 8 transforms, {failed} occurrences failed at extract");
    assert!(loads >= 12, "loads checked: {loads}");
    assert!(failed >= 2, "one failure a minute: {failed}");
    for (_, d) in schedulers.iter_mut().chain(workers.iter_mut()) {
        d.stop();
    }
}
