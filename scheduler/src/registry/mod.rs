//! `Registry`: owns the registry view, executes control commands one at a
//! time (append to the stream with confirms, then apply, then answer),
//! follows the stream for records other nodes append, and tells the timer
//! shards this node holds what changed.

use std::{collections::HashSet, sync::Arc};

use actix::prelude::*;
use chrono::Utc;
use lapin::{message::Delivery, options::BasicAckOptions, Channel};
use sundial_core::{
    codec::{decode, encode},
    control::{audit_of, decide, Decision},
    protocol::{
        control::{Command, Reply, ReplyError},
        registry::{RegistryIndex, RegistryRecord, SnapshotHead},
    },
    registry::{Change, RegistryView},
    settings::RegistrySettings,
    topology::Topology,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    shard::{JobChange, ShardActor},
    startup::Replayed,
};
use sundial_amqp::{
    broker::meta_of,
    publish::{publish_all_confirmed, publish_confirmed},
};

mod handlers;
mod walk;

use handlers::*;
pub(crate) use handlers::{Execute, JobOf, JobsIn};

/// Definitions per snapshot part (~1 KB each: parts stay near 1 MB).
const SNAPSHOT_PART_JOBS: usize = 1_000;
/// Snapshot parts published before their confirms are awaited (~15 MB).
const SNAPSHOT_PUBLISH_BATCH: usize = 50;
/// About the size of one definition in a snapshot (JSON): the log since
/// the last snapshot must exceed the snapshot's size before another is due.
const SNAPSHOT_BYTES_PER_JOB: u64 = 256;
/// How often the snapshot age is checked.
const SNAPSHOT_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

pub(crate) struct Registry {
    view: RegistryView,
    /// Bytes appended since the newest complete snapshot.
    bytes_since_snapshot: u64,
    /// When the newest complete snapshot was written.
    last_snapshot: Option<chrono::DateTime<Utc>>,
    /// Set while a snapshot is queued, so only one is.
    snapshot_pending: bool,
    settings: RegistrySettings,
    node: String,
    /// Confirm-mode channel for appends to the registry stream.
    channel: Channel,
    topo: Arc<Topology>,
    /// Timer shard actors this node holds, indexed by shard number.
    shards: Vec<Option<Addr<ShardActor>>>,
    /// Message ids of records this node appended and already applied: the
    /// follower skips them when they come back.
    own: HashSet<String>,
    /// Whether this node appended records (it is the active control
    /// consumer): only then does the size rule write snapshots.
    appender: bool,
    /// The stream consumer positioned after replay; taken at start.
    follow: Option<lapin::Consumer>,
    /// Its channel, kept open while the registry lives.
    _follow_channel: Channel,
    /// Cancelled when following the stream fails (the scheduler restarts).
    failed: CancellationToken,
    /// Cancels `failed` when this actor goes, however it goes (a panic in a
    /// handler included): everything that uses it restarts (rest-for-one).
    _down: tokio_util::sync::DropGuard,
    /// Signs manual fires when set.
    key: Option<Arc<[u8]>>,
    /// Workflow occurrences as this node's advancer read them (`cancel`).
    occurrences: Arc<crate::opening::Occurrences>,
    /// Jobs changing form after shards were taken or let go.
    converting: Converting,
    /// Another node's snapshot being followed: its id, the next part, and
    /// the log bytes before its first part (what it sums up).
    followed: Option<(String, u32, u64)>,
}

/// How a `Registry` is wired.
pub(crate) struct RegistryParts {
    pub(crate) channel: Channel,
    pub(crate) topo: Arc<Topology>,
    pub(crate) settings: RegistrySettings,
    pub(crate) node: String,
    pub(crate) failed: CancellationToken,
    pub(crate) key: Option<Arc<[u8]>>,
    pub(crate) occurrences: Arc<crate::opening::Occurrences>,
}

impl Registry {
    pub(crate) fn new(replayed: Replayed, parts: RegistryParts) -> Self {
        let RegistryParts {
            channel,
            topo,
            settings,
            node,
            failed,
            key,
            occurrences,
        } = parts;
        Self {
            view: replayed.view,
            bytes_since_snapshot: replayed.bytes_since_snapshot,
            last_snapshot: replayed.last_snapshot,
            snapshot_pending: false,
            settings,
            node,
            channel,
            shards: vec![None; topo.shards as usize],
            topo,
            own: HashSet::new(),
            appender: false,
            _down: failed.clone().drop_guard(),
            follow: Some(replayed.follow),
            _follow_channel: replayed.follow_channel,
            failed,
            key,
            occurrences,
            converting: Converting::default(),
            followed: None,
        }
    }

