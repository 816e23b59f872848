//! Several schedulers: shard leases, graceful handover and takeover after a
//! SIGKILL, judged by a fire ledger over every fire on the work queues.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, DurationRound, Utc};
use sundial_core::FireId;

use crate::{
    fires::connect,
    util::{apply_jobs, sundial, Daemon, FireTap, SchedulerProcess, Vhost, TEST_ENV},
};

/// A fire seen on a work queue.
#[derive(Debug, Clone)]
struct Seen {
    fire_id: String,
    shard: u32,
    epoch: u64,
}

/// Every fire of the default pool, collected in the background.
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Notified after each fire is recorded.
    changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(conn: &lapin::Connection) -> Self {
        let mut tap = FireTap::new(conn).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (out, notify) = (seen.clone(), changed.clone());
        let task = tokio::spawn(async move {
            loop {
                let (ev, _) = tap.next_any().await;
                out.lock().expect("recorder lock").push(Seen {
                    fire_id: ev.fire_id,
                    shard: ev.shard,
                    epoch: ev.epoch,
                });
                notify.notify_waiters();
            }
        });
        Self {
            seen,
            changed,
            task,
        }
    }

    fn snapshot(&self) -> Vec<Seen> {
        self.seen.lock().expect("recorder lock").clone()
    }

    /// Waits (bounded) until `pred` holds for what was seen so far.
    async fn until(&self, what: &str, within: Duration, pred: impl Fn(&[Seen]) -> bool) {
        let seen = &self.seen;
        let held = crate::util::wait_until(within, &self.changed, || {
            pred(&seen.lock().expect("recorder lock"))
        })
        .await;
        assert!(held, "{what}: not within {within:?}");
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `n` jobs firing every second.
fn every_second_jobs(prefix: &str, n: usize) -> (String, Vec<String>) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i:03}")).collect();
    let toml = ids
        .iter()
        .map(|id| {
            format!(
                "[[jobs]]\nid = \"{id}\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n"
            )
        })
        .collect();
    (toml, ids)
}

/// The ledger over `(from, to]` (whole seconds): expected fire ids of the
/// every-second `jobs` that never arrived, and those that arrived twice or
/// more with their count.
fn ledger(
    jobs: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    seen: &[Seen],
) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in seen {
        *counts.entry(s.fire_id.as_str()).or_default() += 1;
    }
    let second = chrono::Duration::seconds(1);
    let mut missing = Vec::new();
    let mut t = from.duration_trunc(second).expect("truncates") + second;
    let mut expected = BTreeSet::new();
    while t <= to {
        for j in jobs {
            let id = FireId::new(j, t).to_string();
            if !counts.contains_key(id.as_str()) {
                missing.push(id.clone());
            }
            expected.insert(id);
        }
        t += second;
    }
    let dups = counts
        .into_iter()
        .filter(|(id, n)| *n > 1 && expected.contains(*id))
        .map(|(id, n)| (id.to_string(), n))
        .collect();
    (missing, dups)
}

