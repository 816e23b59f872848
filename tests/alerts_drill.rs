//! Alerts drill in its own test binary (issue 25): it stops and SIGKILLs
//! schedulers and stops a pool for minutes, so it runs alone (`cargo test`
//! runs binaries one after another). The broker is never touched.
//!
//! 50 jobs every 10 s with `sla = "5s"` on two schedulers: 48 that run
//! well, `drill-fail` that always dies, `drill-side` on a pool of its own.
//! A webhook route takes every alert, deduped per job and kind for an hour.
//!
//! 1. Steady: `drill-fail` raises one `failed` per occurrence; the route
//!    sends the first and records the rest `deduped`.
//! 2. `drill-side`'s pool stopped: `late`; back: `resolved`.
//! 3. The scheduler owning `drill-fail` is SIGKILLed: the survivor takes
//!    its shards over and goes on raising `failed` for the next
//!    occurrences, none of the killed one's again, and sends none (the
//!    route's window holds, from the history's records).
//! 4. Every scheduler stopped for 30 s, then started: for every job, each
//!    occurrence of the gap the misfire policy (`fire-once`) did not fire
//!    is recorded skipped and raises `missed`; the one it fired late
//!    raises no `missed`.
//!
//! Throughout: no alert id is raised twice (the history stream's raw
//! records, before any reader drops repeats).

use sundial_testkit as util;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sundial_core::{
    alert::{AlertKind, Delivered, DeliveryOutcome, Raised},
    protocol::run::{RunEvent, RunKind},
    FireId,
};
use util::{apply_jobs, bounded, poll_until, Daemon, HttpSink, Vhost, TEST_ENV};

/// What the history stream said, in order.
#[derive(Default)]
struct Seen {
    records: Vec<RunEvent>,
    alerts: Vec<Raised>,
    deliveries: Vec<Delivered>,
}

#[derive(Clone, Default)]
struct History {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<tokio::sync::Notify>,
}

impl History {
    /// Waits (bounded) until `found` picks something out of the history.
    async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        found: impl Fn(&Seen) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if let Some(t) = found(&self.seen.lock().expect("history")) {
                return t;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let s = self.seen.lock().expect("history");
                let alerts: Vec<&str> = s.alerts.iter().map(|a| a.alert.id.as_str()).collect();
                panic!("{what}: not seen within {within:?}; alerts so far: {alerts:?}");
            }
        }
    }
}

fn of<'a>(s: &'a Seen, job: &str, kind: AlertKind) -> Vec<&'a Raised> {
    s.alerts
        .iter()
        .filter(|a| a.alert.job_id == job && a.alert.kind == kind)
        .collect()
}

/// The occurrence a record is of: `(job, scheduled)` of a scheduled fire.
fn occurrence(r: &RunEvent) -> Option<(&str, DateTime<Utc>)> {
    FireId::parse(&r.fire_id)
}

const JOBS: usize = 48;
/// Settings every process of the drill gets.
const ENV: &[(&str, &str)] = &[
    ("SUNDIAL__TOPOLOGY__POOLS", "default,side"),
    ("SUNDIAL__SCHEDULER__ALERT_INTERVAL", "1s"),
];

fn scheduler(v: &Vhost, node: &str, config: &str) -> Daemon {
    Daemon::spawn(
        v,
        &["--config", config, "scheduler", "--node", node],
        node,
        ENV,
    )
}

/// Waits (bounded) until both schedulers hold shards and none is unowned.
fn balanced(v: &Vhost) {
    poll_until(
        Duration::from_secs(60),
        "two schedulers sharing every shard",
        || {
            let out = util::sundial()
                .args(["status", "--json", "--broker", &v.url()])
                .envs(TEST_ENV.iter().copied())
                .output()
                .ok()?;
            let st: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let nodes = st["nodes"].as_array()?;
            let shared = nodes.len() == 2
                && nodes
                    .iter()
                    .all(|n| n["owned"].as_array().is_some_and(|o| !o.is_empty()));
            let owned = st["shards"]
                .as_array()?
                .iter()
                .all(|s| !s["owner"].is_null());
            (shared && owned).then_some(())
        },
        String::new,
    );
}

/// Sleeps until `offset` seconds past a 10-second boundary (when to act,
/// so that a stop or a start does not straddle an occurrence).
async fn at_second(offset: i64) {
    let now = Utc::now();
    let into = now.timestamp() % 10;
    let wait = (offset - into).rem_euclid(10);
    let target = DateTime::from_timestamp(now.timestamp() + wait, 0).expect("instant");
    if let Ok(d) = (target - now).to_std() {
        tokio::time::sleep(d).await;
    }
}

