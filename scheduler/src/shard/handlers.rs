//! The messages a shard actor answers: its jobs at start (`Load`), a job
//! changed (`JobChange`), hand the shard over (`Flush`, then the final
//! watermark).

use super::*;

/// Load the shard's jobs at start, applying misfire policies to
/// `(floor, now]` (`floor` = the shard's watermark).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Load {
    pub(crate) jobs: Vec<Arc<Fired>>,
    /// When this scheduler process started: occurrences due after it were
    /// missed only because the broker was away, and are all fired.
    pub(crate) alive_since: DateTime<Utc>,
}

impl Handler<Load> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: Load, ctx: &mut Context<Self>) {
        let actions = self.timer.load(msg.jobs, msg.alive_since, Utc::now());
        self.act(actions, ctx);
        self.rearm_wake(ctx);
    }
}

/// A registry change for a job of this shard.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum JobChange {
    Upserted(Arc<Fired>),
    Deleted(String),
    Paused(String),
    Resumed(Arc<Fired>),
}

impl Handler<JobChange> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: JobChange, ctx: &mut Context<Self>) {
        let now = Utc::now();
        match msg {
            JobChange::Upserted(job) => self.timer.upsert(job, now),
            JobChange::Deleted(id) => self.timer.delete(&id),
            JobChange::Paused(id) => self.timer.pause(&id, now),
            JobChange::Resumed(job) => {
                let actions = self.timer.resume(job, now);
                self.act(actions, ctx);
            }
        }
        // An upsert may have armed an occurrence that is already due.
        let due = self.timer.due(now);
        self.publish_all(due, ctx);
        self.rearm_wake(ctx);
    }
}

/// Stop firing, wait (at most [`FLUSH_DRAIN`]) until every published fire
/// is confirmed, write the final watermark, stop. For a shard handed over
/// or a graceful shutdown: the next owner starts exactly where this one
/// stopped, so nothing fires twice and nothing is skipped.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Flush;

/// Longest wait for in-flight confirms before the final watermark is
/// written anyway (held back below the unconfirmed fires).
const FLUSH_DRAIN: Duration = Duration::from_secs(5);

impl Handler<Flush> for ShardActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(h) = self.wake.take() {
            ctx.cancel_future(h);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.flushing.is_none() {
            self.timer.flush();
            self.flushing = Some(tx);
            ctx.run_later(FLUSH_DRAIN, |act, ctx| act.finish(ctx));
            self.finish_if_drained(ctx);
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl ShardActor {
    pub(super) fn finish_if_drained(&mut self, ctx: &mut Context<Self>) {
        if self.flushing.is_some() && self.timer.drained() {
            self.finish(ctx);
        }
    }

    pub(super) fn finish(&mut self, ctx: &mut Context<Self>) {
        let Some(done) = self.flushing.take() else {
            return;
        };
        let wm = Watermark {
            shard: self.shard,
            epoch: self.epoch,
            up_to: self.timer.watermark(),
            owner: self.node.clone(),
        };
        let ch = self.channel.clone();
        let topo = self.topo.clone();
        let shard = self.shard;
        let unconfirmed = self.timer.unconfirmed();
        let fut = async move {
            match watermark::write(&ch, &topo, &wm).await {
                Ok(()) => {
                    info!(shard, epoch = wm.epoch, up_to = %wm.up_to, unconfirmed, "final watermark written")
                }
                Err(e) => warn!(shard, error = %e, "final watermark not written"),
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |(), _, ctx| {
            let _ = done.send(());
            ctx.stop();
        }));
    }
}
