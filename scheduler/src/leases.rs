//! `leases::run`: which timer shards this node fires (ADR 0009).
//!
//! A shard is held while this node's *lease connection* holds the exclusive
//! queue `sundial.lease.{shard}` (a second declare anywhere gets 405
//! RESOURCE_LOCKED; the broker drops the queue when the connection closes,
//! so a dead node's leases vanish with its TCP connection). Nodes announce
//! themselves and their shards every `heartbeat_interval` on the fanout
//! exchange `sundial.nodes`; [`sundial_core::lease`] says which shards each
//! live node should hold. Taking a shard: read its watermark, bump the epoch,
//! start a `ShardActor` (misfires over (watermark, now]). Giving one up: stop
//! its timer, wait for in-flight confirms, write the final watermark, delete
//! the lease queue, announce at once.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt};
use lapin::{
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
    Channel, Connection,
};
use sundial_core::{
    codec::{decode, encode},
    lease::Membership,
    protocol::node::Heartbeat,
    settings::{SchedulerSettings, SupervisorSettings},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    registry::{Attach, Detach, Pools, Registry},
    shard::{self, ShardActor, ShardCommon},
    startup,
};
use sundial_amqp::broker::meta_of;
use sundial_runtime::supervise::{Obituary, OneForOne};

use crate::error::Error;

/// Longest wait for one shard's final watermark when giving it up.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Shards taken concurrently.
const ACQUIRE_PARALLEL: usize = 8;

/// What the lease task needs.
pub(crate) struct LeaseParts<'a> {
    /// The dedicated lease connection (no auto-recovery; its loss ends every
    /// lease at once).
    pub(crate) lease_conn: &'a Connection,
    /// The connection the timers publish on.
    pub(crate) conn: &'a Connection,
    pub(crate) registry: Addr<Registry>,
    pub(crate) common: ShardCommon,
    pub(crate) arbiters: &'a [Arbiter],
    pub(crate) settings: SchedulerSettings,
    /// Restart intensity of the timers (one-for-one) before escalating.
    pub(crate) supervisor: SupervisorSettings,
    /// When this process started (misfire policy vs. handover).
    pub(crate) alive_since: DateTime<Utc>,
    /// `/readyz`: the leases part is ready once the first rebalance ran
    /// (this node holds its share, or knows its peers hold them all).
    pub(crate) health: std::sync::Arc<sundial_runtime::Health>,
    /// The broker address this node's connection went to (password
    /// masked), announced for `sundial status`.
    pub(crate) broker: String,
}

/// This task's part in `/readyz`.
pub(crate) const HEALTH_PART: &str = "leases";

struct Held {
    lease: Channel,
    timer: Addr<ShardActor>,
    /// The timer's incarnation in the one-for-one supervisor.
    incarnation: u64,
}