fn is_numbered(job: &str) -> bool {
    job.strip_prefix("drill-")
        .is_some_and(|n| n.parse::<u32>().is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_hold_through_a_stopped_pool_a_killed_owner_and_an_outage() {
    let v = Vhost::new("alerts-drill");
    let work = std::env::temp_dir().join(format!("{}-work", v.name));
    std::fs::create_dir_all(&work).expect("work dir");
    let hook = HttpSink::start(vec![]).await;
    let config = work.join("sundial.toml");
    std::fs::write(
        &config,
        format!(
            "[[alerts.routes]]\nname = \"drill-hook\"\nwebhook = \"{}/hook\"\ndedupe = \"1h\"\nmax_per_hour = 1000\n",
            hook.url
        ),
    )
    .expect("settings file");
    let config = config.display().to_string();
    let applied = util::sundial()
        .args(["topology", "apply", "--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .envs(ENV.iter().copied())
        .output()
        .expect("topology apply");
    assert!(applied.status.success(), "{}", util::stderr(&applied));

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
    let history = History::default();
    let sink = history.clone();
    let follow = tokio::spawn(async move {
        while let Ok(Some(m)) = reader.next().await {
            if let Ok(b) = m.batch {
                let mut s = sink.seen.lock().expect("history");
                s.records.extend(b.records);
                s.alerts.extend(b.alerts);
                s.deliveries.extend(b.deliveries);
                drop(s);
                sink.changed.notify_waiters();
            }
        }
    });

    let mut schedulers: BTreeMap<String, Daemon> = BTreeMap::new();
    for node in ["ad-s1", "ad-s2"] {
        schedulers.insert(node.into(), scheduler(&v, node, &config));
    }
    let worker_env: Vec<(&str, &str)> = ENV.to_vec();
    let _w = Daemon::worker(&v, "ad-w1", &worker_env);
    let side = |v: &Vhost| {
        Daemon::spawn(
            v,
            &["worker", "--id", "ad-side", "--pool", "side"],
            "ad-side",
            ENV,
        )
    };
    let mut side_worker = side(&v);
    balanced(&v);

    let mut jobs = String::new();
    for i in 0..JOBS {
        jobs.push_str(&format!(
            "[[jobs]]\nid = \"drill-{i:02}\"\nschedule = \"*/10 * * * * *\"\nsla = \"5s\"\nexecutor = {{ type = \"noop\" }}\n\n"
        ));
    }
    jobs.push_str(
        "[[jobs]]\nid = \"drill-fail\"\nschedule = \"*/10 * * * * *\"\nsla = \"5s\"\nretry = { max_attempts = 1 }\nexecutor = { type = \"shell\", command = [\"/bin/false\"] }\n\n\
         [[jobs]]\nid = \"drill-side\"\npool = \"side\"\nschedule = \"*/10 * * * * *\"\nsla = \"5s\"\nexecutor = { type = \"noop\" }\n",
    );
    apply_jobs(&v, &jobs);
    let start = Utc::now();

    // 1. Steady: two failures of drill-fail, each raised once; the route
    //    sent the first and held the second back.
    let owner = history
        .wait_for(
            "two failed alerts of drill-fail",
            Duration::from_secs(60),
            |s| {
                let f = of(s, "drill-fail", AlertKind::Failed);
                (f.len() >= 2).then(|| f[0].node.clone())
            },
        )
        .await;
    let (sent, held) = history
        .wait_for("drill-fail's deliveries", Duration::from_secs(30), |s| {
            let f: BTreeSet<&str> = of(s, "drill-fail", AlertKind::Failed)
                .iter()
                .map(|a| a.alert.id.as_str())
                .collect();
            let outcomes: Vec<DeliveryOutcome> = s
                .deliveries
                .iter()
                .filter(|d| f.contains(d.alert.as_str()))
                .map(|d| d.outcome)
                .collect();
            let sent = outcomes
                .iter()
                .filter(|o| **o == DeliveryOutcome::Sent)
                .count();
            let held = outcomes
                .iter()
                .filter(|o| **o == DeliveryOutcome::Deduped)
                .count();
            (sent >= 1 && held >= 1).then_some((sent, held))
        })
        .await;
    assert_eq!((sent, held), (1, 1), "one sent, the repeat deduped");
    {
        let s = history.seen.lock().expect("history");
        let noisy: Vec<&str> = s
            .alerts
            .iter()
            .filter(|a| a.alert.job_id != "drill-fail")
            .map(|a| a.alert.id.as_str())
            .collect();
        assert!(
            noisy.is_empty(),
            "jobs that run well raise nothing: {noisy:?}"
        );
    }
    eprintln!("drill: steady; drill-fail's shard owned by {owner}");

    // 2. drill-side's pool stops: late; it comes back: resolved.
    side_worker.stop();
    let late = history
        .wait_for("drill-side late", Duration::from_secs(40), |s| {
            of(s, "drill-side", AlertKind::Late)
                .first()
                .map(|a| a.alert.id.clone())
        })
        .await;
    side_worker = side(&v);
    let resolves = history
        .wait_for("drill-side resolved", Duration::from_secs(60), |s| {
            of(s, "drill-side", AlertKind::Resolved)
                .first()
                .map(|a| a.alert.resolves.clone())
        })
        .await;
    assert!(resolves.contains(&late), "{late} resolved by {resolves:?}");
    eprintln!("drill: drill-side late ({late}) then resolved");

    // 3. SIGKILL the owner of drill-fail: the survivor raises the next
    //    failures, and none of the killed one's again.
    let killed_at = Utc::now();
    schedulers.get_mut(&owner).expect("ours").kill9();
    let survivor = history
        .wait_for(
            "a failed alert of drill-fail raised by the survivor",
            Duration::from_secs(60),
            |s| {
                of(s, "drill-fail", AlertKind::Failed)
                    .iter()
                    .find(|a| a.node != owner && a.at > killed_at)
                    .map(|a| a.node.clone())
            },
        )
        .await;
    eprintln!("drill: {owner} SIGKILLed, {survivor} took drill-fail over");

    // 4. Every scheduler stopped for 30 s, then started again. Stopped
    //    and started a second after an occurrence, so that neither
    //    straddles one.
    at_second(1).await;
    let stopping = Utc::now();
    for (_, s) in schedulers.iter_mut() {
        s.stop();
    }
    tokio::time::sleep(Duration::from_secs(29)).await; // the outage itself, not a synchronisation
    at_second(1).await;
    let restarted = Utc::now();
    for node in ["ad-s1", "ad-s2"] {
        schedulers.insert(node.into(), scheduler(&v, node, &config));
    }
    // The occurrences due while none ran (or while they stopped).
    let gap: Vec<DateTime<Utc>> = {
        let first = stopping.timestamp() - stopping.timestamp() % 10 + 10;
        (0..)
            .map(|k| DateTime::from_timestamp(first + 10 * k, 0).expect("instant"))
            .take_while(|t| *t < restarted)
            .collect()
    };
    assert!(
        gap.len() >= 3,
        "a 30 s outage holds 3 or more occurrences: {gap:?}"
    );
    let all_jobs: Vec<String> = (0..JOBS)
        .map(|i| format!("drill-{i:02}"))
        .chain(["drill-fail".to_string(), "drill-side".to_string()])
        .collect();
    // Each job's gap occurrences: skipped (misfire) or fired, and a missed
    // alert for each skipped one.
    let verdict = history
        .wait_for(
            "every gap occurrence recorded, and missed for the skipped ones",
            Duration::from_secs(90),
            |s| {
                let mut skipped: BTreeMap<(String, DateTime<Utc>), bool> = BTreeMap::new();
                for r in &s.records {
                    let Some((job, at)) = occurrence(r) else {
                        continue;
                    };
                    if !gap.contains(&at) {
                        continue;
                    }
                    let misfire = r.kind == RunKind::Skipped
                        && r.reason
                            .as_deref()
                            .is_some_and(|w| w.starts_with("misfire"));
                    let ran = matches!(
                        r.kind,
                        RunKind::Started | RunKind::Succeeded | RunKind::Dead
                    );
                    if misfire || ran {
                        *skipped.entry((job.to_string(), at)).or_insert(misfire) |= misfire;
                    }
                }
                let missed: BTreeSet<&str> = s
                    .alerts
                    .iter()
                    .filter(|a| a.alert.kind == AlertKind::Missed)
                    .map(|a| a.alert.fire_id.as_str())
                    .collect();
                for job in &all_jobs {
                    for at in &gap {
                        let was_skipped = *skipped.get(&(job.clone(), *at))?;
                        if was_skipped
                            && !missed.contains(FireId::new(job, *at).to_string().as_str())
                        {
                            return None;
                        }
                    }
                }
                Some(skipped)
            },
        )
        .await;
    let fired: Vec<(String, DateTime<Utc>)> = verdict
        .iter()
        .filter(|(_, skipped)| !**skipped)
        .map(|((j, t), _)| (j.clone(), *t))
        .collect();
    let skipped = verdict.values().filter(|s| **s).count();
    eprintln!(
        "drill: outage {} .. {}: {} gap occurrences per job; {skipped} skipped (missed), {} fired late",
        stopping.to_rfc3339(),
        restarted.to_rfc3339(),
        gap.len(),
        fired.len()
    );
    let latest = *gap.last().expect("a gap");
    for job in &all_jobs {
        assert_eq!(
            verdict.get(&(job.clone(), latest)),
            Some(&false),
            "{job}: fire-once fired the latest occurrence of the outage"
        );
        assert!(
            gap.iter()
                .filter(|t| verdict.get(&(job.clone(), **t)) == Some(&true))
                .count()
                >= 2,
            "{job}: fire-once collapsed the others: {verdict:?}"
        );
    }
    // A few more checks after everything was fired and read.
    let settle = Utc::now() + chrono::TimeDelta::seconds(4);
    history
        .wait_for(
            "the schedulers judged past the outage",
            Duration::from_secs(30),
            |s| s.alerts.iter().any(|a| a.at > settle).then_some(()),
        )
        .await;
    let s = history.seen.lock().expect("history");
    let missed: BTreeSet<&str> = s
        .alerts
        .iter()
        .filter(|a| a.alert.kind == AlertKind::Missed)
        .map(|a| a.alert.fire_id.as_str())
        .collect();
    for (job, at) in &fired {
        let id = FireId::new(job, *at).to_string();
        assert!(
            !missed.contains(id.as_str()),
            "{id} was fired late: no missed"
        );
    }
    // Missed only for the gap.
    for m in &missed {
        let (_, at) = FireId::parse(m).expect("a fire id");
        assert!(gap.contains(&at), "missed only in the outage: {m}");
    }
    // No alert raised twice, across the takeover and the restarts.
    let mut count: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in &s.alerts {
        count
            .entry(a.alert.id.as_str())
            .or_default()
            .push(a.node.as_str());
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| n.len() > 1).collect();
    assert!(twice.is_empty(), "alerts raised twice: {twice:?}");
    // drill-fail: one failed per occurrence that died (each judged), and
    // the route sent one of them in the hour.
    let died: BTreeSet<String> = s
        .records
        .iter()
        .filter(|r| r.job_id == "drill-fail" && r.kind == RunKind::Dead)
        .filter_map(|r| occurrence(r).map(|(j, t)| FireId::new(j, t).to_string()))
        .collect();
    let failed: BTreeSet<String> = of(&s, "drill-fail", AlertKind::Failed)
        .iter()
        .map(|a| a.alert.fire_id.clone())
        .collect();
    let judged: BTreeSet<String> = died
        .iter()
        .filter(|f| {
            FireId::parse(f).is_some_and(|(_, t)| t < settle - chrono::TimeDelta::seconds(8))
        })
        .cloned()
        .collect();
    assert!(
        judged.is_subset(&failed) && failed.is_subset(&died),
        "one failed per dead occurrence: died {died:?}, failed {failed:?}"
    );
    let sent_failed = s
        .deliveries
        .iter()
        .filter(|d| d.outcome == DeliveryOutcome::Sent && d.alert.starts_with("failed:drill-fail@"))
        .count();
    assert_eq!(
        sent_failed, 1,
        "deduped for the hour across the takeover and restarts"
    );
    // Jobs that ran well failed nothing and missed nothing outside the gap.
    assert!(
        s.alerts
            .iter()
            .filter(|a| is_numbered(&a.alert.job_id))
            .all(|a| a.alert.kind != AlertKind::Failed),
        "no failure of the jobs that run well"
    );
    eprintln!(
        "drill: {} alerts in all since {}, none twice; drill-fail: {} dead, {} failed, 1 sent",
        s.alerts.len(),
        start.to_rfc3339(),
        died.len(),
        failed.len()
    );
    drop(s);
    follow.abort();
    for (_, d) in schedulers.iter_mut() {
        d.stop();
    }
    side_worker.stop();
    let _ = std::fs::remove_dir_all(&work);
}