/// Asserts the ledger shows no missing fire id; returns the duplicates.
fn nothing_missing(
    jobs: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    seen: &[Seen],
) -> BTreeMap<String, usize> {
    let (missing, dups) = ledger(jobs, from, to, seen);
    assert!(
        missing.is_empty(),
        "{} of the expected fire ids missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    dups
}

/// `sundial status --json`.
fn status(v: &Vhost) -> serde_json::Value {
    let out = sundial()
        .args([
            "status",
            "--json",
            "--listen",
            "1500ms",
            "--broker",
            &v.url(),
        ])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("status runs");
    assert!(
        out.status.success(),
        "status: {}",
        crate::util::stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("status prints JSON")
}

/// Shards each node holds, by `status`.
fn owners(s: &serde_json::Value) -> BTreeMap<String, usize> {
    s["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    (
                        n["node"].as_str().unwrap_or_default().to_string(),
                        n["owned"].as_array().map_or(0, Vec::len),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `status` until the shard split is `want` (bounded).
fn wait_split(v: &Vhost, want: &[(&str, usize)], within: Duration) -> serde_json::Value {
    let want: BTreeMap<String, usize> = want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    let deadline = std::time::Instant::now() + within;
    loop {
        let s = status(v);
        if owners(&s) == want {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "shards not split as {want:?} within {within:?}: {s:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_scheduler_gets_half_the_shards_and_handovers_lose_and_repeat_nothing() {
    let v = Vhost::new("fo-rebalance");
    let mut a = SchedulerProcess::start(&v, "fa");
    let (toml, jobs) = every_second_jobs("r", 40);
    apply_jobs(&v, &toml);
    let conn = connect(&v).await;
    let rec = Recorder::start(&conn).await;
    // a fires everything alone.
    rec.until("a fires on all 4 shards", Duration::from_secs(15), |s| {
        s.iter().map(|f| f.shard).collect::<BTreeSet<_>>().len() == 4
    })
    .await;
    let from = Utc::now();

    // b joins: a hands over half (final watermarks), b takes them.
    let mut b = Daemon::spawn(&v, &["scheduler", "--node", "fb"], "fb", &[]);
    let split = wait_split(&v, &[("fa", 2), ("fb", 2)], Duration::from_secs(20));
    for shard in split["shards"].as_array().expect("shards") {
        assert!(shard["owner"].is_string(), "every shard owned: {split:#}");
        let lag = shard["lag_ms"]
            .as_i64()
            .expect("every shard has a watermark");
        assert!(lag < 3_000, "held shards' watermarks move: {split:#}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // firing on both nodes, not a synchronisation

    // b leaves gracefully: a takes its shards back at once.
    b.stop();
    wait_split(&v, &[("fa", 4)], Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(2)).await; // firing on a again
    let to = Utc::now() - chrono::Duration::seconds(1);
    a.stop();

    let seen = rec.snapshot();
    let dups = nothing_missing(&jobs, from, to, &seen);
    assert!(
        dups.is_empty(),
        "graceful handovers fire nothing twice: {dups:?}"
    );
    // Every handover bumped the shard's epoch: b's shards were fired at
    // epoch 2, then at epoch 3 by a again.
    let max_epoch = seen.iter().map(|s| s.epoch).max().unwrap_or(0);
    assert_eq!(max_epoch, 3, "epochs 1 (a), 2 (b), 3 (a again)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_scheduler_s_shards_are_taken_over_within_5s_and_no_fire_is_missing() {
    let v = Vhost::new("fo-kill");
    let mut a = SchedulerProcess::start(&v, "ka");
    let (toml, jobs) = every_second_jobs("k", 200);
    apply_jobs(&v, &toml);
    let mut b = Daemon::spawn(&v, &["scheduler", "--node", "kb"], "kb", &[]);
    let split = wait_split(&v, &[("ka", 2), ("kb", 2)], Duration::from_secs(20));
    let a_shards: BTreeSet<u32> = split["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"] == "ka")
        .and_then(|n| n["owned"].as_array())
        .expect("ka's shards")
        .iter()
        .filter_map(|s| s.as_u64().and_then(|s| u32::try_from(s).ok()))
        .collect();
    let conn = connect(&v).await;
    let rec = Recorder::start(&conn).await;
    rec.until("fires on all 4 shards", Duration::from_secs(15), |s| {
        s.iter().map(|f| f.shard).collect::<BTreeSet<_>>().len() == 4
    })
    .await;
    let from = Utc::now();
    tokio::time::sleep(Duration::from_secs(2)).await; // 200 fires/s on both nodes, not a synchronisation

    let epochs_before: BTreeMap<u32, u64> =
        rec.snapshot().iter().map(|s| (s.shard, s.epoch)).collect();
    let killed = Utc::now();
    a.kill9();
    // b fires each of a's shards at a new epoch within 5 s of the kill.
    rec.until(
        "kb fires ka's shards at a new epoch",
        Duration::from_secs(5),
        |seen| {
            a_shards.iter().all(|shard| {
                seen.iter()
                    .any(|f| f.shard == *shard && f.epoch > epochs_before[shard])
            })
        },
    )
    .await;
    let took_over = Utc::now() - killed;
    wait_split(&v, &[("kb", 4)], Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(2)).await; // b alone, not a synchronisation
    let to = Utc::now() - chrono::Duration::seconds(1);
    b.stop();

    let seen = rec.snapshot();
    let dups = nothing_missing(&jobs, from, to, &seen);
    // Duplicates only around the handover: fires of a's shards after its
    // last watermark write, fired again by b.
    for id in dups.keys() {
        let (_, at) = FireId::parse(id).expect("scheduled fire id");
        assert!(
            at >= killed - chrono::Duration::seconds(2) && at <= killed + took_over,
            "duplicate {id} outside the handover window (kill at {killed}, takeover {took_over})"
        );
    }
    eprintln!(
        "takeover {} ms after SIGKILL; {} fire ids fired twice around it",
        took_over.num_milliseconds(),
        dups.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_through_either_node_reach_the_node_that_holds_the_job() {
    let v = Vhost::new("fo-follow");
    let mut a = SchedulerProcess::start(&v, "wa");
    let mut b = Daemon::spawn(&v, &["scheduler", "--node", "wb"], "wb", &[]);
    let split = wait_split(&v, &[("wa", 2), ("wb", 2)], Duration::from_secs(20));
    let b_shards: BTreeSet<u64> = split["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"] == "wb")
        .and_then(|n| n["owned"].as_array())
        .expect("wb's shards")
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    let conn = connect(&v).await;
    let rec = Recorder::start(&conn).await;
    // Jobs registered after both started: one node decided them (the control
    // queue's single active consumer), both must fire their own shards'.
    let (toml, jobs) = every_second_jobs("f", 12);
    apply_jobs(&v, &toml);
    rec.until("fires on all 4 shards", Duration::from_secs(15), |s| {
        s.iter().map(|f| f.shard).collect::<BTreeSet<_>>().len() == 4
    })
    .await;

    // A manual trigger of a job held by wb: the reply names the fire, which
    // arrives.
    let held_by_b = jobs
        .iter()
        .find(|j| {
            b_shards.contains(&u64::from(sundial_core::topology::shard_of(
                j,
                crate::util::TEST_SHARDS,
            )))
        })
        .expect("a job on wb's shards");
    let out = sundial()
        .args(["job", "trigger", held_by_b, "--json", "--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("trigger runs");
    assert!(out.status.success(), "{}", crate::util::stderr(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reply JSON");
    let fire_id = reply["result"]["fire_id"]
        .as_str()
        .expect("the reply names the fire")
        .to_string();
    assert!(
        fire_id.starts_with(&format!("{held_by_b}@trigger:")),
        "{reply}"
    );
    rec.until("the triggered fire arrives", Duration::from_secs(10), |s| {
        s.iter().any(|f| f.fire_id == fire_id && f.epoch == 0)
    })
    .await;

    // Deleting them stops them on both nodes.
    for j in &jobs {
        let out = sundial()
            .args(["job", "delete", j, "--broker", &v.url()])
            .envs(TEST_ENV.iter().copied())
            .output()
            .expect("delete runs");
        assert!(out.status.success(), "{}", crate::util::stderr(&out));
    }
    let deleted = Utc::now();
    tokio::time::sleep(Duration::from_secs(3)).await; // the interval in which nothing may fire
    let late: Vec<Seen> = rec
        .snapshot()
        .into_iter()
        .filter(|s| {
            FireId::parse(&s.fire_id)
                .is_some_and(|(_, at)| at > deleted + chrono::Duration::milliseconds(500))
        })
        .collect();
    assert!(late.is_empty(), "deleted jobs still fire: {late:?}");
    b.stop();
    a.stop();
}