    /// Pools the registered jobs use (for heartbeats and `status`): the
    /// view counts them as jobs come and go, so a heartbeat walks no job.
    pub(crate) fn pools(&self) -> Vec<String> {
        self.view.pools().into_iter().map(str::to_string).collect()
    }

    /// Compaction rule (docs/semantics.md §5): snapshot when the log since
    /// the last snapshot exceeds the threshold, or when the last snapshot is
    /// older than a quarter of the stream's retention (so retention can
    /// never delete the only copy of a live definition).
    fn snapshot_due(&self, now: chrono::DateTime<Utc>) -> bool {
        if self.snapshot_pending {
            return false;
        }
        let quarter =
            chrono::Duration::from_std(self.settings.max_age / 4).unwrap_or(chrono::Duration::MAX);
        let stale = self
            .last_snapshot
            .map_or(self.bytes_since_snapshot > 0, |t| now - t > quarter);
        // Amortised: the log since the last snapshot must also exceed that
        // snapshot's size, so loading a million jobs writes O(jobs) snapshot
        // bytes, not a growing snapshot every few megabytes.
        let threshold = self
            .settings
            .snapshot_after_bytes
            .max(self.view.len() as u64 * SNAPSHOT_BYTES_PER_JOB);
        (self.appender && self.bytes_since_snapshot > threshold) || stale
    }

    fn maybe_snapshot(&mut self, ctx: &mut Context<Self>) {
        if self.snapshot_due(Utc::now()) {
            self.snapshot_pending = true;
            ctx.notify(WriteSnapshot);
        }
    }

    fn shard(&self, id: &str) -> Option<&Addr<ShardActor>> {
        let i = usize::try_from(self.topo.shard_of(id)).ok()?;
        self.shards.get(i)?.as_ref()
    }

    /// Records workflow occurrence `fire_id` of `job` cancelled (a
    /// `cancelled` record on the history stream, confirmed), if this node's
    /// advancer knows it open; the owner's advancer then skips its steps
    /// not started and asks the workers of the running ones to stop.
    fn cancel(
        &self,
        job: &sundial_core::registry::JobEntry,
        fire_id: String,
        reason: String,
        by: Option<String>,
        reply: Reply,
    ) -> impl std::future::Future<Output = Reply> {
        use crate::opening::Known;
        let refuse = |message: String| {
            Reply::error(
                Some("cancel"),
                ReplyError {
                    field: "fire_id".into(),
                    message,
                },
            )
        };
        let refused = match self.occurrences.get(&fire_id) {
            Known::Open => None,
            Known::Ended(e) => Some(refuse(format!(
                "{fire_id} has ended already ({})",
                match e {
                    sundial_core::workflow::Ending::Succeeded => "succeeded",
                    sundial_core::workflow::Ending::Failed => "failed",
                    sundial_core::workflow::Ending::Cancelled => "cancelled",
                }
            ))),
            Known::Unknown { caught_up: true } => Some(refuse(format!(
                "no running occurrence {fire_id}: it never opened, or opened before scheduler.workflow_horizon"
            ))),
            Known::Unknown { caught_up: false } => Some(refuse(format!(
                "{fire_id} is not known yet: this scheduler is still reading the history, try again"
            ))),
        };
        let record = sundial_core::protocol::run::RunEvent {
            by,
            ..sundial_core::protocol::run::RunEvent::new(
                sundial_core::protocol::run::RunKind::Cancelled,
                &fire_id,
                &job.spec.id,
                &job.spec.pool,
                &self.node,
                Utc::now(),
            )
            .because(reason)
        };
        let ch = self.channel.clone();
        let history = self.topo.history_exchange();
        let job_id = job.spec.id.clone();
        async move {
            if let Some(r) = refused {
                return r;
            }
            let stored = record_one(&ch, &history, record).await;
            match stored {
                Ok(()) => {
                    info!(job_id = %job_id, fire_id = %fire_id, "workflow occurrence cancel recorded");
                    reply
                }
                Err(e) => {
                    warn!(job_id = %job_id, fire_id = %fire_id, error = %e, "workflow occurrence cancel not recorded");
                    refuse(format!("not cancelled, try again: {e}"))
                }
            }
        }
    }