/// Holds leases until `stop` is cancelled (then hands every shard back
/// gracefully) or the lease connection fails (an error: the caller restarts
/// everything, and the broker has already freed the leases).
pub(crate) async fn run(parts: LeaseParts<'_>, stop: CancellationToken) -> Result<(), Error> {
    let topo = parts.common.topo.clone();
    let me = parts.common.node.clone();
    // Heartbeats in and out on the lease connection: a node that can
    // announce itself still holds its leases.
    let (hb, mut beats) =
        sundial_amqp::broker::subscribe(parts.lease_conn, &topo.nodes_exchange(), &[""]).await?;

    let membership = Membership::new(
        me,
        topo.shards,
        parts.settings.heartbeat_timeout,
        Instant::now(),
    );
    let (timers, mut obituaries) = OneForOne::new("timer-shard", parts.supervisor);
    // The heartbeat does not wait for this loop: a long rebalance, or an
    // actor that keeps this thread busy for seconds, would make peers take
    // this node for dead (and its shards would go round the nodes). A task
    // on the runtime's worker threads says the last word again when this
    // loop has not spoken for an interval; it ends with the loop.
    let last: LastWord = Default::default();
    let keep_alive = CancellationToken::new();
    let _keep_alive_ends = keep_alive.clone().drop_guard();
    let speaker = tokio::spawn(say_again(
        hb.clone(),
        topo.nodes_exchange(),
        parts.settings.heartbeat_interval,
        last.clone(),
        keep_alive.clone(),
    ));
    let mut state = State {
        last,
        parts,
        membership,
        held: BTreeMap::new(),
        hb,
        started_at: Utc::now(),
        timers,
        restarts: BTreeMap::new(),
        pools: Vec::new(),
    };
    // Listen before taking anything: a node joining a running cluster
    // learns who holds what first (instead of trying every lease).
    let interval = state.parts.settings.heartbeat_interval;
    state.announce(false).await;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + interval + Duration::from_millis(200),
        interval,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        let next_restart = state.restarts.values().min().copied();
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            Some(id) = obituaries.recv() => {
                // One-for-one: a timer that ended on its own is restarted
                // alone (the lease is kept), after a backoff.
                if let Some(shard) = state.timers.failed(id) {
                    match state.timers.restart(&shard) {
                        Ok(delay) => {
                            state.restarts.insert(shard, tokio::time::Instant::now() + delay);
                        }
                        Err(e) => break Err(e.into()),
                    }
                }
            }
            () = sleep_until(next_restart) => {
                let now = tokio::time::Instant::now();
                let due: Vec<u32> = state.restarts.iter().filter(|(_, t)| **t <= now).map(|(s, _)| *s).collect();
                let mut failed = None;
                for shard in due {
                    state.restarts.remove(&shard);
                    if let Err(e) = state.restart_timer(shard).await {
                        failed = Some(e);
                        break;
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
            }
            _ = tick.tick() => {
                if let Err(e) = state.read_delivered(&mut beats) {
                    break Err(e);
                }
                if let Err(e) = state.rebalance().await {
                    break Err(e);
                }
                state.announce(false).await;
                state.parts.health.set(HEALTH_PART, None);
            }
            beat = beats.next() => {
                let changed = state
                    .take_in(beat)
                    .and_then(|heard| Ok(state.read_delivered(&mut beats)? || heard));
                match changed {
                    Ok(true) => match state.rebalance().await {
                        Ok(true) => state.announce(false).await,
                        Ok(false) => {}
                        Err(e) => break Err(e),
                    },
                    Ok(false) => {}
                    Err(e) => break Err(e),
                }
            }
        }
    };
    // From here only this loop speaks (a `leaving` word must be the last).
    keep_alive.cancel();
    let _ = speaker.await;
    // Graceful: hand every shard back (final watermarks) and say goodbye so
    // peers take over at once. After a failure the leases are gone already;
    // stop the timers (their final watermarks are best effort).
    let all: Vec<u32> = state.held.keys().copied().collect();
    state.release(&all).await;
    if result.is_ok() {
        state.announce(true).await;
    }
    metrics::gauge!(sundial_runtime::metrics::SHARDS_OWNED).set(0.0);
    result
}

/// The last heartbeat this node's lease loop published, and when.
type LastWord = std::sync::Arc<std::sync::Mutex<Option<(Heartbeat, Instant)>>>;

/// Publishes the last word again (with the time now) whenever the lease
/// loop has not published for `interval`, until `stop`.
async fn say_again(
    hb: Channel,
    exchange: String,
    interval: Duration,
    last: LastWord,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let again = match last.lock() {
            Ok(mut l) => match l.as_mut() {
                Some((h, at)) if at.elapsed() >= interval && !h.leaving => {
                    h.at = Utc::now();
                    *at = Instant::now();
                    Some(h.clone())
                }
                _ => None,
            },
            Err(_) => None,
        };
        let Some(h) = again else { continue };
        let Ok(enc) = encode(&h) else { continue };
        if let Err(e) = sundial_amqp::publish::publish_event(&hb, &exchange, "", &enc).await {
            debug!(error = %e, "heartbeat not sent");
        }
    }
}

