//! Scale out (`--nodes 3`): three `sundial scheduler` processes share N
//! jobs (10,000,000 by default) registered through the control queue. Each
//! node keeps the jobs of its own shards parsed and the others compact
//! (ADR 0024). Measured: registration, each node's RSS, the fire lateness
//! seen by a consumer of the work queues at ~5,000 fires/s, the jobs API of
//! one node (answering for every job), the takeover when one node is
//! SIGKILLed, and the time to ready of that node started afresh (a replay
//! of every job).
//!
//! Never more than three schedulers at once: the fresh node is the killed
//! one started again, so the figures fit this machine's memory.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use sundial_amqp::broker::{connect, meta_of};
use sundial_core::protocol::{fire::FireEvent, node::Heartbeat};
use sundial_testkit::Daemon;

use crate::{
    common::{pct, Vhost},
    sched::{register_batch, settings, spread_jobs_range},
};

pub(crate) struct Nodes {
    pub(crate) jobs: usize,
    pub(crate) register_s: f64,
    /// Seconds from the last registration until every node holds every job.
    pub(crate) converge_s: f64,
    /// Per node: (name, shards owned, RSS MiB).
    pub(crate) rss: Vec<(String, usize, f64)>,
    pub(crate) fires_per_s: f64,
    /// Seconds: received by a consumer of the work queues − scheduled.
    pub(crate) lateness: Vec<f64>,
    pub(crate) api_page: Vec<f64>,
    pub(crate) api_job: Vec<f64>,
    /// SIGKILL → every shard owned by the two others (their heartbeats).
    pub(crate) takeover_s: f64,
    /// SIGKILL → the first fire of a shard the killed node held, sent by
    /// its new owner.
    pub(crate) first_fire_s: Option<f64>,
    /// Start of a fresh node → its API answers with every job.
    pub(crate) ready_s: f64,
    /// Its RSS then, MiB.
    pub(crate) fresh_rss: f64,
}

/// Fires per second due.
const RATE: usize = 5_000;