    /// Publishes a manual fire of `job` (its own fire id, epoch 0: no shard
    /// owner is involved), with the trigger's payload when it gave one, and
    /// records who asked and why (a `fired` record on the history stream);
    /// answers with `reply` plus the fire id once the broker confirmed both.
    fn trigger(
        &self,
        job: &sundial_core::registry::JobEntry,
        manual: sundial_core::control::Manual,
        reply: Reply,
    ) -> impl std::future::Future<Output = Reply> {
        let now = Utc::now();
        let shard = self.topo.shard_of(&job.spec.id);
        let spec = match &manual.payload {
            Some(p) => std::borrow::Cow::Owned(sundial_core::JobSpec {
                payload: p.clone(),
                ..job.spec.clone()
            }),
            None => std::borrow::Cow::Borrowed(&job.spec),
        };
        let asked = (manual != Default::default()).then_some(&manual);
        // A lone job's fire, or a workflow's opening record.
        let out = crate::opening::opening(
            &spec,
            sundial_core::protocol::fire::Origin::Manual { shard },
            now,
            self.key.as_deref(),
            &self.topo,
            &self.node,
            asked,
        );
        // Who asked, and why, as a `fired` record of the trigger's id.
        let asked = asked.map(|m| sundial_core::protocol::run::RunEvent {
            reason: m.reason.clone(),
            payload: m.payload.clone(),
            by: m.by.clone(),
            ..sundial_core::protocol::run::RunEvent::new(
                sundial_core::protocol::run::RunKind::Fired,
                "",
                &job.spec.id,
                &job.spec.pool,
                &self.node,
                now,
            )
        });
        let ch = self.channel.clone();
        let history = self.topo.history_exchange();
        let job_id = job.spec.id.clone();
        async move {
            let (sent, fire_id) = match out {
                Ok(o) => {
                    let fire = publish_confirmed(&ch, &o.exchange, &o.routing_key, &o.enc, || {})
                        .await
                        .map_err(|e| e.to_string());
                    let recorded = match (&fire, asked) {
                        (Ok(()), Some(mut record)) => {
                            record.fire_id.clone_from(&o.fire_id);
                            // A trigger's occurrence is its own instant.
                            record.scheduled_at = Some(now);
                            record_one(&ch, &history, record).await
                        }
                        _ => Ok(()),
                    };
                    (fire.map(|()| recorded.err()), o.fire_id)
                }
                Err(e) => (Err(e.to_string()), String::new()),
            };
            match sent {
                Ok(unrecorded) => {
                    info!(job_id = %job_id, fire_id = %fire_id, "manual trigger fired");
                    let mut reply = reply;
                    let mut result = serde_json::json!({"id": job_id, "fire_id": fire_id});
                    // Fired all the same: asking again would fire again.
                    if let Some(e) = unrecorded {
                        warn!(job_id = %job_id, fire_id = %fire_id, error = %e, "manual trigger fired, but who asked was not recorded");
                        result["warning"] = serde_json::json!(format!(
                            "fired, but who asked was not recorded: {e}"
                        ));
                    }
                    reply.result = Some(result);
                    reply
                }
                Err(e) => {
                    warn!(job_id = %job_id, error = %e, "manual trigger not fired");
                    Reply::error(
                        Some("trigger"),
                        ReplyError {
                            field: "id".into(),
                            message: format!("not fired, try again: {e}"),
                        },
                    )
                }
            }
        }
    }

    /// Publishes one manual fire per occurrence in `at` (ids
    /// `{job}@backfill:{occurrence}`, epoch 0), all confirmed before `reply`.
    fn backfill(
        &self,
        job: &sundial_core::registry::JobEntry,
        at: Vec<chrono::DateTime<Utc>>,
        reply: Reply,
    ) -> impl std::future::Future<Output = Reply> {
        let now = Utc::now();
        let shard = self.topo.shard_of(&job.spec.id);
        let outs: Result<Vec<_>, _> = at
            .iter()
            .map(|t| {
                crate::opening::opening(
                    &job.spec,
                    sundial_core::protocol::fire::Origin::Backfill {
                        scheduled: *t,
                        shard,
                    },
                    now,
                    self.key.as_deref(),
                    &self.topo,
                    &self.node,
                    None,
                )
            })
            .collect();
        let ch = self.channel.clone();
        let job_id = job.spec.id.clone();
        async move {
            let sent = match outs {
                Ok(outs) => publish_each_confirmed(&ch, &outs)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok(()) => {
                    info!(job_id = %job_id, fires = at.len(), "backfill fired");
                    reply
                }
                Err(e) => {
                    warn!(job_id = %job_id, error = %e, "backfill not (entirely) fired");
                    Reply::error(
                        Some("backfill"),
                        ReplyError {
                            field: "id".into(),
                            message: format!(
                                "not every fire was confirmed ({e}); backfilling again fires the same ids, which workers skip when they ran"
                            ),
                        },
                    )
                }
            }
        }
    }

