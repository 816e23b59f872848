//! Workflows (issue 24, ADR 0020): who advances an occurrence
//! ([`advance`]) once it opened (`opening`).
//!
//! A workflow occurrence starts with a record, not a fire: the timer (or a
//! trigger, or a backfill) appends the occurrence's `started` record to the
//! history stream, confirmed. Every scheduler follows the history stream
//! and keeps the [`Progress`] of every open occurrence from the records of
//! its step fires; the one that owns the job's timer shard applies
//! [`Progress::advance`] after each record and publishes what starts (step
//! fires, confirmed, then their `fired` records), records what is skipped
//! and the occurrence's ending. A new owner already holds the same progress
//! (it read the same records), so it resumes each occurrence where it
//! stood; a step published by the old owner whose `fired` record it never
//! wrote is published again, with the same fire id.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use actix::Addr;
use chrono::{DateTime, Utc};
use lapin::{Channel, Connection};
use sundial_core::{
    codec::encode,
    protocol::{
        fire::{FireEvent, Occurrence},
        run::{RunBatch, RunEvent, RunKind, DUPLICATE},
    },
    registry::JobEntry,
    topology::Topology,
    workflow::{Ending, Fan, Progress},
    FireId,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use sundial_amqp::{
    history::{Reader, StreamStart},
    publish::{publish_confirmed, PublishError},
};

use crate::{
    error::Error,
    opening::{Occurrences, Owned, OPENED},
    registry::{JobOf, Registry},
};

/// History stream messages in flight to the advancer.
const PREFETCH: u16 = 200;
/// How often the owner looks at every open occurrence it owns (a shard
/// just taken over, a publish that failed).
const SWEEP: Duration = Duration::from_secs(1);
/// An ended occurrence is forgotten this long after its last record.
const KEEP_ENDED: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// An every-worker step fires to every worker of its pool heard within
/// this long and not leaving; a fire whose worker has sent no heartbeat for
/// this long (or said it was leaving) ends dead, "worker gone"
/// (docs/semantics.md §7). One window for both: a worker whose heartbeats
/// are late on a busy broker is not left out silently, and one that died
/// shortly before the step fires is in its set and ends dead, which the
/// failure path reports.
pub(crate) const WORKER_GONE: Duration = Duration::from_secs(30);

/// One workflow occurrence as the history tells it.
struct Open {
    job_id: String,
    scheduled: DateTime<Utc>,
    /// Its `started` record was read: only an opened occurrence is advanced.
    opened: bool,
    /// A trigger's payload for every step, instead of the job's.
    payload: Option<serde_json::Value>,
    progress: Progress,
    last_record: DateTime<Utc>,
    /// Step fires started and not ended, with their worker.
    running: HashMap<String, String>,
    /// Running step fires of a cancelled occurrence the owner has still to
    /// ask their worker to stop, as (fire id, worker).
    to_stop: Vec<(String, String)>,
}

/// What the advancer needs.
pub(crate) struct AdvanceParts {
    pub(crate) topo: Arc<Topology>,
    pub(crate) node: String,
    pub(crate) key: Option<Arc<[u8]>>,
    pub(crate) registry: Addr<Registry>,
    pub(crate) owned: Arc<Owned>,
    pub(crate) horizon: Duration,
    pub(crate) occurrences: Arc<Occurrences>,
    /// How often the alert check runs (`scheduler.alert_interval`).
    pub(crate) alert_interval: Duration,
    /// `scheduler.job_metrics`: per-job occurrence series.
    pub(crate) job_metrics: bool,
    pub(crate) alert_routes: Vec<sundial_core::alert::Route>,
    pub(crate) alert_senders: crate::alerts::Senders,
    pub(crate) dashboard: Option<String>,
}

/// The workers heard of (`sundial.workers` heartbeats), by pool.
#[derive(Default)]
struct Workers {
    /// pool → worker → (last heard, leaving).
    by_pool: HashMap<String, HashMap<String, (std::time::Instant, bool)>>,
}

impl Workers {
    fn heard(&mut self, b: &sundial_core::protocol::node::WorkerBeat) {
        self.by_pool
            .entry(b.pool.clone())
            .or_default()
            .insert(b.worker.clone(), (std::time::Instant::now(), b.leaving));
    }

    /// The pool's workers alive now, sorted.
    fn live(&self, pool: &str, within: Duration) -> Vec<String> {
        let mut out: Vec<String> = self
            .by_pool
            .get(pool)
            .into_iter()
            .flatten()
            .filter(|(_, (at, leaving))| !leaving && at.elapsed() <= within)
            .map(|(w, _)| w.clone())
            .collect();
        out.sort();
        out
    }

    /// Whether `worker` of `pool` is gone: leaving, or silent for
    /// [`WORKER_GONE`] (never heard of: silent since `since`).
    fn gone(&self, pool: &str, worker: &str, since: std::time::Instant) -> Option<String> {
        match self.by_pool.get(pool).and_then(|m| m.get(worker)) {
            Some((_, true)) => Some(format!("worker gone: {worker} stopped before running it")),
            Some((at, false)) if at.elapsed() > WORKER_GONE => Some(format!(
                "worker gone: no heartbeat from {worker} for {}s",
                at.elapsed().as_secs()
            )),
            None if since.elapsed() > WORKER_GONE => Some(format!(
                "worker gone: no heartbeat from {worker} for {}s",
                since.elapsed().as_secs()
            )),
            _ => None,
        }
    }
}

/// Follows the history stream (from `horizon` ago) and advances the
/// workflow occurrences of the shards this node owns, until `stop` (Ok) or
/// the stream or a channel fails (Err).
pub(crate) async fn advance(
    conn: &Connection,
    parts: AdvanceParts,
    stop: CancellationToken,
) -> Result<(), Error> {
    parts.occurrences.reset();
    let since = Utc::now()
        - chrono::TimeDelta::from_std(parts.horizon).unwrap_or(chrono::TimeDelta::hours(24));
    let mut reader = Reader::open(
        conn,
        &parts.topo.history_stream(),
        StreamStart::Since(since),
        PREFETCH,
    )
    .await?;
    let ch = sundial_amqp::broker::confirming_channel(conn).await?;
    // Nothing is decided before the stream is read up to now: a marker of
    // our own, appended now, says when it is.
    let marker = format!(
        "workflow-marker:{}:{}",
        parts.node,
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let mut enc = encode(&RunBatch::of(vec![]))?;
    enc.meta.message_id = Some(marker.clone());
    publish_confirmed(&ch, &parts.topo.history_exchange(), "", &enc, || {})
        .await
        .map_err(Error::not_stored("workflow marker"))?;
    let (_beats_ch, mut beats) =
        sundial_amqp::broker::subscribe(conn, &parts.topo.workers_exchange(), &[""]).await?;
    let mut adv = Advancer {
        parts,
        ch,
        open: HashMap::new(),
        caught_up: false,
        log: sundial_runtime::ratelimit::Every::new(Duration::from_secs(10)),
        workers: Workers::default(),
        since: std::time::Instant::now(),
    };
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The same stream feeds the alert watcher (alerts.rs).
    let mut watcher = crate::alerts::Watcher::new(
        adv.parts.alert_routes.clone(),
        adv.parts.alert_senders.clone(),
        adv.parts.dashboard.clone(),
    );
    let mut alert_tick = tokio::time::interval(adv.parts.alert_interval);
    alert_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A check waits for a marker of its own to come back through the
    // stream: then everything appended before it was read (id, when sent).
    let mut check_marker: Option<(String, DateTime<Utc>)> = None;
    // No check before this (the last one's rest, alerts.rs CHECK_REST).
    let mut rested = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                reader.close("workflow advancer stopping").await;
                return Ok(());
            }
            _ = sweep.tick() => {
                if adv.caught_up {
                    // Ended ones wait for a record (a replay that succeeds).
                    let open: Vec<String> = adv
                        .open
                        .iter()
                        .filter(|(_, o)| o.progress.ended().is_none())
                        .map(|(id, _)| id.clone())
                        .collect();
                    adv.act(open).await?;
                    adv.forget(Utc::now());
                }
            }
            _ = alert_tick.tick() => {
                // One marker at a time: a reader that lags checks less often.
                if adv.caught_up && check_marker.is_none() && tokio::time::Instant::now() >= rested {
                    let sent = Utc::now();
                    let id = format!(
                        "alert-marker:{}:{}",
                        adv.parts.node,
                        sent.timestamp_nanos_opt().unwrap_or_default()
                    );
                    let mut enc = encode(&RunBatch::of(vec![]))?;
                    enc.meta.message_id = Some(id.clone());
                    publish_confirmed(&adv.ch, &adv.parts.topo.history_exchange(), "", &enc, || {})
                        .await
                        .map_err(Error::not_stored("alert check marker"))?;
                    check_marker = Some((id, sent));
                }
            }
            beat = futures_util::StreamExt::next(&mut beats) => {
                let Some(Ok(d)) = beat else {
                    return Err(Error::stream_ended("workflow advancer's worker heartbeats"));
                };
                let meta = sundial_amqp::broker::meta_of(&d.properties);
                if let Ok(b) = sundial_core::codec::decode::<sundial_core::protocol::node::WorkerBeat>(&meta, &d.data) {
                    adv.workers.heard(&b);
                }
            }
            m = reader.next() => {
                let Some(m) = m? else {
                    return Err(Error::stream_ended("workflow advancer's history consumer"));
                };
                if m.id.as_deref() == Some(marker.as_str()) {
                    adv.caught_up = true;
                    adv.parts.occurrences.caught_up();
                    info!(open = adv.open.len(), "workflow advancer caught up with the history stream");
                }
                if let Some((_, sent)) = check_marker
                    .take_if(|(id, _)| m.id.as_deref() == Some(id.as_str()))
                {
                    watcher.forget(Utc::now(), adv.parts.horizon);
                    let parts = crate::alerts::CheckParts {
                        topo: &adv.parts.topo,
                        node: &adv.parts.node,
                        registry: &adv.parts.registry,
                        owned: &adv.parts.owned,
                        horizon: adv.parts.horizon,
                        ch: &adv.ch,
                        job_metrics: adv.parts.job_metrics,
                        read_up_to: sent,
                    };
                    let began = tokio::time::Instant::now();
                    watcher.check(parts).await?;
                    rested = tokio::time::Instant::now() + began.elapsed() * crate::alerts::CHECK_REST;
                }
                let Ok(batch) = m.batch else { continue };
                watcher.read(&batch);
                // Counted from what is read after the catch-up only: a
                // restart must not count the history again.
                if adv.caught_up && adv.parts.job_metrics {
                    crate::alerts::Watcher::count(&batch, &adv.parts.topo, &adv.parts.owned);
                }
                let touched = adv.read(&batch.records);
                if adv.caught_up && !touched.is_empty() {
                    adv.act(touched.into_iter().collect()).await?;
                }
            }
        }
    }
}

