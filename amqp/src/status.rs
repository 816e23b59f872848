//! What `sundial status` shows: scheduler nodes and workers (from their
//! heartbeats), who holds each timer shard and how far its watermark lags,
//! and per pool the queued fires, connected workers and dead letters.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::Connection;
use serde::Serialize;
use sundial_core::{
    codec::decode,
    protocol::node::{Heartbeat, WorkerBeat},
    topology::Topology,
};

use crate::{
    broker::{meta_of, subscribe},
    error::Error,
};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    pub at: DateTime<Utc>,
    pub nodes: Vec<Node>,
    /// Workers heard on `sundial.workers` (by id).
    pub workers: Vec<Worker>,
    pub shards: Vec<Shard>,
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    pub node: String,
    pub started_at: DateTime<Utc>,
    /// Age of its last heartbeat.
    pub last_heartbeat_ms: i64,
    pub owned: Vec<u32>,
    pub version: String,
    /// Fires it set aside as unroutable since it started (dead-lettered).
    pub unroutable: u64,
    pub unroutable_last: Option<String>,
    /// The broker address it is connected to.
    pub broker: Option<String>,
    /// The alert routes it delivered on since it started, and how that went.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alert_routes: Vec<sundial_core::protocol::node::RouteHealth>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Worker {
    pub worker: String,
    pub pool: String,
    pub started_at: DateTime<Utc>,
    /// Age of its last heartbeat.
    pub last_heartbeat_ms: i64,
    /// Attempts running, and at most.
    pub running: u32,
    pub concurrency: u32,
    pub version: String,
    /// The broker address it is connected to.
    pub broker: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Shard {
    pub shard: u32,
    /// The node whose heartbeat claims it; `None`: unowned (nothing fires
    /// its jobs until a node takes it).
    pub owner: Option<String>,
    pub epoch: Option<u64>,
    pub watermark: Option<DateTime<Utc>>,
    /// How far behind now its watermark is (a held shard: ~0.25 s).
    pub lag_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pool {
    pub pool: String,
    /// Fires waiting in the pool's shard queues (ready, not yet taken).
    pub queued: u64,
    /// Workers consuming (the most consumers on any of its shard queues).
    pub workers: u32,
    /// Messages in its dead-letter queue.
    pub dead: u64,
    /// Queues that do not exist (no worker of the pool ever started).
    pub missing_queues: u32,
}

/// The heartbeats heard so far: the last of each scheduler and worker, with
/// when it arrived.
#[derive(Debug, Clone, Default)]
pub struct Heard {
    nodes: BTreeMap<String, (Heartbeat, DateTime<Utc>)>,
    workers: BTreeMap<String, (WorkerBeat, DateTime<Utc>)>,
}

/// One heartbeat, a scheduler's or a worker's.
enum Beat {
    Node(Heartbeat),
    Worker(WorkerBeat),
}

/// Keeps `beat` as the last of `name`, or forgets `name` when it is leaving.
fn keep<T>(map: &mut BTreeMap<String, (T, DateTime<Utc>)>, name: &str, leaving: bool, beat: T) {
    if leaving {
        map.remove(name);
    } else {
        map.insert(name.to_string(), (beat, Utc::now()));
    }
}

impl Heard {
    fn take(&mut self, beat: Beat) {
        match beat {
            Beat::Node(h) => keep(&mut self.nodes, &h.node.clone(), h.leaving, h),
            Beat::Worker(w) => keep(&mut self.workers, &w.worker.clone(), w.leaving, w),
        }
    }

    /// Forgets processes silent for longer than `gone`.
    fn expire(&mut self, gone: Duration) {
        let Ok(gone) = chrono::Duration::from_std(gone) else {
            return;
        };
        let cutoff = Utc::now() - gone;
        self.nodes.retain(|_, (_, seen)| *seen >= cutoff);
        self.workers.retain(|_, (_, seen)| *seen >= cutoff);
    }
}

/// Both heartbeat subscriptions; the workers' is `None` on a topology
/// applied by an older release (no `sundial.workers`: no workers listed).
struct Subscriptions {
    channels: Vec<lapin::Channel>,
    nodes: lapin::Consumer,
    workers: Option<lapin::Consumer>,
}

impl Subscriptions {
    async fn open(conn: &Connection, topo: &Topology) -> Result<Self, Error> {
        let (ch, nodes) = subscribe(conn, &topo.nodes_exchange(), &[""]).await?;
        let mut channels = vec![ch];
        let workers = match subscribe(conn, &topo.workers_exchange(), &[""]).await {
            Ok((c, b)) => {
                channels.push(c);
                Some(b)
            }
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        Ok(Self {
            channels,
            nodes,
            workers,
        })
    }

    /// The next heartbeat (`None`: a message that is none); an error when a
    /// subscription ended (the channel or connection closed).
    async fn next(&mut self) -> Result<Option<Beat>, Error> {
        let workers = async {
            match self.workers.as_mut() {
                Some(w) => w.next().await,
                None => std::future::pending().await,
            }
        };
        Ok(tokio::select! {
            d = self.nodes.next() => {
                let Some(Ok(d)) = d else {
                    return Err(Error::StreamEnded("heartbeat subscription"));
                };
                decode::<Heartbeat>(&meta_of(&d.properties), &d.data).ok().map(Beat::Node)
            }
            d = workers => {
                let Some(Ok(d)) = d else {
                    return Err(Error::StreamEnded("worker heartbeat subscription"));
                };
                decode::<WorkerBeat>(&meta_of(&d.properties), &d.data).ok().map(Beat::Worker)
            }
        })
    }

    async fn close(self) {
        for ch in self.channels {
            let _ = ch.close(200, "status".into()).await;
        }
    }
}

/// Listens to heartbeats (schedulers' and workers') for `listen` (at least
/// one heartbeat interval), then reads watermarks and queue depths.
/// Queues are probed through `probe` (a pool heard of may have none).
pub async fn gather(
    conn: &Connection,
    probe: &crate::broker::Probe,
    topo: &Topology,
    listen: Duration,
) -> Result<Status, Error> {
    let mut subs = Subscriptions::open(conn, topo).await?;
    let mut heard = Heard::default();
    let deadline = tokio::time::sleep(listen);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            b = subs.next() => if let Some(b) = b? {
                heard.take(b);
            },
        }
    }
    subs.close().await;
    assemble(conn, probe, topo, heard).await
}

