//! How an attempt ends: a retry tier, a dead letter (or a delivery set
//! aside), its run records and events, the ack.

use super::*;

/// Reports a failed attempt, then retries or dead-letters it (confirmed),
/// then acks it.
pub(super) async fn settle_failure(
    shared: &Shared,
    d: &Delivery,
    fire: &FireEvent,
    failure: Failure,
    output: Option<String>,
    duration_ms: u64,
    started: impl std::future::Future<Output = Result<(), Error>>,
) -> Result<bool, Error> {
    let mut failed = event(
        shared,
        d,
        fire,
        RunKind::Failed,
        Some(failure.reason().into()),
    );
    failed.duration_ms = Some(duration_ms);
    failed.output = output;
    let failed_confirm = emit(shared, fire, &failed).await?;
    let now = Utc::now();
    let first_failure = fire.first_failure.unwrap_or(now);
    let tiers = &shared.topo.retry_tiers;
    let mut outcome = after_failure(fire, &failure, tiers);
    if let AfterFailure::Retry { tier, attempt } = outcome {
        match retry(shared, fire, &d.properties, tier, attempt, first_failure).await {
            Ok(()) => {
                warn!(reason = failure.reason(), tier = %tier, next_attempt = attempt, "attempt failed; retrying");
                let ev = event(
                    shared,
                    d,
                    fire,
                    RunKind::Retrying,
                    Some(failure.reason().into()),
                );
                emit(shared, fire, &ev).await?.await?;
                metrics::counter!(m::RUNS_TOTAL, "pool" => shared.pool.clone(), "outcome" => "retrying").increment(1);
            }
            Err(PublishError::Returned { .. }) => {
                warn!(tier = %tier, "retry tier queue missing; dead-lettering instead");
                outcome = AfterFailure::Dead;
            }
            Err(e) => return Err(publish_failed(e)),
        }
    }
    if outcome == AfterFailure::Dead {
        let reason = failure.reason().to_string();
        dead_letter(
            shared,
            &d.data,
            &d.properties,
            &reason,
            fire.attempt,
            first_failure,
            now,
        )
        .await?;
        warn!(%reason, "attempt failed; dead-lettered");
        let ev = event(shared, d, fire, RunKind::Dead, Some(reason));
        emit(shared, fire, &ev).await?.await?;
        metrics::counter!(m::RUNS_TOTAL, "pool" => shared.pool.clone(), "outcome" => "dead")
            .increment(1);
    }
    let (a, b) = tokio::join!(started, failed_confirm);
    a.and(b)?;
    ack(shared, d).await?;
    Ok(true)
}

/// Republishes the fire as attempt `attempt` to the tier's queue; when its
/// TTL expires the broker dead-letters it back to `sundial.fire` with its
/// routing key `{pool}.{shard}`.
pub(super) async fn retry(
    shared: &Shared,
    fire: &FireEvent,
    received: &BasicProperties,
    tier: HumanDuration,
    attempt: u32,
    first_failure: DateTime<Utc>,
) -> Result<(), PublishError> {
    let mut next = fire.clone();
    next.attempt = attempt;
    next.first_failure = Some(first_failure);
    let enc = encode(&next).map_err(|e| PublishError::Broker(e.into()))?;
    let mut props = properties(&enc.meta);
    let mut h = props.headers().clone().unwrap_or_default();
    h.insert(
        ShortString::from(RETRY_TIER_HEADER),
        AMQPValue::LongString(LongString::from(tier_name(tier).as_str())),
    );
    if let Some(r) = replay_marker(received) {
        h.insert(
            ShortString::from(headers::REPLAY),
            AMQPValue::LongString(LongString::from(r.as_str())),
        );
    }
    props = props.with_headers(h);
    publish_raw_confirmed(
        &shared.out,
        &shared.topo.retry_exchange(),
        &fire.routing_key(),
        &enc.body,
        props,
    )
    .await
}

/// Ends a delivery whose attempt panicked: dead-lettered with the panic's
/// message as its reason, then acked, so it neither holds a prefetch slot
/// for ever nor runs again (a panic is a bug that the same input repeats).
pub(crate) async fn dead_letter_panicked(
    shared: &Shared,
    d: &Delivery,
    panic: &str,
) -> Result<(), Error> {
    let reason = format!("worker panicked on this fire (a bug; please report it): {panic}");
    tracing::error!(pool = %shared.pool, %reason, "dead-lettering a fire whose attempt panicked");
    set_aside(shared, d, &reason, "panicked").await
}

