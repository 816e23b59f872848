//! One delivery, one outcome: decode the fire, drop a duplicate, run the
//! executor under the job's timeout, then exactly one of ack (success),
//! republish to a retry tier and ack, or dead-letter and ack. The broker's
//! confirm of the retry or dead letter is awaited before the ack, so a
//! crash in between redelivers the fire instead of losing it.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use lapin::{
    message::Delivery,
    types::{AMQPValue, LongString, ShortString},
    BasicProperties, Channel,
};
use sundial_core::{
    attempt::{after_failure, AfterFailure, Failure, RecentFires},
    codec::{decode, encode},
    protocol::{
        fire::FireEvent,
        headers,
        run::{RunEvent, RunKind},
    },
    topology::{tier_name, Topology, RETRY_TIER_HEADER},
    HumanDuration,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::executor::Executors;
use sundial_amqp::{
    broker::{meta_of, properties},
    publish::{publish_event, publish_raw_confirmed, DeadReason, PublishError},
};
use sundial_runtime::metrics as m;

use crate::error::Error;

mod outcome;
pub(crate) use outcome::dead_letter_panicked;
use outcome::*;

/// What every attempt of one connection's life shares.
pub(crate) struct Shared {
    pub(crate) topo: Arc<Topology>,
    pub(crate) pool: String,
    pub(crate) worker: String,
    /// Confirming channel for run events, retries and dead letters.
    pub(crate) out: Channel,
    pub(crate) executors: Executors,
    /// Fire ids (with attempt) seen recently, for the whole process: kept
    /// across reconnects, so a redelivery after one is still a duplicate.
    pub(crate) recent: Arc<Mutex<RecentFires>>,
    /// Jobs already warned about (timeout longer than the broker's
    /// `consumer_timeout`): one warning per job and process.
    pub(crate) warned: Mutex<HashSet<String>>,
    pub(crate) consumer_timeout: Duration,
    /// Cancelled past the shutdown deadline or when the connection is lost:
    /// running attempts stop and are left unacked, so the broker redelivers.
    pub(crate) abandon: CancellationToken,
    /// Running attempts by fire id, for cancel requests (overlap `replace`,
    /// or anyone's `sundial.cancel` message).
    pub(crate) running: Mutex<HashMap<String, Replaceable>>,
    /// When set, every fire must be signed with it to run.
    pub(crate) hmac_key: Option<Arc<[u8]>>,
    /// Which run records are also published one by one on `sundial.events`.
    pub(crate) run_events: sundial_core::settings::RunEvents,
    /// Every run record goes to the history stream, in batches.
    pub(crate) recorder: crate::record::Recorder,
    /// The input channel's acks, gathered.
    pub(crate) acks: crate::acks::Acks,
    /// The series every run records.
    pub(crate) meters: Meters,
}

/// The series every run of this worker's pool records, registered once: a
/// `metrics` macro call builds its key (label vector, pool string) and
/// looks it up in the recorder each time, three times a run.
pub(crate) struct Meters {
    lateness: metrics::Histogram,
    duration: metrics::Histogram,
    succeeded: metrics::Counter,
}

impl Meters {
    /// Registered with the recorder installed now (the command installs it
    /// before it starts the worker).
    pub(crate) fn of(pool: &str) -> Self {
        Self {
            lateness: metrics::histogram!(m::RUN_START_LATENESS_SECONDS, "pool" => pool.to_string()),
            duration: metrics::histogram!(m::RUN_DURATION_SECONDS, "pool" => pool.to_string()),
            succeeded: metrics::counter!(m::RUNS_TOTAL, "pool" => pool.to_string(), "outcome" => "succeeded"),
        }
    }
}

/// A running attempt that a cancel request can stop.
pub(crate) struct Replaceable {
    token: CancellationToken,
    /// Set (once) with the reason when it is cancelled on request.
    reason: Arc<OnceLock<String>>,
}

impl Shared {
    /// Attempts whose executor is running now.
    pub(crate) fn running_count(&self) -> usize {
        self.running.lock().map_or(0, |r| r.len())
    }

    /// Cancels the attempt of `fire_id` running here, if any, with `reason`.
    pub(crate) fn cancel(&self, fire_id: &str, reason: &str) -> bool {
        let Ok(running) = self.running.lock() else {
            return false;
        };
        match running.get(fire_id) {
            Some(r) => {
                let _ = r.reason.set(reason.to_string());
                r.token.cancel();
                true
            }
            None => false,
        }
    }
}

/// Handles one delivery. An `Err` means the broker link failed (the
/// delivery stays unacked and will be redelivered).
///
/// `permit` is one of `worker.concurrency`: held while the executor runs,
/// given back before the outcome is settled.
pub(crate) async fn handle(
    shared: &Shared,
    d: &Delivery,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), Error> {
    let meta = meta_of(&d.properties);
    let checked = decode::<FireEvent>(&meta, &d.data)
        .map_err(|e| format!("undecodable fire event: {e}"))
        .and_then(|f| match f.check_names() {
            Ok(()) => Ok(f),
            Err(e) => Err(format!("invalid fire event: {e}")),
        });
    let fire = match checked {
        Ok(f) => f,
        Err(reason) => {
            warn!(pool = %shared.pool, %reason, "dead-lettering a message the worker cannot read");
            return set_aside(shared, d, &reason, "undecodable").await;
        }
    };
    let span = tracing::info_span!("attempt", job_id = %fire.job_id, fire_id = %fire.fire_id, shard = fire.shard, attempt = fire.attempt);
    run_fire(shared, d, fire, permit).instrument(span).await
}

async fn run_fire(
    shared: &Shared,
    d: &Delivery,
    fire: FireEvent,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), Error> {
    let replay = replay_marker(&d.properties);
    let key = RecentFires::key(&fire.fire_id, fire.attempt, replay.as_deref());
    let fresh = shared
        .recent
        .lock()
        .map(|mut r| r.insert(&key, Instant::now()))
        .unwrap_or(true);
    if !fresh {
        info!("duplicate fire dropped");
        metrics::counter!(m::DUPLICATE_FIRES_TOTAL, "pool" => shared.pool.clone()).increment(1);
        let ev = event(
            shared,
            d,
            &fire,
            RunKind::Skipped,
            Some(sundial_core::protocol::run::DUPLICATE.into()),
        );
        emit(shared, &fire, &ev).await?.await?;
        return ack(shared, d).await;
    }
    let result = attempt(shared, d, &fire, permit).await;
    if !matches!(result, Ok(true)) {
        // Abandoned or failed before its outcome: the broker will deliver it
        // again, and that delivery is not a duplicate.
        if let Ok(mut r) = shared.recent.lock() {
            r.forget(&key);
        }
    }
    result.map(|_| ())
}

/// Runs the attempt and settles it; `Ok(false)` when it was abandoned.
async fn attempt(
    shared: &Shared,
    d: &Delivery,
    fire: &FireEvent,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<bool, Error> {
    let started_at = Utc::now();
    let lateness = (started_at - fire.scheduled_at).num_milliseconds().max(0) as f64 / 1000.0;
    shared.meters.lateness.record(lateness);
    warn_long_timeout(shared, fire);
    let timeout = fire.timeout.get();
    // `started` carries the deadline the scheduler's overlap policies use.
    // Its confirm is awaited with the outcome's, before the ack.
    let started = {
        let mut started = event(shared, d, fire, RunKind::Started, None);
        started.deadline = chrono::Duration::from_std(timeout)
            .ok()
            .and_then(|t| started.at.checked_add_signed(t));
        emit(shared, fire, &started).await?
    };

    let cancel = shared.abandon.child_token();
    let replaced = Arc::new(OnceLock::new());
    // With a key set, every fire must be signed by a scheduler: an http or
    // publish job reaches other systems as surely as a shell job runs code.
    let refused = shared
        .hmac_key
        .as_ref()
        .and_then(|key| sundial_core::sign::verify_fire(key, fire).err());
    // Every attempt can be cancelled on request (docs/protocol.md §8): the
    // scheduler does it for `replace` jobs, anyone may for the others.
    if let Ok(mut running) = shared.running.lock() {
        running.insert(
            fire.fire_id.clone(),
            Replaceable {
                token: cancel.clone(),
                reason: replaced.clone(),
            },
        );
    }
    let clock = Instant::now();
    let exec = async {
        match &refused {
            // Not run: whoever published it does not hold the key.
            Some(e) => super::executor::Executed {
                result: Err(Failure::abort(format!("signature-invalid: {e}"))),
                output: None,
            },
            None => shared.executors.run(fire, &cancel).await,
        }
    };
    tokio::pin!(exec);
    let (mut executed, timed_out) = tokio::select! {
        r = &mut exec => (r, false),
        () = tokio::time::sleep(timeout) => {
            cancel.cancel();
            (exec.await, true)
        }
    };
    let took = clock.elapsed();
    drop(permit);
    if let Ok(mut running) = shared.running.lock() {
        running.remove(&fire.fire_id);
    }
    if let Some(reason) = replaced.get() {
        // Cancelled on request (overlap `replace`: the newer fire does the
        // work); this attempt ends here, reported, not retried.
        let mut ev = event(shared, d, fire, RunKind::Failed, Some(reason.clone()));
        ev.duration_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        ev.output = executed.output;
        let (a, b) = tokio::join!(started, emit(shared, fire, &ev).await?);
        a.and(b)?;
        let outcome = if fire.overlap == sundial_core::job::Overlap::Replace {
            "replaced"
        } else {
            "cancelled"
        };
        metrics::counter!(m::RUNS_TOTAL, "pool" => shared.pool.clone(), "outcome" => outcome)
            .increment(1);
        info!(%reason, "attempt cancelled on request");
        ack(shared, d).await?;
        return Ok(true);
    }
    if shared.abandon.is_cancelled() && !timed_out {
        info!("attempt abandoned (shutdown deadline or connection lost); the broker redelivers it");
        return Ok(false);
    }
    if timed_out {
        executed.result = Err(Failure::retry(format!(
            "timed out after {}",
            HumanDuration(timeout)
        )));
    }
    let duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    shared.meters.duration.record(took.as_secs_f64());

    let failure = match executed.result {
        Ok(()) => {
            let mut ev = event(shared, d, fire, RunKind::Succeeded, None);
            ev.duration_ms = Some(duration_ms);
            ev.output = executed.output;
            // Both records' confirms pipelined, awaited before the ack.
            let done = emit(shared, fire, &ev).await?;
            let (a, b) = tokio::join!(started, done);
            a.and(b)?;
            shared.meters.succeeded.increment(1);
            debug!(duration_ms, "attempt succeeded");
            ack(shared, d).await?;
            return Ok(true);
        }
        Err(f) => f,
    };

    // Boxed: the failure path's futures would otherwise size every task.
    Box::pin(settle_failure(
        shared,
        d,
        fire,
        failure,
        executed.output,
        duration_ms,
        started,
    ))
    .await
}