struct State<'a> {
    /// What the loop said last (said again by [`say_again`]).
    last: LastWord,
    parts: LeaseParts<'a>,
    membership: Membership,
    held: BTreeMap<u32, Held>,
    hb: Channel,
    started_at: DateTime<Utc>,
    /// One-for-one supervision of the timers.
    timers: OneForOne<u32>,
    /// Timers to start again (held shards whose timer stopped), and when.
    restarts: BTreeMap<u32, tokio::time::Instant>,
    /// The pools of the registry, as last heard (for heartbeats).
    pools: Vec<String>,
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl State<'_> {
    /// Takes in a peer's heartbeat; whether the cluster changed in a way
    /// that may change this node's plan.
    fn heard(&mut self, h: Heartbeat) -> bool {
        let me = &self.parts.common.node;
        if &h.node == me {
            if h.started_at != self.started_at {
                warn!(node = %h.node, "another scheduler runs with this node name; give each node its own --node");
            }
            return false;
        }
        if h.shards != self.parts.common.topo.shards {
            warn!(node = %h.node, theirs = h.shards, ours = self.parts.common.topo.shards, "peer has another topology.shards; ignored");
            return false;
        }
        let was_live = self.membership.live().contains(&h.node);
        let before: Vec<Option<String>> = (0..self.parts.common.topo.shards)
            .map(|s| self.membership.claimed_by(s).map(str::to_string))
            .collect();
        if !was_live && !h.leaving {
            info!(peer = %h.node, "scheduler node joined");
        } else if h.leaving {
            info!(peer = %h.node, "scheduler node left");
        }
        self.membership.heartbeat(
            &h.node,
            h.owned.iter().copied().collect(),
            h.leaving,
            Instant::now(),
        );
        let after: Vec<Option<String>> = (0..self.parts.common.topo.shards)
            .map(|s| self.membership.claimed_by(s).map(str::to_string))
            .collect();
        !was_live || h.leaving || before != after
    }

    /// Takes in every heartbeat delivered and not read yet. Called before
    /// peers are judged: after a busy moment here (a long rebalance, a
    /// starved thread) their heartbeats wait in the consumer, and reading
    /// the clock first would call live peers silent (seen at 10M jobs on
    /// three nodes: shards went round the nodes). Whether one of them
    /// changed what this node may plan.
    fn read_delivered(&mut self, beats: &mut lapin::Consumer) -> Result<bool, Error> {
        let mut changed = false;
        while let Some(beat) = futures_util::FutureExt::now_or_never(beats.next()) {
            changed |= self.take_in(beat)?;
        }
        Ok(changed)
    }

    /// Takes in one delivery of the heartbeat consumer: whether it changed
    /// what this node may plan; `Err` when the consumer failed or ended.
    fn take_in(
        &mut self,
        beat: Option<Result<lapin::message::Delivery, lapin::Error>>,
    ) -> Result<bool, Error> {
        match beat {
            Some(Ok(d)) => match decode::<Heartbeat>(&meta_of(&d.properties), &d.data) {
                Ok(h) => Ok(self.heard(h)),
                Err(e) => {
                    warn!(error = %e, "undecodable heartbeat ignored");
                    Ok(false)
                }
            },
            Some(Err(e)) => Err(Error::broker("heartbeat delivery")(e)),
            None => Err(Error::stream_ended("heartbeat consumer")),
        }
    }

    /// Expires silent peers, then gives up and takes shards as the plan
    /// says. Returns whether anything was given up or taken.
    async fn rebalance(&mut self) -> Result<bool, Error> {
        let now = Instant::now();
        for gone in self.membership.expire(now) {
            warn!(peer = %gone, "scheduler node silent past the heartbeat timeout; taking over its shards");
        }
        let held: BTreeSet<u32> = self.held.keys().copied().collect();
        let plan = self.membership.plan(&held, now);
        let changed = !plan.release.is_empty();
        self.release(&plan.release).await;
        let taken = self.acquire(&plan.acquire).await?;
        Ok(changed || taken > 0)
    }

    /// Hands shards over: the registry stops routing to them, each timer
    /// drains and writes its final watermark, then the lease is deleted.
    async fn release(&mut self, shards: &[u32]) {
        let mut going = Vec::new();
        for s in shards {
            self.restarts.remove(s);
            if let Some(h) = self.held.remove(s) {
                self.timers.retire(h.incarnation);
                self.parts.registry.do_send(Detach(*s));
                going.push((*s, h));
            }
        }
        if going.is_empty() {
            return;
        }
        let topo = self.parts.common.topo.clone();
        stream::iter(going)
            .for_each_concurrent(None, |(shard, h)| {
                let topo = topo.clone();
                async move {
                    if tokio::time::timeout(RELEASE_TIMEOUT, h.timer.send(shard::Flush))
                        .await
                        .is_err()
                    {
                        warn!(
                            shard,
                            "timer did not stop in time; releasing its lease anyway"
                        );
                    }
                    let queue = topo.lease_queue(shard);
                    if let Err(e) = h
                        .lease
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await
                    {
                        debug!(shard, error = %e, "lease queue not deleted (connection closing?)");
                    }
                    let _ = h.lease.close(200, "released".into()).await;
                    info!(shard, "shard handed over");
                }
            })
            .await;
        metrics::gauge!(sundial_runtime::metrics::SHARDS_OWNED).set(self.held.len() as f64);
    }

    /// Tries to lease `shards`; starts a timer for each one taken. Returns
    /// how many were taken.
    async fn acquire(&mut self, shards: &[u32]) -> Result<usize, Error> {
        if shards.is_empty() {
            return Ok(0);
        }
        let enlisted: Vec<(u32, u64, Obituary)> = shards
            .iter()
            .map(|s| {
                let (id, obituary) = self.timers.enlist(*s);
                (*s, id, obituary)
            })
            .collect();
        let ids: Vec<u64> = enlisted.iter().map(|(_, id, _)| *id).collect();
        let parts = &self.parts;
        let results: Vec<Result<Option<(u32, Held)>, Error>> = stream::iter(enlisted)
            .map(|(shard, id, obituary)| take(parts, shard, id, obituary))
            .buffer_unordered(ACQUIRE_PARALLEL)
            .collect()
            .await;
        // Tries that took nothing: their obituaries are not failures.
        for id in ids {
            if !self.held.values().any(|h| h.incarnation == id)
                && !results
                    .iter()
                    .any(|r| matches!(r, Ok(Some((_, h))) if h.incarnation == id))
            {
                self.timers.retire(id);
            }
        }
        let mut attach = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok(Some((shard, held))) => {
                    attach.push((shard, held.timer.clone()));
                    self.held.insert(shard, held);
                }
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let taken = attach.len();
        if taken > 0 {
            self.parts.registry.do_send(Attach {
                shards: attach,
                alive_since: self.parts.alive_since,
            });
            metrics::gauge!(sundial_runtime::metrics::SHARDS_OWNED).set(self.held.len() as f64);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// Starts a new timer for a held shard whose timer stopped (one-for-one:
    /// the lease and every other shard are untouched).
    async fn restart_timer(&mut self, shard: u32) -> Result<(), Error> {
        if !self.held.contains_key(&shard) {
            return Ok(());
        }
        let (id, obituary) = self.timers.enlist(shard);
        let timer = start_timer(&self.parts, shard, obituary).await?;
        self.parts.registry.do_send(Attach {
            shards: vec![(shard, timer.clone())],
            alive_since: self.parts.alive_since,
        });
        if let Some(h) = self.held.get_mut(&shard) {
            h.timer = timer;
            h.incarnation = id;
        }
        Ok(())
    }

    /// Publishes this node's heartbeat (best effort: a lost one is covered
    /// by the next, and a dead channel shows up as a connection error).
    async fn announce(&mut self, leaving: bool) {
        // A registry busy with a long command (a snapshot of a million jobs)
        // must not delay the heartbeat: peers would take this node for dead.
        if let Ok(Ok(p)) =
            tokio::time::timeout(Duration::from_millis(50), self.parts.registry.send(Pools)).await
        {
            self.pools = p;
        }
        let pools = self.pools.clone();
        let (unroutable, unroutable_last) = self.parts.common.set_aside.read();
        let h = Heartbeat {
            node: self.parts.common.node.clone(),
            started_at: self.started_at,
            at: Utc::now(),
            owned: self.held.keys().copied().collect(),
            shards: self.parts.common.topo.shards,
            pools,
            leaving,
            version: env!("CARGO_PKG_VERSION").to_string(),
            unroutable,
            unroutable_last,
            broker: Some(self.parts.broker.clone()),
            alert_routes: self.parts.common.alert_health.read(),
        };
        let Ok(enc) = encode(&h) else { return };
        if let Ok(mut l) = self.last.lock() {
            *l = Some((h, Instant::now()));
        }
        let exchange = self.parts.common.topo.nodes_exchange();
        // Not confirmed: a lost heartbeat is made good by the next one.
        if let Err(e) = sundial_amqp::publish::publish_event(&self.hb, &exchange, "", &enc).await {
            debug!(error = %e, "heartbeat not sent");
        }
    }
}

/// Tries to lease one shard: `Ok(None)` when another node holds it.
async fn take(
    parts: &LeaseParts<'_>,
    shard: u32,
    incarnation: u64,
    obituary: Obituary,
) -> Result<Option<(u32, Held)>, Error> {
    let topo = &parts.common.topo;
    let lease = sundial_amqp::broker::open_channel(parts.lease_conn).await?;
    let queue = topo.lease_queue(shard);
    if let Err(e) = lease
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
    {
        // 405 RESOURCE_LOCKED: held by another node (the broker closed this
        // channel). Anything else on a live connection is logged and the
        // shard tried again later.
        let locked = matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 405);
        if !locked {
            if !parts.lease_conn.status().connected() {
                return Err(Error::broker(format!(
                    "queue.declare lease {shard} (lease connection closed)"
                ))(e));
            }
            warn!(shard, error = %e, "lease not taken");
        }
        return Ok(None);
    }
    match start_timer(parts, shard, obituary).await {
        Ok(timer) => Ok(Some((
            shard,
            Held {
                lease,
                timer,
                incarnation,
            },
        ))),
        Err(e) => {
            let _ = lease
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
            Err(e)
        }
    }
}

