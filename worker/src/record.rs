//! `Recorder`: a worker's run records, published to the history stream in
//! batches by group commit. Each record's confirm is awaited by its attempt
//! before the ack (nothing is acked that history does not hold); while one
//! batch waits for its confirm the next fills, so a busy worker sends one
//! message per many runs and an idle one sends each record at once. A
//! `started` record whose attempt ended within the same batch is left out.

use std::future::Future;

use lapin::Channel;
use sundial_core::{
    codec::encode,
    protocol::run::{RunBatch, RunEvent},
};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use std::sync::Arc;

use sundial_amqp::publish::{publish_event, PublishError};
use sundial_runtime::metrics as m;

use crate::error::Error;

/// How many batches may wait for their confirm at once: one more fills
/// meanwhile.
const IN_FLIGHT: usize = 4;
/// Under load (a batch already awaits its confirm), how long a new batch
/// may wait to fill before it is sent: fewer, larger messages are what
/// the broker is limited by.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

type Waiter = oneshot::Sender<Result<(), Arc<PublishError>>>;

/// Hands run records to the batching task.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<(RunEvent, Waiter)>,
}

impl Recorder {
    /// Starts the batching task publishing on `ch` (confirm mode) to
    /// `exchange` (the history exchange, bound to the stream), at most
    /// `batch_max` records per message. The task ends when every
    /// `Recorder` clone is dropped; a batch that is nacked or cannot be sent
    /// fails its own records only (their attempts are requeued).
    pub fn start(ch: Channel, exchange: String, batch_max: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(ch, exchange, batch_max.max(1), rx));
        Self { tx }
    }

    /// Queues `ev`; the returned future resolves once the broker holds it.
    pub fn record(&self, ev: RunEvent) -> impl Future<Output = Result<(), Error>> + use<> {
        let (done, wait) = oneshot::channel();
        let queued = self.tx.send((ev, done)).is_ok();
        async move {
            if !queued {
                return Err(stopped());
            }
            match wait.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(why)) => Err(Error::RecordNotStored(why)),
                Err(_) => Err(stopped()),
            }
        }
    }
}

fn stopped() -> Error {
    Error::TaskStopped("run recorder")
}

async fn run(
    ch: Channel,
    exchange: String,
    batch_max: usize,
    mut rx: mpsc::UnboundedReceiver<(RunEvent, Waiter)>,
) {
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    loop {
        // Take what is queued (up to a batch) once a confirm slot is free;
        // wait for a confirm when all are taken or nothing is queued.
        let room = in_flight.len() < IN_FLIGHT;
        let first = tokio::select! {
            biased;
            Some(r) = futures_util::StreamExt::next(&mut in_flight), if !in_flight.is_empty() && (!room || rx.is_empty()) => {
                // A nacked batch fails its own attempts only (they are
                // requeued and run again); the next batches go on.
                let (res, waiters): (Result<(), Arc<PublishError>>, Vec<Waiter>) = r;
                for w in waiters {
                    let _ = w.send(res.clone());
                }
                continue;
            }
            r = rx.recv(), if room => match r {
                Some(r) => r,
                None => break,
            },
        };
        let mut records = vec![first.0];
        let mut waiters = vec![first.1];
        // Idle: send at once. Busy: fill for up to LINGER.
        let until = (!in_flight.is_empty()).then(|| tokio::time::Instant::now() + LINGER);
        while records.len() < batch_max {
            let next = match rx.try_recv() {
                Ok(r) => Some(r),
                Err(_) => match until {
                    Some(t) => tokio::time::timeout_at(t, rx.recv()).await.ok().flatten(),
                    None => None,
                },
            };
            match next {
                Some((ev, w)) => {
                    records.push(ev);
                    waiters.push(w);
                }
                None => break,
            }
        }
        let records = without_settled_starts(records);
        let n = records.len();
        let published = publish(&ch, &exchange, RunBatch::of(records)).await;
        match published {
            Ok(confirm) => {
                metrics::counter!(m::HISTORY_BATCHES_TOTAL).increment(1);
                metrics::counter!(m::HISTORY_RECORDS_TOTAL).increment(n as u64);
                in_flight.push_back(async move { (confirm.await.map_err(Arc::new), waiters) });
            }
            Err(e) => {
                // The channel failed: these attempts fail, and so will the
                // next ones until the worker reconnects with a new recorder.
                debug!(error = %e, "history batch not published");
                let why = Arc::new(e);
                for w in waiters {
                    let _ = w.send(Err(why.clone()));
                }
            }
        }
    }
    // Every recorder is gone: settle what is still waiting.
    while let Some((res, waiters)) = futures_util::StreamExt::next(&mut in_flight).await {
        for w in waiters {
            let _ = w.send(res.clone());
        }
    }
}

/// Drops the `started` record of an attempt whose outcome is in the same
/// batch: nobody needs to know it is running, and its start is its end less
/// its duration (the history index derives it). Short jobs then cost one
/// record, not two.
fn without_settled_starts(records: Vec<RunEvent>) -> Vec<RunEvent> {
    use sundial_core::protocol::run::RunKind;
    let settled: std::collections::HashSet<(&str, u32)> = records
        .iter()
        .filter(|r| matches!(r.kind, RunKind::Succeeded | RunKind::Failed))
        .map(|r| (r.fire_id.as_str(), r.attempt))
        .collect();
    if settled.is_empty() {
        return records;
    }
    let drop: Vec<bool> = records
        .iter()
        .map(|r| r.kind == RunKind::Started && settled.contains(&(r.fire_id.as_str(), r.attempt)))
        .collect();
    records
        .into_iter()
        .zip(drop)
        .filter_map(|(r, d)| (!d).then_some(r))
        .collect()
}

async fn publish(
    ch: &Channel,
    exchange: &str,
    batch: RunBatch,
) -> Result<impl Future<Output = Result<(), PublishError>>, PublishError> {
    let enc = encode(&batch).map_err(|e| PublishError::Broker(e.into()))?;
    publish_event(ch, exchange, "", &enc).await
}
