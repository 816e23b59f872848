//! `ShardActor`: one actor per owned timer shard, a thin shell over
//! [`ShardTimer`] (the deadlines, the in-flight fires and the watermark,
//! clock injected). The actor reads the clock, sleeps until the next
//! deadline, applies the overlap decision ([`overlap::decide`]), publishes
//! each fire with `mandatory` and an awaited confirm, tells the timer what
//! the broker answered, and writes the watermark the timer computes.

use std::{collections::HashMap, sync::Arc, time::Duration};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use lapin::Channel;
use sundial_core::{
    codec::encode,
    overlap,
    protocol::{
        fire::{Origin, Watermark},
        run::{RunBatch, RunEvent, RunKind},
    },
    registry::Fired,
    timer::{Actions, DueFire, ShardTimer},
    topology::{Topology, CONTROL_DEAD_KEY},
    FireId,
};
use tracing::{debug, info, warn};

use super::runs::{self, RunningJobs};
use sundial_amqp::{
    publish::{dead_letter, publish_confirmed, publish_event, DeadReason, PublishError},
    watermark,
};
use sundial_runtime::metrics as m;

mod handlers;
mod send;

pub(crate) use handlers::{Flush, JobChange, Load};

/// Missed occurrences of one change logged one line each (the rest: one line).
const LOGGED_PER_CHANGE: usize = 20;
/// How often the watermark is written while it moves (docs/protocol.md §7).
const WATERMARK_INTERVAL: Duration = Duration::from_millis(250);
/// First retry delay of a nacked or returned fire; doubles up to the max.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Tries of a fire that keeps coming back unroutable before it is set aside
/// (dead-lettered with the reason): ~11 s of backoff, long enough to ride
/// out a queue being re-declared, short enough that the shard's watermark
/// (and so every other job of the shard on a takeover) is not held back.
const UNROUTABLE_TRIES: u32 = 8;
/// A route (`{pool}.{shard}`) that had a fire set aside is known unroutable
/// for this long: its next fires are set aside after one try, so a job
/// firing every second does not keep the watermark ~11 s behind.
const UNROUTABLE_MEMORY: Duration = Duration::from_secs(60);
/// At most one log line per shard per this long for fires being retried.
const RETRY_LOG_EVERY: Duration = Duration::from_secs(10);

/// Most occurrences of one job recorded as missed after one outage (the
/// newest; older ones are counted in `sundial_misfires_total` and logged).
const MISSED_RECORDS: usize = 1_000;
/// Records per history message when recording missed occurrences.
const MISSED_BATCH: usize = 2_000;

pub(crate) struct ShardActor {
    shard: u32,
    node: String,
    /// Owner epoch, carried by every fire and watermark.
    epoch: u64,
    topo: Arc<Topology>,
    /// A channel in confirm mode, used only by this shard.
    channel: Channel,
    /// Deadlines, in-flight fires, watermark: the shard's state.
    timer: ShardTimer,
    /// The pending wake-up at the timer's next deadline.
    wake: Option<SpawnHandle>,
    /// Set by [`Flush`]: signalled when the final watermark is written.
    flushing: Option<tokio::sync::oneshot::Sender<()>>,
    /// Tells the lease task's one-for-one supervisor when this actor ends
    /// (however it ends: a panic in a handler included).
    _obituary: sundial_runtime::supervise::Obituary,
    /// Runs in progress (from `runs::track`), for overlap policies.
    runs: Arc<RunningJobs>,
    /// Signs every fire event when set (`control.hmac_key`).
    key: Option<Arc<[u8]>>,
    /// Fires set aside as unroutable, shared with the heartbeat.
    set_aside: Arc<SetAside>,
    /// Rate limit of "fire not confirmed; retrying" lines.
    retry_log: sundial_runtime::ratelimit::Every,
    /// Routing keys whose last fire was set aside as unroutable, and when.
    unroutable: HashMap<String, std::time::Instant>,
    /// Rate limit of "fire set aside" lines.
    set_aside_log: sundial_runtime::ratelimit::Every,
    /// Opens fresh channels on the node's connection.
    opener: ChannelOpener,
    /// Set while a fresh channel is being opened (after a nack).
    renewing: bool,
    /// Where this shard says it is held (while this actor lives).
    owned: Arc<crate::opening::Owned>,
}

/// Asks the scheduler's connection for a fresh confirm-mode channel: a
/// timer shard replaces its channel after a nack. (RabbitMQ 3.10 can hand a
/// publisher that reconnects during a quorum election a channel on which
/// every publish is nacked for as long as it lives; a new channel recovers
/// at once.)
/// A request for a fresh channel: where to send it.
pub(crate) type ChannelRequest = tokio::sync::oneshot::Sender<Result<Channel, crate::Error>>;