    pub(super) fn entry(&self, id: &str) -> Option<Arc<sundial_core::registry::JobEntry>> {
        self.view.get(id)
    }

    fn apply(&mut self, record: RegistryRecord) {
        let change = match self.view.apply_owned(record) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "accepted record could not be applied");
                return;
            }
        };
        if change == Change::Reloaded {
            // A complete snapshot another node wrote: the log before it is
            // superseded (the view it describes is the one we hold).
            self.bytes_since_snapshot = 0;
            self.last_snapshot = Some(Utc::now());
        }
        if let Change::UpsertedMany(ids) = change {
            // Only a held shard's jobs are told (and they are full: no
            // compact job is decoded here).
            for id in ids {
                if let Some(shard) = self.shard(&id) {
                    if let Some(e) = self.view.fired(&id) {
                        shard.do_send(JobChange::Upserted(e));
                    }
                }
            }
            return;
        }
        let id = match &change {
            Change::Upserted(id)
            | Change::Deleted(id)
            | Change::Paused(id)
            | Change::Resumed(id) => id,
            Change::Reloaded | Change::None | Change::UpsertedMany(_) => return,
        };
        if self.shard(id).is_none() {
            return;
        }
        let (id, msg) = match change {
            Change::Upserted(id) => match self.view.fired(&id) {
                Some(e) => (id, JobChange::Upserted(e)),
                None => return,
            },
            Change::Deleted(id) => (id.clone(), JobChange::Deleted(id)),
            Change::Paused(id) => (id.clone(), JobChange::Paused(id)),
            Change::Resumed(id) => match self.view.fired(&id) {
                Some(e) => (id, JobChange::Resumed(e)),
                None => return,
            },
            Change::Reloaded | Change::None | Change::UpsertedMany(_) => return,
        };
        if let Some(shard) = self.shard(&id) {
            shard.do_send(msg);
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::gauge!(sundial_runtime::metrics::REGISTRY_JOBS).set(self.view.len() as f64);
        ctx.run_interval(SNAPSHOT_CHECK, |act, ctx| act.maybe_snapshot(ctx));
        if let Some(consumer) = self.follow.take() {
            ctx.add_stream(consumer);
        }
    }
}

/// Records from the stream after replay: other nodes' commands and
/// snapshots (this node's own were applied when confirmed).
impl StreamHandler<Result<Delivery, lapin::Error>> for Registry {
    fn handle(&mut self, item: Result<Delivery, lapin::Error>, ctx: &mut Context<Self>) {
        let delivery = match item {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "following the registry stream failed");
                self.failed.cancel();
                return;
            }
        };
        let acker = delivery.acker.clone();
        ctx.spawn(
            async move {
                let _ = acker.ack(BasicAckOptions::default()).await;
            }
            .into_actor(self),
        );
        let own = delivery
            .properties
            .message_id()
            .as_ref()
            .is_some_and(|id| self.own.remove(id.as_str()));
        if own {
            return;
        }
        if let Some(head) = SnapshotHead::of(&delivery.data) {
            self.followed_snapshot(head);
            return;
        }
        match decode::<RegistryRecord>(&meta_of(&delivery.properties), &delivery.data) {
            Ok(RegistryRecord::Sync { .. }) => {}
            Ok(record) => {
                self.bytes_since_snapshot += delivery.data.len() as u64;
                self.apply(record);
                metrics::gauge!(sundial_runtime::metrics::REGISTRY_JOBS)
                    .set(self.view.len() as f64);
                debug!(jobs = self.view.len(), "registry record followed");
            }
            Err(e) => warn!(error = %e, "undecodable registry record skipped"),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        debug!("registry stream consumer ended");
        self.failed.cancel();
    }
}

