//! Getting a fire to the broker: publishing it with a confirm, trying
//! again on a fresh channel after a nack, and setting aside a fire no
//! queue takes (dead-lettered with the reason, so the watermark moves on).

use super::*;

impl ShardActor {
    pub(super) fn send(&mut self, out: Arc<Outgoing>, retries: u32, ctx: &mut Context<Self>) {
        let ch = self.channel.clone();
        let exchange = out.exchange.clone();
        let msg = out.clone();
        let first = retries == 0;
        let fut = async move {
            let on_sent = || {
                if let (true, Some(due)) = (first, msg.due) {
                    let precision = (Utc::now() - due).to_std().unwrap_or_default();
                    metrics::histogram!(m::FIRE_PRECISION_SECONDS).record(precision.as_secs_f64());
                }
            };
            publish_confirmed(&ch, &exchange, &msg.routing_key, &msg.enc, on_sent).await
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(()) => {
                debug!(job_id = %out.job_id, shard = act.shard, fire_id = %out.fire_id, "fire confirmed");
                if !act.unroutable.is_empty() {
                    act.unroutable.remove(&out.routing_key);
                }
                act.timer.settled(out.key);
                act.finish_if_drained(ctx);
                metrics::counter!(m::FIRES_TOTAL, "pool" => out.pool.clone()).increment(1);
                metrics::gauge!(m::LAST_FIRE).set(Utc::now().timestamp_millis() as f64 / 1000.0);
                let lateness = (Utc::now() - out.key).to_std().unwrap_or_default();
                metrics::histogram!(m::FIRE_LATENESS_SECONDS).record(lateness.as_secs_f64());
            }
            Err(e) => {
                if matches!(e, PublishError::Returned { .. }) {
                    let known = act
                        .unroutable
                        .get(&out.routing_key)
                        .is_some_and(|t| t.elapsed() < UNROUTABLE_MEMORY);
                    let tries = if known { 1 } else { UNROUTABLE_TRIES };
                    if retries + 1 >= tries {
                        act.set_aside(out, format!("unroutable: {e} after {} tries", retries + 1), ctx);
                        return;
                    }
                }
                if matches!(e, PublishError::Nacked) {
                    act.renew_channel(ctx);
                }
                let delay = sundial_core::backoff::exponential(RETRY_MIN, RETRY_MAX, retries);
                metrics::counter!(m::FIRE_RETRIES_TOTAL).increment(1);
                if let Some(held_back) = act.retry_log.allow(std::time::Instant::now()) {
                    warn!(job_id = %out.job_id, shard = act.shard, fire_id = %out.fire_id, attempt = retries + 1, error = %e, retry_in_ms = delay.as_millis() as u64, held_back, "fire not confirmed; retrying");
                }
                ctx.run_later(delay, move |act, ctx| act.send(out, retries + 1, ctx));
            }
        }));
    }

    /// Replaces the shard's channel with a fresh one (once at a time). Fires
    /// in flight on the old channel fail with it and are sent again on the
    /// new one: the same bytes and fire id (workers drop the duplicate), and
    /// the watermark waits for them as before.
    pub(super) fn renew_channel(&mut self, ctx: &mut Context<Self>) {
        if self.renewing {
            return;
        }
        self.renewing = true;
        let opener = self.opener.clone();
        ctx.spawn(async move { opener.open().await }.into_actor(self).map(
            |res, act, ctx| {
                act.renewing = false;
                match res {
                    Ok(ch) => {
                        let old = std::mem::replace(&mut act.channel, ch);
                        metrics::counter!(m::FIRE_CHANNEL_RENEWALS_TOTAL).increment(1);
                        warn!(shard = act.shard, "a fire was nacked: publishing on a fresh channel");
                        ctx.spawn(
                            async move {
                                let _ = old.close(200, "replaced after a nack".into()).await;
                            }
                            .into_actor(act),
                        );
                    }
                    Err(e) => warn!(shard = act.shard, error = %e, "no fresh channel after a nack; retrying on the old one"),
                }
            },
        ));
    }

    /// Takes a fire that stays unroutable out of the shard's way: it is
    /// dead-lettered with `why` (to its pool's dead-letter queue, or to
    /// `sundial.dead.control` when the pool has none either), counted and
    /// reported, and no longer holds the watermark back. Only if the dead
    /// letter cannot be stored either does it stay in flight, tried again.
    pub(super) fn set_aside(&mut self, out: Arc<Outgoing>, why: String, ctx: &mut Context<Self>) {
        let ch = self.channel.clone();
        let exchange = self.topo.dead_exchange();
        let topo = self.topo.clone();
        let (node, msg, reason) = (self.node.clone(), out.clone(), why.clone());
        let fut = async move {
            let why = DeadReason {
                error: &reason,
                attempts: 0,
                failures: None,
                by: Some(&node),
                pool: Some(&msg.pool),
            };
            let props = sundial_amqp::broker::properties(&msg.enc.meta);
            let mut last = None;
            for key in [msg.pool.as_str(), CONTROL_DEAD_KEY] {
                match dead_letter(&ch, &exchange, key, &msg.enc.body, &props, &why).await {
                    Ok(()) => return Ok(topo.dead_queue(key)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.map_or_else(|| "no dead-letter queue".to_string(), |e| e.to_string()))
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(queue) => {
                act.timer.settled(out.key);
                metrics::counter!(m::UNROUTABLE_FIRES_TOTAL, "pool" => out.pool.clone()).increment(1);
                act.set_aside.record(format!("{} (pool {}): {why}", out.fire_id, out.pool));
                act.unroutable.insert(out.routing_key.clone(), std::time::Instant::now());
                if let Some(held_back) = act.set_aside_log.allow(std::time::Instant::now()) {
                    warn!(job_id = %out.job_id, shard = act.shard, fire_id = %out.fire_id, pool = %out.pool, %queue, reason = %why, held_back, "fire set aside: dead-lettered so the shard's watermark can move on");
                }
                act.finish_if_drained(ctx);
            }
            Err(e) => {
                if let Some(held_back) = act.retry_log.allow(std::time::Instant::now()) {
                    warn!(job_id = %out.job_id, shard = act.shard, fire_id = %out.fire_id, error = %e, held_back, "unroutable fire could not be dead-lettered either; trying again");
                }
                ctx.run_later(RETRY_MAX, move |act, ctx| act.set_aside(out, why, ctx));
            }
        }));
    }
}