/// A standing heartbeat subscription (the API's): `status` answers from
/// what it heard instead of listening an interval on every call.
pub struct Watch {
    heard: std::sync::Arc<std::sync::Mutex<Heard>>,
    since: std::time::Instant,
    /// Processes silent this long are left out.
    gone: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Subscribes on `conn`; processes silent for `gone` are dropped.
    pub async fn start(conn: &Connection, topo: &Topology, gone: Duration) -> Result<Self, Error> {
        let mut subs = Subscriptions::open(conn, topo).await?;
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Heard::default()));
        let h = heard.clone();
        let task = tokio::spawn(async move {
            while let Ok(b) = subs.next().await {
                if let (Some(b), Ok(mut h)) = (b, h.lock()) {
                    h.take(b);
                }
            }
            subs.close().await;
        });
        Ok(Self {
            heard,
            since: std::time::Instant::now(),
            gone,
            task,
        })
    }

    /// Whether the subscription still runs (it ends with its connection).
    pub fn alive(&self) -> bool {
        !self.task.is_finished()
    }

    /// The status from what was heard, after at least `listen` of listening
    /// (waits the rest on the first calls).
    pub async fn status(
        &self,
        conn: &Connection,
        probe: &crate::broker::Probe,
        topo: &Topology,
        listen: Duration,
    ) -> Result<Status, Error> {
        if let Some(rest) = listen.checked_sub(self.since.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        let heard = match self.heard.lock() {
            Ok(mut h) => {
                h.expire(self.gone);
                h.clone()
            }
            Err(_) => Heard::default(),
        };
        assemble(conn, probe, topo, heard).await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The status from `heard` and what the broker says now: watermarks and
/// queue depths.
async fn assemble(
    conn: &Connection,
    probe: &crate::broker::Probe,
    topo: &Topology,
    heard: Heard,
) -> Result<Status, Error> {
    let Heard {
        nodes: latest,
        workers,
    } = heard;
    let now = Utc::now();

    let mut owner_of: BTreeMap<u32, String> = BTreeMap::new();
    let mut pools: Vec<String> = topo.pools.clone();
    let nodes: Vec<Node> = latest
        .values()
        .map(|(h, seen)| {
            for s in &h.owned {
                owner_of.insert(*s, h.node.clone());
            }
            pools.extend(h.pools.iter().cloned());
            Node {
                node: h.node.clone(),
                started_at: h.started_at,
                last_heartbeat_ms: (now - *seen).num_milliseconds(),
                owned: h.owned.clone(),
                version: h.version.clone(),
                unroutable: h.unroutable,
                unroutable_last: h.unroutable_last.clone(),
                broker: h.broker.clone(),
                alert_routes: h.alert_routes.clone(),
            }
        })
        .collect();
    let workers: Vec<Worker> = workers
        .into_values()
        .map(|(w, seen)| {
            pools.push(w.pool.clone());
            Worker {
                worker: w.worker,
                pool: w.pool,
                started_at: w.started_at,
                last_heartbeat_ms: (now - seen).num_milliseconds(),
                running: w.running,
                concurrency: w.concurrency,
                version: w.version,
                broker: w.broker,
            }
        })
        .collect();
    // Heartbeats are input: a name that could be no pool never becomes a
    // queue name.
    pools.retain(|p| sundial_core::job::check_pool("pool", p).is_ok());
    pools.sort();
    pools.dedup();

    let mut shards = Vec::with_capacity(topo.shards as usize);
    for shard in 0..topo.shards {
        let wm = crate::watermark::read(conn, topo, shard).await?;
        shards.push(Shard {
            shard,
            owner: owner_of.get(&shard).cloned(),
            epoch: wm.as_ref().map(|w| w.epoch),
            watermark: wm.as_ref().map(|w| w.up_to),
            // Against the time it was read (not the start of the command);
            // a clock a little behind the scheduler's reads as no lag.
            lag_ms: wm
                .as_ref()
                .map(|w| (Utc::now() - w.up_to).num_milliseconds().max(0)),
        });
    }

    let mut out = Vec::new();
    for pool in pools {
        let mut p = Pool {
            pool: pool.clone(),
            queued: 0,
            workers: 0,
            dead: 0,
            missing_queues: 0,
        };
        for shard in 0..topo.shards {
            match probe
                .passive_declare(&topo.work_queue(&pool, shard))
                .await?
            {
                Some((messages, consumers)) => {
                    p.queued += u64::from(messages);
                    p.workers = p.workers.max(consumers);
                }
                None => p.missing_queues += 1,
            }
        }
        match probe.passive_declare(&topo.dead_queue(&pool)).await? {
            Some((messages, _)) => p.dead = u64::from(messages),
            None => p.missing_queues += 1,
        }
        out.push(p);
    }
    Ok(Status {
        at: now,
        nodes,
        workers,
        shards,
        pools: out,
    })
}