struct Advancer {
    parts: AdvanceParts,
    ch: Channel,
    /// Occurrences by fire id.
    open: HashMap<String, Open>,
    caught_up: bool,
    log: sundial_runtime::ratelimit::Every,
    workers: Workers,
    /// When this advancer started (a worker never heard of is gone after
    /// [`WORKER_GONE`] from here).
    since: std::time::Instant,
}

impl Advancer {
    /// Applies records; returns the occurrences they touched.
    fn read(&mut self, records: &[RunEvent]) -> BTreeSet<String> {
        let mut touched = BTreeSet::new();
        for r in records {
            if let Some(step) = FireId::split_step(&r.fire_id) {
                let Some(o) = self.open.get_mut(step.occurrence) else {
                    // A step of an occurrence opened before the horizon, or
                    // of a workflow we never heard open: nothing to advance.
                    continue;
                };
                if r.kind == RunKind::Skipped && r.reason.as_deref() != Some(DUPLICATE) {
                    o.progress.skip_recorded(step.step);
                } else {
                    o.progress.record_fire(&step, r.kind);
                }
                match r.kind {
                    RunKind::Started => {
                        o.running.insert(r.fire_id.clone(), r.worker.clone());
                        // Started after the cancellation (it was queued):
                        // stopped as soon as it starts.
                        if o.progress.ended() == Some(Ending::Cancelled) {
                            o.to_stop.push((r.fire_id.clone(), r.worker.clone()));
                        }
                    }
                    RunKind::Succeeded | RunKind::Failed | RunKind::Dead => {
                        o.running.remove(&r.fire_id);
                    }
                    _ => {}
                }
                o.last_record = r.at;
                touched.insert(step.occurrence.to_string());
                continue;
            }
            match r.kind {
                RunKind::Started if r.reason.as_deref() == Some(OPENED) => {
                    let o = self.open.entry(r.fire_id.clone()).or_insert_with(|| Open {
                        job_id: r.job_id.clone(),
                        scheduled: r.scheduled_at.unwrap_or(r.at),
                        opened: false,
                        payload: None,
                        progress: Progress::default(),
                        last_record: r.at,
                        running: HashMap::new(),
                        to_stop: Vec::new(),
                    });
                    o.opened = true;
                    o.payload.clone_from(&r.payload);
                    self.parts.occurrences.set(&r.fire_id, o.progress.ended());
                    touched.insert(r.fire_id.clone());
                }
                RunKind::Cancelled => {
                    if let Some(o) = self.open.get_mut(&r.fire_id) {
                        if o.progress.cancel() {
                            info!(job_id = %o.job_id, fire_id = %r.fire_id, reason = r.reason.as_deref().unwrap_or(""), "workflow occurrence cancelled");
                            o.to_stop
                                .extend(o.running.iter().map(|(f, w)| (f.clone(), w.clone())));
                        }
                        o.last_record = r.at;
                        self.parts.occurrences.set(&r.fire_id, o.progress.ended());
                        touched.insert(r.fire_id.clone());
                    }
                }
                RunKind::Succeeded | RunKind::Dead => {
                    if let Some(o) = self.open.get_mut(&r.fire_id) {
                        o.progress.ending_recorded(if r.kind == RunKind::Succeeded {
                            Ending::Succeeded
                        } else {
                            Ending::Failed
                        });
                        o.last_record = r.at;
                        self.parts.occurrences.set(&r.fire_id, o.progress.ended());
                    }
                }
                _ => {}
            }
        }
        touched
    }

