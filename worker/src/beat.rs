//! The worker's heartbeat on `sundial.workers` (fanout): which workers are
//! up, on which pool, how busy, and which broker node they are connected to
//! (`sundial status`, the dashboard). Nothing else depends on it: a missing
//! exchange (a topology applied by an older release) turns the heartbeats
//! off with one warning, the worker goes on.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use lapin::{Channel, Connection};
use sundial_core::{codec::encode, protocol::node::WorkerBeat, topology::Topology};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::attempt::Shared;
use sundial_amqp::publish::{publish_event, PublishError};

/// Who this worker is, for its heartbeats.
pub(super) struct Identity {
    pub(super) worker: String,
    pub(super) pool: String,
    pub(super) started_at: DateTime<Utc>,
    pub(super) concurrency: u16,
    pub(super) broker: String,
    pub(super) interval: Duration,
}

/// Publishes a heartbeat every `id.interval` until `stop`, then a last one
/// with `leaving` when `graceful` is cancelled too (a stop, not a lost link).
pub(super) fn start(
    conn: Arc<Connection>,
    topo: &Topology,
    id: Identity,
    shared: Arc<Shared>,
    stop: CancellationToken,
    graceful: CancellationToken,
) -> JoinHandle<()> {
    let exchange = topo.workers_exchange();
    tokio::spawn(async move {
        let ch = match sundial_amqp::broker::open_channel(&conn).await {
            Ok(ch) => ch,
            Err(e) => {
                debug!(error = %e, "no channel for worker heartbeats");
                return;
            }
        };
        let running = || u32::try_from(shared.running_count()).unwrap_or(u32::MAX);
        let mut tick = tokio::time::interval(id.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = send(&ch, &exchange, &id, running(), false).await {
                warn!(worker = %id.worker, error = %e, exchange = %exchange, "worker heartbeats off until the next reconnect (`sundial topology apply` declares the exchange); this worker will not be listed by `sundial status`");
                return;
            }
        }
        if graceful.is_cancelled() {
            let _ = send(&ch, &exchange, &id, 0, true).await;
        }
        let _ = ch.close(200, "worker stopping".into()).await;
    })
}

async fn send(
    ch: &Channel,
    exchange: &str,
    id: &Identity,
    running: u32,
    leaving: bool,
) -> Result<(), PublishError> {
    let beat = WorkerBeat {
        worker: id.worker.clone(),
        pool: id.pool.clone(),
        started_at: id.started_at,
        at: Utc::now(),
        running,
        concurrency: u32::from(id.concurrency),
        broker: Some(id.broker.clone()),
        leaving,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let Ok(enc) = encode(&beat) else {
        return Ok(());
    };
    // Not confirmed: a lost heartbeat is made good by the next one.
    publish_event(ch, exchange, "", &enc).await.map(drop)
}