#[derive(Clone)]
pub(crate) struct ChannelOpener(pub(crate) tokio::sync::mpsc::Sender<ChannelRequest>);

impl ChannelOpener {
    async fn open(&self) -> Result<Channel, crate::Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0
            .send(tx)
            .await
            .map_err(|_| crate::Error::TaskStopped("channel opener"))?;
        rx.await
            .map_err(|_| crate::Error::TaskStopped("channel opener"))?
    }
}

/// Serves [`ChannelOpener`] requests on `conn` until `stop`.
pub(crate) async fn serve_channels(
    conn: &lapin::Connection,
    mut requests: tokio::sync::mpsc::Receiver<ChannelRequest>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let reply = tokio::select! {
            () = stop.cancelled() => return,
            r = requests.recv() => match r {
                Some(r) => r,
                None => return,
            },
        };
        let _ = reply.send(
            sundial_amqp::broker::confirming_channel(conn)
                .await
                .map_err(crate::Error::from),
        );
    }
}

/// Fires this node set aside as unroutable: how many, and the last reason
/// (shown by `sundial status` through the heartbeat).
#[derive(Debug, Default)]
pub(crate) struct SetAside {
    count: std::sync::atomic::AtomicU64,
    last: std::sync::Mutex<Option<String>>,
}

impl SetAside {
    fn record(&self, what: String) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(what);
        }
    }

    /// (count, last reason).
    pub(crate) fn read(&self) -> (u64, Option<String>) {
        let last = self.last.lock().ok().and_then(|l| l.clone());
        (self.count.load(std::sync::atomic::Ordering::Relaxed), last)
    }
}

/// What every timer shard of a node shares.
#[derive(Clone)]
pub(crate) struct ShardCommon {
    pub(crate) node: String,
    pub(crate) topo: Arc<Topology>,
    pub(crate) runs: Arc<RunningJobs>,
    pub(crate) key: Option<Arc<[u8]>>,
    pub(crate) set_aside: Arc<SetAside>,
    pub(crate) opener: ChannelOpener,
    /// The shards held, for the workflow advancer.
    pub(crate) owned: Arc<crate::opening::Owned>,
    /// How alert routes' deliveries went here (for the heartbeat).
    pub(crate) alert_health: Arc<crate::alerts::Health>,
}

impl ShardActor {
    pub(crate) fn new(
        shard: u32,
        epoch: u64,
        channel: Channel,
        floor: DateTime<Utc>,
        common: &ShardCommon,
        obituary: sundial_runtime::supervise::Obituary,
    ) -> Self {
        let ShardCommon {
            node,
            topo,
            runs,
            key,
            set_aside,
            opener,
            owned,
            alert_health: _,
        } = common.clone();
        Self {
            shard,
            node,
            epoch,
            topo,
            channel,
            timer: ShardTimer::new(floor),
            wake: None,
            flushing: None,
            _obituary: obituary,
            runs,
            key,
            set_aside,
            retry_log: sundial_runtime::ratelimit::Every::new(RETRY_LOG_EVERY),
            unroutable: HashMap::new(),
            set_aside_log: sundial_runtime::ratelimit::Every::new(RETRY_LOG_EVERY),
            opener,
            renewing: false,
            owned,
        }
    }

    /// Sleeps until the timer's next deadline (re-armed on every change;
    /// cheap).
    fn rearm_wake(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.wake.take() {
            ctx.cancel_future(h);
        }
        if let Some(at) = self.timer.next_wake() {
            let delay = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            self.wake = Some(ctx.run_later(delay, |act, ctx| {
                act.wake = None;
                let due = act.timer.due(Utc::now());
                act.publish_all(due, ctx);
                act.rearm_wake(ctx);
            }));
        }
    }