/// A node: its process, its API address.
struct Node {
    name: String,
    proc: Daemon,
    api: std::net::SocketAddr,
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn start(v: &Vhost, name: &str, shards: u32) -> Node {
    let api = free_port();
    let (shards, listen) = (shards.to_string(), api.to_string());
    let proc = Daemon::spawn(
        v,
        &["scheduler", "--node", name],
        name,
        &[
            ("SUNDIAL__TOPOLOGY__SHARDS", shards.as_str()),
            ("SUNDIAL__HTTP__ENABLED", "true"),
            ("SUNDIAL__HTTP__LISTEN", listen.as_str()),
            ("SUNDIAL__HISTORY__ENABLED", "false"),
        ],
    );
    Node {
        name: name.to_string(),
        proc,
        api,
    }
}

fn rss_of(pid: Option<u32>) -> f64 {
    pid.map_or(f64::NAN, |p| crate::sched::rss_of(&p.to_string()))
}

/// The jobs a node's API counts, `None` while it does not answer.
async fn total(api: std::net::SocketAddr) -> Option<u64> {
    tokio::task::spawn_blocking(move || {
        let body: serde_json::Value = crate::common::client()
            .get(format!("http://{api}/api/v1/jobs?limit=1"))
            .timeout(Duration::from_secs(30))
            .send()
            .ok()
            .filter(|r| r.status().is_success())?
            .json()
            .ok()?;
        body["total"].as_u64()
    })
    .await
    .ok()
    .flatten()
}

/// Until `node` answers with `n` jobs (bounded: `within`); the seconds.
async fn until_holds(node: &mut Node, n: u64, within: Duration) -> f64 {
    let t = Instant::now();
    loop {
        if total(node.api).await == Some(n) {
            return t.elapsed().as_secs_f64();
        }
        assert!(
            node.proc.alive(),
            "{} exited; log {}",
            node.name,
            node.proc.log.display()
        );
        assert!(
            t.elapsed() < within,
            "{} did not hold {n} jobs within {within:?}; log {}",
            node.name,
            node.proc.log.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Shards owned by node, and when it said so, from `deadline` of
/// heartbeats.
async fn owners(
    beats: &mut lapin::Consumer,
    deadline: Duration,
) -> std::collections::HashMap<String, (Vec<u32>, Instant)> {
    let mut owned = std::collections::HashMap::new();
    let t = Instant::now();
    while t.elapsed() < deadline {
        let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(1), beats.next()).await
        else {
            continue;
        };
        if let Ok(b) = sundial_core::codec::decode::<Heartbeat>(&meta_of(&d.properties), &d.data) {
            owned.insert(b.node, (b.owned, Instant::now()));
        }
    }
    owned
}

/// What the consumers of the work queues saw.
#[derive(Default)]
struct Seen {
    /// While set: lateness samples are taken.
    recording: bool,
    lateness: Vec<f64>,
    /// The newest owner epoch seen, by shard.
    epochs: std::collections::HashMap<u32, u64>,
    /// Shards to watch for a first fire (the killed node's, with their
    /// epoch then), and when one of a newer epoch came.
    watch: std::collections::HashMap<u32, u64>,
    first: Option<Instant>,
}

pub(crate) async fn nodes(
    n: usize,
    count: usize,
    shards: u32,
    secs: u64,
    progress: impl Fn(&str, u64, u64),
) -> Nodes {
    let v = crate::common::vhost(&format!("nodes{n}"));
    let s = settings(&v, shards);
    let conn = connect(&v.url(), "bench-nodes").await.expect("connect");
    sundial_amqp::topology::apply(&conn, &s.topology.declarations())
        .await
        .expect("topology");
    let period = (n / RATE).max(1) as u64;

    // Fires are consumed (and dropped) from the start: the queues stay
    // short while ten million jobs come in.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let cch = conn.create_channel().await.expect("channel");
    cch.basic_qos(2_000, BasicQosOptions::default())
        .await
        .expect("qos");
    for q in 0..shards {
        let mut c = cch
            .basic_consume(
                format!("sundial.work.default.{q}").as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                Default::default(),
            )
            .await
            .expect("consume");
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = c.next().await {
                let now = chrono::Utc::now();
                let Ok(ev) =
                    sundial_core::codec::decode::<FireEvent>(&meta_of(&d.properties), &d.data)
                else {
                    continue;
                };
                let mut s = seen.lock().expect("seen");
                if s.recording {
                    s.lateness
                        .push((now - ev.scheduled_at).num_microseconds().unwrap_or(0) as f64 / 1e6);
                }
                if s.first.is_none() && s.watch.get(&ev.shard).is_some_and(|e| ev.epoch > *e) {
                    s.first = Some(Instant::now());
                }
                let e = s.epochs.entry(ev.shard).or_default();
                *e = (*e).max(ev.epoch);
            }
        });
    }

    let mut nodes: Vec<Node> = (1..=count)
        .map(|i| start(&v, &format!("n{i}"), shards))
        .collect();
    for node in &mut nodes {
        until_holds(node, 0, Duration::from_secs(120)).await;
    }
    let t0 = Instant::now();
    // Four commands in flight: the scheduler still applies them one at a
    // time, the round trips overlap.
    let batch = 1_000;
    let mut sent = futures_util::stream::iter((0..n).step_by(batch))
        .map(|from| {
            let (conn, s) = (&conn, &s);
            async move {
                // No worker runs these fires (the bench's consumer takes
                // them): with the default 10-minute grace every occurrence
                // would raise `missed` from minute ten on, 5,000 alerts a
                // second. Six hours (the most) outlasts the run.
                let mut jobs = spread_jobs_range(from, (from + batch).min(n), period, "s");
                for j in &mut jobs {
                    j.misfire.grace = sundial_core::HumanDuration::from_secs(6 * 3600);
                }
                register_batch(conn, s, jobs).await;
                (from + batch).min(n)
            }
        })
        .buffer_unordered(4);
    let mut done = 0u64;
    while let Some(k) = sent.next().await {
        done = done.max(k as u64);
        progress("registering", done, n as u64);
    }
    drop(sent);
    let register_s = t0.elapsed().as_secs_f64();
    progress("converging", 0, count as u64);
    let t1 = Instant::now();
    for (i, node) in nodes.iter_mut().enumerate() {
        until_holds(node, n as u64, Duration::from_secs(1_800)).await;
        progress("converging", i as u64 + 1, count as u64);
    }
    let converge_s = t1.elapsed().as_secs_f64();
    // Milestones on stderr: a long run that fails later still told these.
    eprintln!(
        "nodes: {n} jobs registered in {register_s:.1} s, held by every node {converge_s:.1} s later; RSS {:?} MiB",
        nodes.iter().map(|x| rss_of(x.proc.pid()).round()).collect::<Vec<_>>()
    );

    // Who owns what, from the heartbeats.
    let (_hch, mut beats) =
        sundial_amqp::broker::subscribe(&conn, &s.topology.nodes_exchange(), &[""])
            .await
            .expect("heartbeats");
    // Settled: the bulk load's stream writes are behind; leases balanced.
    for t in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        progress("settling", t + 1, 20);
    }
    let held = owners(&mut beats, Duration::from_secs(3)).await;
    let rss: Vec<(String, usize, f64)> = nodes
        .iter()
        .map(|node| {
            let owned = held.get(&node.name).map_or(0, |(o, _)| o.len());
            (node.name.clone(), owned, rss_of(node.proc.pid()))
        })
        .collect();