    /// Forgets occurrences ended long enough ago, and any older than the
    /// horizon.
    fn forget(&mut self, now: DateTime<Utc>) {
        let horizon =
            chrono::TimeDelta::from_std(self.parts.horizon).unwrap_or(chrono::TimeDelta::hours(24));
        self.open.retain(|_, o| {
            let ended_long_ago = o.progress.ended().is_some() && now - o.last_record > KEEP_ENDED;
            !ended_long_ago && now - o.scheduled < horizon
        });
        self.parts.occurrences.keep(|id| self.open.contains_key(id));
    }

    /// Advances the occurrences `ids` whose job's shard this node owns.
    async fn act(&mut self, ids: Vec<String>) -> Result<(), Error> {
        for id in ids {
            let Some(o) = self.open.get(&id) else {
                continue;
            };
            if !o.opened {
                continue;
            }
            let shard = self.parts.topo.shard_of(&o.job_id);
            let Some(epoch) = self.parts.owned.epoch(shard) else {
                continue;
            };
            let job_id = o.job_id.clone();
            let job = self.parts.registry.send(JobOf(job_id.clone())).await?;
            let Some(job) = job.filter(|j| j.spec.workflow().is_some()) else {
                info!(job_id = %job_id, fire_id = %id, "workflow occurrence dropped: the job was deleted or is no longer a workflow");
                self.open.remove(&id);
                continue;
            };
            self.step(&id, &job, shard, epoch).await?;
        }
        Ok(())
    }