    /// Does what the timer asked: reports skipped occurrences, publishes
    /// the fires.
    fn act(&mut self, actions: Actions, ctx: &mut Context<Self>) {
        self.record_missed(&actions.skipped, ctx);
        for s in &actions.skipped {
            metrics::counter!(m::MISFIRES_TOTAL, "policy" => s.policy)
                .increment(s.at.len() as u64 + s.unlisted);
            if s.unlisted > 0 {
                info!(job_id = %s.job_id, shard = self.shard, count = s.unlisted, policy = s.policy, "older missed occurrences skipped");
            }
        }
        // One line per occurrence for the first few of a change, then one
        // line for the rest (a takeover at millions of jobs fires tens of
        // thousands: the history and the metric have each of them).
        let listed = actions
            .skipped
            .iter()
            .flat_map(|s| s.at.iter().map(move |at| (s, at)));
        for (s, at) in listed.take(LOGGED_PER_CHANGE) {
            info!(job_id = %s.job_id, shard = self.shard, fire_id = %FireId::new(&s.job_id, *at), policy = s.policy, "missed occurrence skipped");
        }
        let listed: usize = actions.skipped.iter().map(|s| s.at.len()).sum();
        if listed > LOGGED_PER_CHANGE {
            info!(
                shard = self.shard,
                count = listed - LOGGED_PER_CHANGE,
                "more missed occurrences skipped"
            );
        }
        for f in actions.fire.iter().take(LOGGED_PER_CHANGE) {
            info!(job_id = %f.job.id(), shard = self.shard, fire_id = %FireId::new(f.job.id(), f.scheduled), "firing missed occurrence");
        }
        if actions.fire.len() > LOGGED_PER_CHANGE {
            info!(
                shard = self.shard,
                count = actions.fire.len() - LOGGED_PER_CHANGE,
                "firing more missed occurrences"
            );
        }
        self.publish_all(actions.fire, ctx);
    }

    fn publish_all(&mut self, fires: Vec<DueFire>, ctx: &mut Context<Self>) {
        for f in fires {
            self.publish(&f.job, f.scheduled, f.due, ctx);
        }
    }

    /// Publishes one occurrence, after the job's overlap policy. `due` is
    /// its planned send time when it came off the deadline queue (precision
    /// is measured against it). (Manual triggers are published by the
    /// registry: they need no timer state and the job's shard may be owned
    /// by another node.)
    fn publish(
        &mut self,
        job: &Fired,
        scheduled: DateTime<Utc>,
        due: Option<DateTime<Utc>>,
        ctx: &mut Context<Self>,
    ) {
        let now = Utc::now();
        let fire_id = FireId::new(job.id(), scheduled);
        let run = match job.overlap() {
            sundial_core::job::Overlap::Allow => None,
            _ => self.runs.running(job.id(), now),
        };
        match overlap::decide(job.overlap(), run.as_ref().map(|r| r.fire_id.as_str())) {
            overlap::Decision::Fire => {}
            overlap::Decision::Skip { running } => {
                self.skip_overlapping(job, fire_id.as_str(), &running, ctx);
                return;
            }
            overlap::Decision::CancelThenFire { .. } => {
                if let Some(run) = run {
                    let (ch, topo, id, by) = (
                        self.channel.clone(),
                        self.topo.clone(),
                        job.id().to_string(),
                        fire_id.to_string(),
                    );
                    actix::spawn(async move {
                        if let Err(e) = runs::cancel(&ch, &topo, &id, &run, &by).await {
                            warn!(job_id = %id, fire_id = %run.fire_id, error = %e, "cancel request not sent; both runs go on");
                        }
                    });
                }
            }
        }
        let origin = Origin::Scheduled {
            scheduled,
            shard: self.shard,
            epoch: self.epoch,
        };
        // The definition, decoded for the fire it carries (never fails on
        // bytes this process encoded: a failure is a bug, logged, not fired).
        let spec = match job.spec() {
            Ok(s) => s,
            Err(e) => {
                warn!(job_id = %job.id(), shard = self.shard, fire_id = %fire_id, error = %e, "job definition does not decode; not fired");
                return;
            }
        };
        // A lone job's fire, or a workflow's opening record.
        match crate::opening::opening(
            &spec,
            origin,
            now,
            self.key.as_deref(),
            &self.topo,
            &self.node,
            None,
        ) {
            Ok(o) => {
                self.timer.sent(scheduled);
                let out = Outgoing {
                    exchange: o.exchange,
                    routing_key: o.routing_key,
                    pool: o.pool,
                    enc: o.enc,
                    fire_id: o.fire_id,
                    job_id: job.id().to_string(),
                    key: scheduled,
                    due,
                };
                self.send(Arc::new(out), 0, ctx);
            }
            Err(e) => {
                // Our own event always encodes unless the payload exceeds the
                // limit, which validation prevents; never drop silently.
                warn!(job_id = %job.id(), shard = self.shard, fire_id = %fire_id, error = %e, "fire event cannot be encoded; not fired");
            }
        }
    }