impl Registry {
    /// A part of a snapshot another node wrote, read for its place only:
    /// this node applied every record the snapshot sums up, so it neither
    /// decodes its definitions nor builds a second view of millions of jobs
    /// (a replay reads snapshots whole). Once the last part follows the
    /// others in order, the log before it is superseded.
    fn followed_snapshot(&mut self, head: SnapshotHead) {
        let (next, before) = match self.followed.take() {
            Some((id, next, before)) if id == head.snapshot_id => (next, before),
            _ => (0, self.bytes_since_snapshot),
        };
        if head.part != next {
            // A part out of order (a writer died mid-snapshot): not complete.
            return;
        }
        if head.part + 1 < head.parts {
            self.followed = Some((head.snapshot_id, head.part + 1, before));
            return;
        }
        // What was appended while it was written is after it.
        self.bytes_since_snapshot = self.bytes_since_snapshot.saturating_sub(before);
        self.last_snapshot = Some(Utc::now());
        self.view.prune();
        debug!(snapshot_id = %head.snapshot_id, parts = head.parts, "registry snapshot followed");
    }
}

/// This node now holds these shards: load their jobs into the new timers.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Attach {
    pub(crate) shards: Vec<(u32, Addr<ShardActor>)>,
    pub(crate) alive_since: chrono::DateTime<Utc>,
}

impl Handler<Attach> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        // Their jobs become full (parsed, shared with the timers), in steps
        // (a third of ten million jobs takes seconds; commands and reads
        // wait between steps): the timers load once the walk has visited every job
        // since this mark: one lap from here, also when a walk is under way.
        let numbers: Vec<u32> = msg.shards.iter().map(|(s, _)| *s).collect();
        self.view.mark(&numbers, true);
        let c = &mut self.converting;
        c.forget(&numbers);
        let now = std::time::Instant::now();
        for (s, addr) in msg.shards {
            c.wait(Some((s, addr, msg.alive_since, now)));
        }
        if !self.converting.walking {
            self.walk(ctx);
        }
    }
}

/// This node no longer holds `shard`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Detach(pub(crate) u32);

impl Handler<Detach> for Registry {
    type Result = ();

    fn handle(&mut self, Detach(shard): Detach, ctx: &mut Context<Self>) {
        if let Some(slot) = self.shards.get_mut(shard as usize) {
            *slot = None;
        }
        // Its jobs go back to the compact form, in steps.
        self.view.mark(&[shard], false);
        self.converting.forget(&[shard]);
        self.converting.wait(None);
        if !self.converting.walking {
            self.walk(ctx);
        }
    }
}

/// Jobs visited per chunk of a conversion walk's step (~20–60 ms when they
/// all change form, ~2 ms when none does).
const CONVERT_STEP: usize = 20_000;
/// A step goes on with another chunk until it has worked this long.
const STEP_TIME: std::time::Duration = std::time::Duration::from_millis(40);

/// A shard whose timer waits for a walk: its number, the timer, since when
/// this node holds it, and when it was marked.
type Load = (
    u32,
    Addr<ShardActor>,
    chrono::DateTime<Utc>,
    std::time::Instant,
);

/// A walk putting every job in the form its shard's mark says (ADR 0024),
/// lap after lap while someone waits for it (`walk.rs`).
#[derive(Default)]
pub(crate) struct Converting {
    walking: bool,
    cursor: Option<Box<str>>,
    /// This walk: when it began, its steps, the time they took, its laps.
    started: Option<std::time::Instant>,
    steps: u32,
    busy: std::time::Duration,
    laps: u32,
    /// Shards whose timers wait for their jobs (`Some`), and released
    /// shards whose jobs wait to be made compact (`None`).
    waiting: Vec<walk::Waiter<Option<Load>>>,
}

impl Converting {
    /// Drops the timers waiting for `shards` (released, or attached again
    /// with another timer).
    fn forget(&mut self, shards: &[u32]) {
        self.waiting
            .retain(|w| w.what.as_ref().is_none_or(|(s, ..)| !shards.contains(s)));
    }

    /// Waits for the walk (from where it is now).
    fn wait(&mut self, what: Option<Load>) {
        let at = if self.walking {
            self.cursor.as_deref()
        } else {
            None
        };
        self.waiting.push(walk::Waiter::new(what, at));
    }
}

impl Registry {
    /// Starts a conversion walk.
    fn walk(&mut self, ctx: &mut Context<Self>) {
        let c = &mut self.converting;
        c.walking = true;
        c.cursor = None;
        c.started = Some(std::time::Instant::now());
        c.steps = 0;
        c.busy = std::time::Duration::ZERO;
        c.laps = 0;
        self.walk_step(ctx);
    }