/// Dead-letters a delivery that is not run (attempt 1, failed now) with
/// `reason`, counts it as `outcome`, and acks it.
pub(super) async fn set_aside(
    shared: &Shared,
    d: &Delivery,
    reason: &str,
    outcome: &'static str,
) -> Result<(), Error> {
    let now = Utc::now();
    dead_letter(shared, &d.data, &d.properties, reason, 1, now, now).await?;
    metrics::counter!(m::RUNS_TOTAL, "pool" => shared.pool.clone(), "outcome" => outcome)
        .increment(1);
    ack(shared, d).await
}

/// Publishes the delivery's body, with its properties plus the reason
/// headers, to `sundial.dead` → `sundial.dead.{pool}`, and awaits the confirm.
pub(super) async fn dead_letter(
    shared: &Shared,
    body: &[u8],
    props: &BasicProperties,
    reason: &str,
    attempts: u32,
    first_failure: DateTime<Utc>,
    last_failure: DateTime<Utc>,
) -> Result<(), Error> {
    let reason = DeadReason {
        error: reason,
        attempts,
        failures: Some((first_failure, last_failure)),
        by: Some(&shared.worker),
        pool: Some(&shared.pool),
    };
    sundial_amqp::publish::dead_letter(
        &shared.out,
        &shared.topo.dead_exchange(),
        &shared.pool,
        body,
        props,
        &reason,
    )
    .await
    .map_err(Error::from)
}

/// The `x-sundial-replay` header of a delivery, if it is a replay.
pub(super) fn replay_marker(props: &BasicProperties) -> Option<String> {
    // An instant (RFC 3339); anything longer is not ours and is not carried.
    sundial_amqp::broker::header_string(props, headers::REPLAY).filter(|r| r.len() <= 64)
}

pub(super) fn event(
    shared: &Shared,
    d: &Delivery,
    fire: &FireEvent,
    kind: RunKind,
    reason: Option<String>,
) -> RunEvent {
    RunEvent {
        attempt: fire.attempt,
        reason,
        scheduled_at: Some(fire.scheduled_at),
        replay: replay_marker(&d.properties)
            .and_then(|r| DateTime::parse_from_rfc3339(&r).ok())
            .map(|r| r.with_timezone(&Utc)),
        ..RunEvent::new(
            kind,
            &fire.fire_id,
            &fire.job_id,
            &fire.pool,
            &shared.worker,
            Utc::now(),
        )
    }
}

/// Records `ev` in history (batched) and, where `worker.run_events` says
/// so, publishes it on `sundial.events` too; returns one confirm for both,
/// to await before the ack.
pub(super) async fn emit(
    shared: &Shared,
    fire: &FireEvent,
    ev: &RunEvent,
) -> Result<impl std::future::Future<Output = Result<(), Error>> + use<>, Error> {
    let recorded = shared.recorder.record(ev.clone());
    let published = if shared.run_events.publishes(ev.kind, fire.manual) {
        let enc = encode(ev)?;
        let key = Topology::event_routing_key(&ev.pool, &ev.job_id, ev.kind.as_str());
        Some(
            publish_event(&shared.out, &shared.topo.events_exchange(), &key, &enc)
                .await
                .map_err(publish_failed)?,
        )
    } else {
        None
    };
    Ok(async move {
        let (a, b) = tokio::join!(recorded, async move {
            match published {
                Some(c) => c.await.map_err(publish_failed),
                None => Ok(()),
            }
        });
        a.and(b)
    })
}

pub(super) fn publish_failed(e: PublishError) -> Error {
    match e {
        PublishError::Broker(e) => e.into(),
        other => sundial_amqp::Error::not_stored("run event or retry")(other).into(),
    }
}

/// Acks `d` through the channel's ack gatherer (`crate::acks`): with
/// others asked for at the same time, in one `multiple` ack when it can.
pub(super) async fn ack(shared: &Shared, d: &Delivery) -> Result<(), Error> {
    shared.acks.ack(d.delivery_tag).await
}

pub(super) fn warn_long_timeout(shared: &Shared, fire: &FireEvent) {
    if fire.timeout.get() <= shared.consumer_timeout {
        return;
    }
    let first = shared
        .warned
        .lock()
        .map(|mut w| w.insert(fire.job_id.clone()))
        .unwrap_or(false);
    if first {
        warn!(
            timeout = %fire.timeout,
            consumer_timeout = %HumanDuration(shared.consumer_timeout),
            "job timeout exceeds the broker's consumer_timeout: RabbitMQ will close the channel and redeliver a run that lasts longer; raise consumer_timeout in rabbitmq.conf (deploy/rabbitmq/rabbitmq.conf)"
        );
    }
}