    /// Records in the history the occurrences a misfire policy did not fire
    /// after an outage (not those of a pause: they were not expected), as
    /// `skipped` with reason `misfire {policy}` (the alerts' `missed`),
    /// the newest [`MISSED_RECORDS`] per job.
    fn record_missed(&mut self, skipped: &[sundial_core::timer::Skipped], ctx: &mut Context<Self>) {
        let now = Utc::now();
        let records: Vec<RunEvent> = skipped
            .iter()
            .filter(|s| !s.paused)
            .flat_map(|s| {
                let why = format!("misfire {}: not fired after an outage", s.policy);
                let newest = s.at.len().saturating_sub(MISSED_RECORDS);
                s.at[newest..]
                    .iter()
                    .map(|at| {
                        RunEvent::new(
                            RunKind::Skipped,
                            FireId::new(&s.job_id, *at).as_str(),
                            &s.job_id,
                            &s.pool,
                            &self.node,
                            now,
                        )
                        .because(why.as_str())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if records.is_empty() {
            return;
        }
        let batches: Vec<_> = records
            .chunks(MISSED_BATCH)
            .filter_map(|c| encode(&RunBatch::of(c.to_vec())).ok())
            .collect();
        let ch = self.channel.clone();
        let history = self.topo.history_exchange();
        let n = records.len();
        let fut = async move {
            for enc in &batches {
                publish_event(&ch, &history, "", enc).await?.await?;
            }
            Ok::<_, sundial_amqp::publish::PublishError>(())
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| match res {
            Ok(()) => debug!(shard = act.shard, records = n, "missed occurrences recorded"),
            Err(e) => warn!(shard = act.shard, records = n, error = %e, "missed occurrences not recorded in the history"),
        }));
    }

    /// `overlap = "forbid"`: this fire is skipped because `running` runs;
    /// counted, logged, and reported as a `skipped` run event.
    fn skip_overlapping(
        &mut self,
        job: &Fired,
        fire_id: &str,
        running: &str,
        ctx: &mut Context<Self>,
    ) {
        metrics::counter!(m::OVERLAP_SKIPS_TOTAL, "pool" => job.pool().to_string()).increment(1);
        info!(job_id = %job.id(), shard = self.shard, fire_id, running, "fire skipped: the previous run is still running (overlap forbid)");
        let ev = RunEvent::new(
            RunKind::Skipped,
            fire_id,
            job.id(),
            job.pool(),
            &self.node,
            Utc::now(),
        )
        .because("overlap-forbid");
        let Ok(enc) = encode(&ev) else { return };
        let Ok(record) = encode(&RunBatch::of(vec![ev.clone()])) else {
            return;
        };
        let ch = self.channel.clone();
        let exchange = self.topo.events_exchange();
        let history = self.topo.history_exchange();
        let key = Topology::event_routing_key(&ev.pool, &ev.job_id, ev.kind.as_str());
        // On sundial.events (always published, as failures are) and in the
        // history stream.
        let fut = async move {
            let event = publish_event(&ch, &exchange, &key, &enc).await?;
            let recorded = publish_event(&ch, &history, "", &record).await?;
            let (a, b) = futures_util::join!(event, recorded);
            a.and(b)
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            if let Err(e) = res {
                warn!(shard = act.shard, error = %e, "skipped-run event not published");
            }
        }));
    }

    fn write_watermark(&mut self, ctx: &mut Context<Self>) {
        let Some(up_to) = self.timer.tick(Utc::now()) else {
            return;
        };
        let wm = Watermark {
            shard: self.shard,
            epoch: self.epoch,
            up_to,
            owner: self.node.clone(),
        };
        let ch = self.channel.clone();
        let topo = self.topo.clone();
        let fut = async move { watermark::write(&ch, &topo, &wm).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| match res {
            Ok(()) => act.timer.written(up_to),
            Err(e) => warn!(shard = act.shard, error = %e, "watermark not written; will retry"),
        }));
    }
}

/// A fire on its way to the broker, kept until confirmed (retries resend
/// the same bytes, so a re-fire is identical).
struct Outgoing {
    enc: sundial_core::codec::Encoded,
    /// The fire exchange, or the history stream's for a workflow's opening.
    exchange: String,
    routing_key: String,
    pool: String,
    fire_id: String,
    job_id: String,
    /// Its occurrence: what it holds back in the timer until settled.
    key: DateTime<Utc>,
    /// Planned send time, for the precision metric (scheduled fires only).
    due: Option<DateTime<Utc>>,
}

impl Actor for ShardActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.owned.hold(self.shard, self.epoch);
        ctx.run_interval(WATERMARK_INTERVAL, |act, ctx| act.write_watermark(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.owned.release(self.shard, self.epoch);
        // Its channel goes with it: a dropped lapin channel stays open, and
        // a node whose shards moved often ran out of channel ids (seen at
        // 10M jobs, after hundreds of takeovers: "the maximum number of
        // channels for this connection has been reached").
        let ch = self.channel.clone();
        actix::spawn(async move {
            let _ = ch.close(200, "shard timer stopped".into()).await;
        });
    }
}