    fn walk_step(&mut self, ctx: &mut Context<Self>) {
        let step = std::time::Instant::now();
        // Chunks until the step has worked STEP_TIME or the lap ends: each
        // yield lets commands and reads queued meanwhile in, and waits for
        // whatever else the machine runs. The registry has its own thread
        // (the lease loop does not wait for a step: at 10M, with the two
        // sharing one, shards were owned again 6.7 s after a takeover
        // instead of 2.6 s).
        let mut cursor = self.converting.cursor.take();
        loop {
            cursor = self.view.convert_some(cursor.as_deref(), CONVERT_STEP);
            if cursor.is_none() || step.elapsed() >= STEP_TIME {
                break;
            }
        }
        let c = &mut self.converting;
        c.busy += step.elapsed();
        c.steps += 1;
        if cursor.is_none() {
            c.laps += 1;
        }
        let served = walk::served(&mut c.waiting, cursor.as_deref());
        c.cursor = cursor;
        let loads: Vec<Load> = served.into_iter().flatten().collect();
        if !loads.is_empty() {
            self.load_timers(loads);
        }
        // Every walk begins with a waiter, and every mark adds one: with
        // none left, every mark is served (mid-lap too: the rest of the
        // lap was walked since).
        let c = &mut self.converting;
        if c.waiting.is_empty() {
            c.walking = false;
            c.cursor = None;
            info!(
                steps = c.steps,
                laps = c.laps,
                busy_ms = c.busy.as_millis() as u64,
                elapsed_ms = c.started.map_or(0, |t| t.elapsed().as_millis() as u64),
                "registry conversion walk ended"
            );
            return;
        }
        // A timer, not a message: commands and reads queued meanwhile run
        // between steps. A lap that ended with someone
        // still waiting starts the next from the first job.
        ctx.run_later(std::time::Duration::from_millis(1), |act, ctx| {
            act.walk_step(ctx)
        });
    }

    /// The shards a walk served load their timers.
    fn load_timers(&mut self, loads: Vec<Load>) {
        let numbers: Vec<u32> = loads.iter().map(|(s, ..)| *s).collect();
        // Parsed already: this collects them (and parses what came in
        // compact meanwhile, none: the marks were set).
        let mut jobs = self.view.hold(&numbers);
        let waited = loads.iter().map(|(.., t)| t.elapsed()).max();
        info!(
            shards = numbers.len(),
            jobs = jobs.values().map(Vec::len).sum::<usize>(),
            waited_ms = waited.unwrap_or_default().as_millis() as u64,
            walk_steps = self.converting.steps,
            "shard jobs parsed for their timers"
        );
        for (shard, addr, alive_since, _) in loads {
            addr.do_send(super::shard::Load {
                jobs: jobs.remove(&shard).unwrap_or_default(),
                alive_since,
            });
            if let Some(slot) = self.shards.get_mut(shard as usize) {
                *slot = Some(addr);
            }
        }
    }
}

/// The pools the registered jobs use.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub(crate) struct Pools;

impl Handler<Pools> for Registry {
    type Result = Vec<String>;

    fn handle(&mut self, _: Pools, _ctx: &mut Context<Self>) -> Vec<String> {
        self.pools()
    }
}

impl Handler<crate::ingest::LabelsOf> for Registry {
    type Result = actix::MessageResult<crate::ingest::LabelsOf>;

    fn handle(&mut self, m: crate::ingest::LabelsOf, _ctx: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(
            m.0.into_iter()
                .filter_map(|id| {
                    let labels = self.view.labels_of(&id)?.clone();
                    (!labels.is_empty()).then_some((id, labels))
                })
                .collect(),
        )
    }
}

/// Publishes every message (each to its own exchange and routing key), then
/// awaits every confirm. Fails on the first message that was not confirmed.
async fn publish_each_confirmed(
    ch: &lapin::Channel,
    outs: &[crate::opening::Outbound],
) -> Result<(), sundial_amqp::publish::PublishError> {
    let sends = outs
        .iter()
        .map(|o| publish_confirmed(ch, &o.exchange, &o.routing_key, &o.enc, || {}));
    for r in futures_util::future::join_all(sends).await {
        r?;
    }
    Ok(())
}

/// Appends one run record to the history stream (`history`, the exchange),
/// confirmed: `Err` says why not.
async fn record_one(
    ch: &Channel,
    history: &str,
    record: sundial_core::protocol::run::RunEvent,
) -> Result<(), String> {
    let enc = encode(&sundial_core::protocol::run::RunBatch::of(vec![record]))
        .map_err(|e| e.to_string())?;
    publish_confirmed(ch, history, "", &enc, || {})
        .await
        .map_err(|e| e.to_string())
}