/// Starts the timer of a held shard: reads its watermark, bumps the epoch,
/// starts a `ShardActor` on one of the arbiters (not loaded yet: the caller
/// attaches it to the registry, which loads its jobs).
async fn start_timer(
    parts: &LeaseParts<'_>,
    shard: u32,
    obituary: Obituary,
) -> Result<Addr<ShardActor>, Error> {
    let topo = &parts.common.topo;
    let wm = sundial_amqp::watermark::read(parts.conn, topo, shard).await?;
    let now = Utc::now();
    let floor = startup::misfire_floor(wm.as_ref(), now);
    let epoch = wm.as_ref().map_or(1, |w| w.epoch + 1);
    let ch = sundial_amqp::broker::confirming_channel(parts.conn).await?;
    let actor = ShardActor::new(shard, epoch, ch, floor, &parts.common, obituary);
    let arbiter = &parts.arbiters[shard as usize % parts.arbiters.len()];
    let addr = ShardActor::start_in_arbiter(&arbiter.handle(), move |_| actor);
    info!(
        shard,
        epoch,
        previous_owner = wm.as_ref().map(|w| w.owner.as_str()),
        watermark_lag_ms = wm.as_ref().map(|w| (now - w.up_to).num_milliseconds()),
        "shard leased"
    );
    Ok(addr)
}