    /// One advance of occurrence `id` of `job`: publish what starts, then
    /// record it with the skips and the ending.
    async fn step(
        &mut self,
        id: &str,
        job: &JobEntry,
        shard: u32,
        epoch: u64,
    ) -> Result<(), Error> {
        let Some(steps) = job.spec.workflow() else {
            return Ok(());
        };
        let Some(o) = self.open.get_mut(id) else {
            return Ok(());
        };
        // A cancelled occurrence's running fires: their workers are asked
        // to stop them (best effort: one that is not stopped ends as it
        // would have).
        for (fire_id, worker) in std::mem::take(&mut o.to_stop) {
            if !sundial_core::fire_id::is_worker_id(&worker) {
                continue;
            }
            let msg = sundial_core::protocol::run::CancelRun {
                fire_id: fire_id.clone(),
                job_id: job.spec.id.clone(),
                reason: sundial_core::workflow::CANCELLED.to_string(),
            };
            let sent = match encode(&msg) {
                Ok(enc) => match sundial_amqp::publish::publish_event(
                    &self.ch,
                    &self.parts.topo.cancel_exchange(),
                    &worker,
                    &enc,
                )
                .await
                {
                    Ok(confirm) => confirm.await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok(()) => {
                    info!(job_id = %job.spec.id, fire_id = %fire_id, worker = %worker, "asked the worker to stop a step of a cancelled occurrence");
                }
                Err(e) => {
                    warn!(job_id = %job.spec.id, fire_id = %fire_id, worker = %worker, error = %e, "could not ask the worker to stop a step of a cancelled occurrence");
                }
            }
        }
        let now = Utc::now();
        let node = self.parts.node.clone();
        // A step fire that ended dead without a worker's word, recorded by
        // this node.
        let dead = |fire_id: &str, job_id: &str, pool: &str, why: String| {
            RunEvent::new(RunKind::Dead, fire_id, job_id, pool, &node, now).because(why)
        };
        let mut records = Vec::new();
        // Every-worker fires whose worker went away end dead.
        for (step, worker) in o.progress.on_workers() {
            let pool = steps
                .iter()
                .find(|s| s.id == step)
                .and_then(|s| s.pool.as_deref())
                .unwrap_or(&job.spec.pool);
            if let Some(why) = self.workers.gone(pool, worker, self.since) {
                let fire_id = FireId::for_worker(id, step, worker);
                warn!(job_id = %job.spec.id, fire_id = %fire_id, reason = %why, "every-worker fire ended dead");
                records.push(dead(fire_id.as_str(), &job.spec.id, pool, why));
            }
        }
        for r in &records {
            if let Some(f) = FireId::split_step(&r.fire_id) {
                o.progress.record_fire(&f, r.kind);
            }
        }
        let a = o.progress.advance(&steps);
        if records.is_empty()
            && a.start.is_empty()
            && a.resume.is_empty()
            && a.skip.is_empty()
            && a.ended.is_none()
        {
            return Ok(());
        }
        let occ = Occurrence {
            fire_id: id,
            scheduled: o.scheduled,
            shard,
            epoch,
            manual: id.contains("@trigger:") || id.contains("@backfill:"),
            payload: o.payload.as_ref(),
        };
        let mut fires = Vec::new();
        // Whole steps that start (an every-worker step: on each live worker
        // of its pool now, the set recorded by the fires' records), and the
        // shards of steps started by a previous owner that no record
        // mentions (it died mid-way).
        let mut due: Vec<(usize, Fan<'_>)> = Vec::new();
        let mut live: Vec<(usize, Vec<String>)> = Vec::new();
        for &i in &a.start {
            let st = &steps[i];
            if st.every_worker() {
                let pool = st.pool.as_deref().unwrap_or(&job.spec.pool);
                let set = self.workers.live(pool, WORKER_GONE);
                if set.is_empty() {
                    let fire_id = FireId::for_step(id, &st.id, None);
                    let why = format!("no live worker in pool \"{pool}\" when it fired");
                    warn!(job_id = %job.spec.id, fire_id = %fire_id, reason = %why, "every-worker step ended dead");
                    o.progress.record(&st.id, 0, RunKind::Dead);
                    records.push(dead(fire_id.as_str(), &job.spec.id, pool, why));
                } else {
                    info!(job_id = %job.spec.id, fire_id = %id, step = %st.id, workers = set.len(), "every-worker step fired to the pool's live workers");
                    live.push((i, set));
                }
            } else {
                due.extend(st.fans().into_iter().map(|fan| (i, fan)));
            }
        }
        for (i, set) in &live {
            // The set is known here before its `fired` records are read
            // back: a worker's quick success read first must not end the
            // step as if it were the only one.
            o.progress.fired_on(&steps[*i].id, set);
            due.extend(set.iter().map(|w| (*i, Fan::Worker(w))));
        }
        for &(i, k) in &a.resume {
            let n = steps[i].fanout.and_then(|f| f.shards()).unwrap_or(1);
            info!(job_id = %job.spec.id, fire_id = %id, step = %steps[i].id, shard = k, "workflow step shard published again: no record of it after a takeover");
            due.push((i, Fan::Shard(k, n)));
        }
        for (i, fan) in due {
            let st = &steps[i];
            let ev = FireEvent::of_step(&job.spec, st, &occ, fan, now, self.parts.key.as_deref());
            let routing_key = match fan {
                // Shards of one step spread over the pool's work queues.
                Fan::Shard(k, _) => {
                    Topology::work_routing_key(&ev.pool, (shard + k) % self.parts.topo.shards)
                }
                Fan::One | Fan::Worker(_) => ev.routing_key(),
            };
            records.push(RunEvent::new(
                RunKind::Fired,
                &ev.fire_id,
                &job.spec.id,
                &ev.pool,
                &node,
                now,
            ));
            fires.push((routing_key, ev));
        }
        for (i, why) in &a.skip {
            let st = &steps[*i];
            let fire_id = FireId::for_step(id, &st.id, None);
            info!(job_id = %job.spec.id, fire_id = %fire_id, reason = %why, "workflow step skipped");
            records.push(
                RunEvent::new(
                    RunKind::Skipped,
                    fire_id.as_str(),
                    &job.spec.id,
                    st.pool.as_deref().unwrap_or(&job.spec.pool),
                    &node,
                    now,
                )
                .because(why.as_str()),
            );
        }
        if let Some(ending) = a.ended {
            let states = o.progress.states(&steps);
            let dead: Vec<&str> = steps
                .iter()
                .zip(&states)
                .filter(|(_, s)| **s == sundial_core::workflow::StepState::Dead)
                .map(|(s, _)| s.id.as_str())
                .collect();
            let (kind, reason) = match ending {
                Ending::Succeeded => (RunKind::Succeeded, None),
                Ending::Failed => (
                    RunKind::Dead,
                    Some(format!("step {} dead", dead.join(", "))),
                ),
                // Recorded by the registry when asked, not decided here.
                Ending::Cancelled => (RunKind::Cancelled, None),
            };
            info!(job_id = %job.spec.id, fire_id = %id, outcome = kind.as_str(), "workflow occurrence ended");
            records.push(RunEvent {
                reason,
                duration_ms: u64::try_from((now - o.scheduled).num_milliseconds()).ok(),
                ..RunEvent::new(kind, id, &job.spec.id, &job.spec.pool, &node, now)
            });
        }
        // Every fire sent, then every confirm awaited (pipelined).
        let exchange = self.parts.topo.fire_exchange();
        let encoded = fires
            .iter()
            .map(|(_, ev)| encode(ev))
            .collect::<Result<Vec<_>, _>>()?;
        let sends = fires.iter().zip(&encoded).map(|((routing_key, _), enc)| {
            publish_confirmed(&self.ch, &exchange, routing_key, enc, || {})
        });
        let results = futures_util::future::join_all(sends).await;
        for ((routing_key, ev), result) in fires.iter().zip(results) {
            match result {
                Ok(()) => {
                    debug!(job_id = %ev.job_id, fire_id = %ev.fire_id, shard, "workflow step fired");
                }
                Err(PublishError::Returned { .. }) => {
                    // The step's pool has no queue (deleted since the
                    // upsert): the fire ends dead, so the workflow goes on
                    // by its failure path instead of waiting for ever.
                    let why = format!(
                        "unroutable: no work queue takes {routing_key} (pool \"{}\" has no queues)",
                        ev.pool
                    );
                    warn!(job_id = %ev.job_id, fire_id = %ev.fire_id, reason = %why, "workflow step not delivered; recorded dead");
                    records.push(dead(&ev.fire_id, &ev.job_id, &ev.pool, why));
                }
                Err(e) => return Err(Error::not_stored("workflow step fire")(e)),
            }
        }
        let enc = encode(&RunBatch::of(records))?;
        publish_confirmed(
            &self.ch,
            &self.parts.topo.history_exchange(),
            "",
            &enc,
            || {},
        )
        .await
        .map_err(Error::not_stored("workflow records"))?;
        if let Some(held_back) = self.log.allow(std::time::Instant::now()) {
            debug!(held_back, "workflow advanced");
        }
        Ok(())
    }
}