    // Lateness at RATE fires/s, as a consumer of the work queues sees it.
    {
        let mut s = seen.lock().expect("seen");
        s.lateness.clear();
        s.recording = true;
    }
    let w = Instant::now();
    for t in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        progress("firing", t + 1, secs);
    }
    let lateness = {
        let mut s = seen.lock().expect("seen");
        s.recording = false;
        std::mem::take(&mut s.lateness)
    };
    let fires_per_s = lateness.len() as f64 / w.elapsed().as_secs_f64();

    // The jobs API of one node, for jobs of every shard.
    let (mut api_page, mut api_job) = (Vec::new(), Vec::new());
    let addr = nodes[1].api;
    for q in 0..200usize {
        progress("API", q as u64, 200);
        let at = (q * 7919) % n;
        let page = format!("/api/v1/jobs?limit=50&cursor=s-{at}");
        let one = format!("/api/v1/jobs/s-{at}?next=10");
        let (p, j) = tokio::task::spawn_blocking(move || {
            (
                crate::common::timed_get(&addr, &page),
                crate::common::timed_get(&addr, &one),
            )
        })
        .await
        .expect("requests");
        assert!(p.0 == 200 && j.0 == 200, "the API answers");
        api_page.push(p.1);
        api_job.push(j.1);
    }
    // Said as soon as measured: a later step that fails keeps them.
    {
        let mut l = lateness.clone();
        let (mut p, mut j) = (api_page.clone(), api_job.clone());
        eprintln!(
            "nodes: {fires_per_s:.0} fires/s, lateness p50 {:.1} ms p99 {:.1} ms max {:.1} ms; API page p99 {:.2} ms, job p99 {:.2} ms",
            pct(&mut l, 0.5) * 1e3,
            pct(&mut l, 0.99) * 1e3,
            pct(&mut l, 1.0) * 1e3,
            pct(&mut p, 0.99) * 1e3,
            pct(&mut j, 0.99) * 1e3,
        );
    }

    // Takeover: SIGKILL n1.
    let victim: BTreeSet<u32> = held
        .get("n1")
        .map(|(o, _)| o.iter().copied().collect())
        .unwrap_or_default();
    assert!(!victim.is_empty(), "n1 held shards: {held:?}");
    {
        let mut s = seen.lock().expect("seen");
        s.watch = victim
            .iter()
            .map(|k| (*k, s.epochs.get(k).copied().unwrap_or_default()))
            .collect();
        s.first = None;
    }
    progress("takeover", 0, 1);
    nodes[0].proc.kill9();
    let killed = Instant::now();
    let all: BTreeSet<u32> = (0..shards).collect();
    let mut latest = held.clone();
    latest.remove("n1");
    let takeover_s = loop {
        assert!(
            killed.elapsed() < Duration::from_secs(300),
            "no takeover within 5 min: {latest:?}"
        );
        let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(1), beats.next()).await
        else {
            continue;
        };
        let Ok(b) = sundial_core::codec::decode::<Heartbeat>(&meta_of(&d.properties), &d.data)
        else {
            continue;
        };
        if b.node == "n1" {
            continue;
        }
        latest.insert(b.node, (b.owned, Instant::now()));
        let covered: BTreeSet<u32> = latest
            .values()
            .flat_map(|(o, _)| o.iter().copied())
            .collect();
        // Fresh words only: both survivors spoke since the kill.
        if covered == all && latest.values().all(|(_, at)| *at > killed) {
            break killed.elapsed().as_secs_f64();
        }
    };
    // The first fire of a shard n1 held, from its new owner.
    let t = Instant::now();
    let first_fire_s = loop {
        if let Some(at) = seen.lock().expect("seen").first {
            break Some(at.duration_since(killed).as_secs_f64());
        }
        if t.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    progress("takeover", 1, 1);
    eprintln!("nodes: takeover {takeover_s:.2} s, first fire {first_fire_s:?}");

    // A fresh node: n1 again, replaying every job.
    progress("fresh node", 0, 1);
    let t2 = Instant::now();
    nodes[0] = start(&v, "n1", shards);
    let ready_s = {
        until_holds(&mut nodes[0], n as u64, Duration::from_secs(1_800)).await;
        t2.elapsed().as_secs_f64()
    };
    let fresh_rss = rss_of(nodes[0].proc.pid());
    progress("fresh node", 1, 1);
    eprintln!("nodes: fresh node ready in {ready_s:.1} s, RSS {fresh_rss:.0} MiB");

    for node in &mut nodes {
        node.proc.stop();
    }
    let _ = conn.close(200, "".into()).await;
    drop(v);
    Nodes {
        jobs: n,
        register_s,
        converge_s,
        rss,
        fires_per_s,
        lateness,
        api_page,
        api_job,
        takeover_s,
        first_fire_s,
        ready_s,
        fresh_rss,
    }
}
