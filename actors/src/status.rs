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
pub struct Status {
    pub at: DateTime<Utc>,
    pub nodes: Vec<Node>,
    /// Workers heard on `sundial.workers` (by id).
    pub workers: Vec<Worker>,
    pub shards: Vec<Shard>,
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, Serialize)]
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
}

#[derive(Debug, Clone, Serialize)]
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

/// Listens to heartbeats (schedulers' and workers') for `listen` (at least
/// one heartbeat interval), then reads watermarks and queue depths.
pub async fn gather(conn: &Connection, topo: &Topology, listen: Duration) -> Result<Status, Error> {
    let (ch, mut beats) = subscribe(conn, &topo.nodes_exchange(), &[""]).await?;
    // A topology applied by an older release has no workers exchange: no
    // workers listed, the rest as before.
    let (wch, mut wbeats) = match subscribe(conn, &topo.workers_exchange(), &[""]).await {
        Ok((c, b)) => (Some(c), Some(b)),
        Err(e) if e.is_not_found() => (None, None),
        Err(e) => return Err(e),
    };
    let mut latest: BTreeMap<String, (Heartbeat, DateTime<Utc>)> = BTreeMap::new();
    let mut workers: BTreeMap<String, (WorkerBeat, DateTime<Utc>)> = BTreeMap::new();
    let deadline = tokio::time::sleep(listen);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            d = beats.next() => {
                let Some(Ok(d)) = d else {
                    return Err(Error::StreamEnded("heartbeat subscription"));
                };
                if let Ok(h) = decode::<Heartbeat>(&meta_of(&d.properties), &d.data) {
                    if h.leaving {
                        latest.remove(&h.node);
                    } else {
                        latest.insert(h.node.clone(), (h, Utc::now()));
                    }
                }
            }
            Some(d) = async { match wbeats.as_mut() { Some(b) => b.next().await, None => None } } => {
                let Ok(d) = d else {
                    return Err(Error::StreamEnded("worker heartbeat subscription"));
                };
                if let Ok(w) = decode::<WorkerBeat>(&meta_of(&d.properties), &d.data) {
                    if w.leaving {
                        workers.remove(&w.worker);
                    } else {
                        workers.insert(w.worker.clone(), (w, Utc::now()));
                    }
                }
            }
        }
    }
    let _ = ch.close(200, "status".into()).await;
    if let Some(wch) = wch {
        let _ = wch.close(200, "status".into()).await;
    }
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
    pools.sort();
    pools.dedup();

    let mut shards = Vec::with_capacity(topo.shards as usize);
    for shard in 0..topo.shards {
        let wm = crate::scheduler::read_watermark(conn, topo, shard).await?;
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
            match crate::broker::passive_declare(conn, &topo.work_queue(&pool, shard)).await? {
                Some((messages, consumers)) => {
                    p.queued += u64::from(messages);
                    p.workers = p.workers.max(consumers);
                }
                None => p.missing_queues += 1,
            }
        }
        match crate::broker::passive_declare(conn, &topo.dead_queue(&pool)).await? {
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
