//! Fault test in its own test binary: it force-closes connections and stops
//! and starts the RabbitMQ app, so it must never overlap other tests
//! (`cargo test` runs test binaries one after another). It always leaves the
//! broker running.
//!
//! Two schedulers and two workers run 30 every-second jobs and 4 jobs that
//! sleep 1 s every 2 s. In turn: every scheduler connection is closed by the
//! broker (`rabbitmqctl close_connection`), a worker is SIGKILLed while
//! jobs run on it, and the broker app restarts. Judged by a ledger over run
//! records (history stream): every occurrence due in the window has a terminal record
//! (`succeeded` or `dead`). Duplicates are allowed (at least once).

use sundial_testkit as util;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use sundial_core::{ledger::expected, protocol::run::RunKind, registry::Fired, JobSpec};
use util::{apply_jobs, rabbitmqctl, AppGuard, Daemon, SchedulerProcess, Vhost};

/// Closes, from the broker side, every connection of `vhost` whose client
/// name starts with `name`; returns how many.
fn close_connections(vhost: &str, name: &str) -> usize {
    let listing = rabbitmqctl(&[
        "list_connections",
        "-s",
        "pid",
        "vhost",
        "client_properties",
    ]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    let needle = format!("{{\"connection_name\",\"{name}");
    let mut closed = 0;
    for line in listing.lines() {
        let mut cols = line.splitn(3, '\t');
        let (Some(pid), Some(vh), Some(props)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        if vh == vhost && props.contains(&needle) {
            let ok = Command::new("rabbitmqctl")
                .args(["close_connection", pid, "fault test"])
                .status()
                .is_ok_and(|s| s.success());
            closed += usize::from(ok);
        }
    }
    closed
}

/// Run records by fire id, collected from the history stream.
#[derive(Clone, Default)]
struct Events {
    by_fire: Arc<Mutex<BTreeMap<String, Vec<RunKind>>>>,
    /// Notified after each event is recorded.
    changed: Arc<tokio::sync::Notify>,
}

impl Events {
    fn start(url: String) -> (Self, tokio::task::JoinHandle<()>) {
        let events = Self::default();
        let out = events.clone();
        let task = tokio::spawn(async move {
            loop {
                // Reconnects after the broker restart; each failure retries
                // in 300 ms (the test's own deadlines bound the whole).
                if let Err(e) = out.follow(&url).await {
                    eprintln!("event tap: {e}; reconnecting");
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        (events, task)
    }

    async fn follow(&self, url: &str) -> Result<(), String> {
        let conn = sundial_amqp::broker::connect(url, "it-faults-tap")
            .await
            .map_err(|e| e.to_string())?;
        // Every run record, from the start of the history stream (it keeps
        // what is recorded while the tap reconnects after a restart; a
        // record read twice changes nothing below).
        let mut reader = sundial_amqp::history::Reader::open(
            &conn,
            "sundial.history",
            sundial_amqp::history::StreamStart::First,
            200,
        )
        .await
        .map_err(|e| e.to_string())?;
        while let Some(m) = reader.next().await.map_err(|e| e.to_string())? {
            if let Ok(batch) = m.batch {
                let mut by_fire = self.by_fire.lock().expect("events lock");
                for ev in batch.records {
                    by_fire.entry(ev.fire_id).or_default().push(ev.kind);
                }
                drop(by_fire);
                self.changed.notify_waiters();
            }
        }
        Err("consumer ended".into())
    }

    /// Expected fire ids without a terminal event yet.
    fn unfinished(&self, expected: &BTreeSet<String>) -> Vec<String> {
        let seen = self.by_fire.lock().expect("events lock");
        expected
            .iter()
            .filter(|id| {
                !seen.get(*id).is_some_and(|kinds| {
                    kinds
                        .iter()
                        .any(|k| matches!(k, RunKind::Succeeded | RunKind::Dead))
                })
            })
            .cloned()
            .collect()
    }

    fn count(&self) -> usize {
        self.by_fire.lock().expect("events lock").len()
    }
}

fn job(id: &str, schedule: &str, executor: serde_json::Value) -> (String, Fired) {
    let toml = format!(
        "[[jobs]]\nid = \"{id}\"\nschedule = \"{schedule}\"\n[jobs.executor]\n{}",
        executor
            .as_object()
            .expect("executor object")
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect::<String>()
    );
    let spec: JobSpec = serde_json::from_value(
        serde_json::json!({"id": id, "schedule": schedule, "executor": executor}),
    )
    .expect("spec");
    (toml, Fired::new(spec, Utc::now()).expect("entry"))
}

#[tokio::test(flavor = "multi_thread")]
async fn forced_closes_a_killed_worker_and_a_broker_restart_lose_no_run() {
    let v = Vhost::new("faults");
    let allow = [("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sleep")];
    let mut a = SchedulerProcess::start(&v, "fa");
    let mut b = Daemon::spawn(&v, &["scheduler", "--node", "fb"], "fb", &[]);
    let mut w1 = Daemon::worker(&v, "fw1", &allow);
    let mut w2 = Daemon::worker(&v, "fw2", &allow);
    let (events, tap) = Events::start(v.url());

    let mut toml = String::new();
    let mut jobs = Vec::new();
    for i in 0..30 {
        let (t, e) = job(
            &format!("tick{i:02}"),
            "* * * * * *",
            serde_json::json!({"type": "noop"}),
        );
        toml.push_str(&t);
        jobs.push(e);
    }
    for i in 0..4 {
        let (t, e) = job(
            &format!("slow{i}"),
            "*/2 * * * * *",
            serde_json::json!({"type": "shell", "command": ["/bin/sleep", "1"]}),
        );
        toml.push_str(&t);
        jobs.push(e);
    }
    apply_jobs(&v, &toml);
    // Running: events arrive for most jobs.
    let running = util::wait_until(Duration::from_secs(30), &events.changed, || {
        events.count() >= 60
    })
    .await;
    assert!(running, "no runs within 30s");
    let from = Utc::now();

    // 1. The broker closes every scheduler connection (both nodes).
    let closed = close_connections(&v.name, "sundial scheduler");
    assert!(closed >= 4, "closed {closed} scheduler connections");
    tokio::time::sleep(Duration::from_secs(3)).await; // firing resumes; the interval under test

    // 2. A worker dies mid-run (slow jobs run 1 s of every 2).
    w1.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await; // its unacked runs go to fw2

    // 3. The broker app restarts.
    {
        let _guard = AppGuard;
        rabbitmqctl(&["stop_app"]);
        tokio::time::sleep(Duration::from_secs(3)).await; // the outage itself
    }
    let back = Utc::now();
    let to = back + chrono::Duration::seconds(4);
    let want = expected(&jobs, from, to);
    let finished = util::wait_until(Duration::from_secs(90), &events.changed, || {
        events.unfinished(&want).is_empty()
    })
    .await;
    let left = events.unfinished(&want);
    assert!(
        finished,
        "{} of {} runs never finished, e.g. {:?}",
        left.len(),
        want.len(),
        &left[..left.len().min(5)]
    );
    tap.abort();
    w2.stop();
    b.stop();
    a.stop();
    eprintln!("{} expected runs in the window all finished", want.len());
}
