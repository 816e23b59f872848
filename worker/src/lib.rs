//! `sundial-worker`: consumes every shard queue `sundial.work.{pool}.{shard}`
//! of its pool and turns each fire into one attempt with exactly one
//! outcome. No actors, no HTTP server, no SQLite: an embedded worker
//! (`examples/embedded_worker.rs`) builds this crate alone. The `http`
//! executor is behind the feature `http` (ADR 0019).
//!
//! # Layout
//!
//! | module       | responsibility |
//! |--------------|----------------|
//! | `lib.rs`     | `WorkerConfig`, `Worker` (`builder`, `run`: the supervised root, `run_once`) |
//! | `acks`       | `Acks`: the input channel's acks, gathered into `multiple` acks |
//! | `attempt`    | `attempt::handle`: one delivery → one outcome (ack, retry tier, dead letter), records first |
//! | `executor`   | `shell`, `http` (feature), `publish`, `handler`, `noop` |
//! | `handler`    | the Rust handler API (`Handlers`, `JobError`, `RunContext`) |
//! | [`record`]   | `Recorder`: run records batched onto the history stream, confirmed |
//! | `beat`       | the worker's heartbeat on `sundial.workers` |
//! | `cancel`     | cancel requests (`sundial.cancel`) for running attempts |
//! | [`error`]    | this crate's error type |
//!
//! ```text
//! Worker::run (reconnects with backoff: the root of a rest-for-one restart)
//!  └─ run_once: connection "sundial worker {id}"
//!      ├─ topology apply (idempotent)
//!      ├─ heartbeat task on sundial.workers (for `sundial status`)
//!      ├─ in:  one channel, basic.qos(concurrency) per consumer, S consumers
//!      ├─ out: one confirming channel (run records, run events, retries, dead letters)
//!      └─ loop: permit (Semaphore = concurrency) → delivery → task:
//!               decode → duplicate? → started → executor under timeout →
//!               (permit back) → ack | retry tier + ack | dead letter + ack,
//!               each after its run records are confirmed (history::Recorder)
//! ```
//!
//! Several worker processes on one pool need no coordination: each consumes
//! every shard queue and RabbitMQ spreads the deliveries (round-robin per
//! queue, bounded by the prefetch).

mod acks;
mod attempt;
mod beat;
mod cancel;
pub mod error;
mod executor;
mod handler;
pub mod record;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{stream::select_all, StreamExt};
use lapin::{
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use sundial_core::{attempt::RecentFires, settings::Settings, topology::Topology};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

pub use self::handler::{Handlers, JobError, RunContext};
use self::{attempt::Shared, executor::Executors};
pub use crate::error::Error;

/// What a worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub broker: sundial_core::settings::BrokerSettings,
    pub topology: Topology,
    pub pool: String,
    /// Runs at once, and the prefetch of each shard consumer: one number.
    pub concurrency: u16,
    /// After SIGTERM, how long running attempts may finish before they are
    /// cancelled and left to the broker to redeliver.
    pub shutdown_deadline: Duration,
    /// Programs the `shell` executor may run (absolute paths).
    pub shell_allow: Vec<String>,
    /// This worker's id in run events, dead-letter headers and logs.
    pub id: String,
    /// The broker's `consumer_timeout`; a job whose timeout is longer gets a
    /// warning, because the broker would redeliver its run.
    pub consumer_timeout: Duration,
    /// Where the worker reports readiness (`/readyz`).
    pub health: Arc<sundial_runtime::Health>,
    /// `control.hmac_key`: when set, a fire runs only when a scheduler
    /// signed it with this key (whatever its executor).
    pub hmac_key: Option<Arc<[u8]>>,
    /// Restart intensity of the supervision loop.
    pub supervisor: sundial_core::settings::SupervisorSettings,
    /// Which run records are also published one by one on `sundial.events`.
    pub run_events: sundial_core::settings::RunEvents,
    /// Run records per history stream message, at most.
    pub history_batch_max: u32,
    /// How often it announces itself on `sundial.workers`
    /// (`scheduler.heartbeat_interval`, so `sundial status` hears every
    /// process within one interval).
    pub heartbeat_interval: Duration,
}

impl WorkerConfig {
    pub fn from_settings(s: &Settings, id: String) -> Self {
        Self {
            broker: s.broker.clone(),
            topology: s.topology.clone(),
            pool: s.worker.pool.clone(),
            concurrency: s.worker.concurrency,
            shutdown_deadline: s.worker.shutdown_deadline,
            shell_allow: s.worker.shell_allow.clone(),
            id,
            consumer_timeout: s.worker.consumer_timeout,
            health: sundial_runtime::Health::new(),
            hmac_key: s.control.hmac_key.as_deref().map(Arc::from),
            supervisor: s.supervisor,
            run_events: s.worker.run_events,
            history_batch_max: s.history.batch_max,
            heartbeat_interval: s.scheduler.heartbeat_interval,
        }
    }
}

/// This component's name in `/readyz`.
const HEALTH_PART: &str = "worker";

/// A fire id (with attempt) seen again within this window is a duplicate.
/// Failover duplicates arrive within a watermark interval; ten minutes also
/// covers a slow handover.
const DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// Most fire ids remembered (~100 bytes each).
const DEDUP_CAPACITY: usize = 200_000;
/// After the deadline, how long cancelled attempts get to stop their
/// processes before the channel closes.
const ABANDON_GRACE: Duration = Duration::from_secs(5);

/// How long an attempt that could not settle its delivery (a nacked or
/// failed run-event or retry publish on a live connection) waits before
/// requeueing it: the cause is usually a full or blocked queue, and an
/// immediate requeue would spin. The work queue's `x-delivery-limit`
/// dead-letters a delivery that keeps failing this way.
const UNSETTLED_REQUEUE_DELAY: Duration = Duration::from_secs(1);

/// After `attempt::handle` failed, settles its delivery so that it never
/// holds a prefetch slot: requeued when the connection is fine, left to the
/// broker (which redelivers unacked messages when the channel closes) when
/// the run is ending anyway. A closed output channel restarts the run.
async fn settle_unsettled(
    shared: &Shared,
    acker: &lapin::Acker,
    tag: u64,
    e: &Error,
    broken: &CancellationToken,
) {
    if !shared.out.status().connected() {
        warn!(error = %e, "output channel closed; restarting the consumers (the broker redelivers the fire)");
        broken.cancel();
        return;
    }
    if shared.abandon.is_cancelled() {
        return;
    }
    warn!(error = %e, requeue_in_ms = UNSETTLED_REQUEUE_DELAY.as_millis() as u64, "attempt not settled; requeueing its fire");
    tokio::select! {
        () = tokio::time::sleep(UNSETTLED_REQUEUE_DELAY) => {}
        () = shared.abandon.cancelled() => return,
    }
    let requeue = lapin::options::BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    match acker.nack(requeue).await {
        Ok(_) => shared.acks.released(tag),
        Err(e) => {
            warn!(error = %e, "requeue failed; the broker redelivers the fire when the channel closes")
        }
    }
}

/// A worker with its handlers; `run` it until shutdown.
pub struct Worker {
    cfg: WorkerConfig,
    handlers: Handlers,
}

/// Registers handlers, then [`WorkerBuilder::build`].
pub struct WorkerBuilder {
    cfg: WorkerConfig,
    handlers: Handlers,
}

impl WorkerBuilder {
    /// Registers `f` for fires whose executor is `{ type = "handler", name }`.
    pub fn handler<F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(RunContext, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.handlers.insert(name, f);
        self
    }

    pub fn build(self) -> Worker {
        Worker {
            cfg: self.cfg,
            handlers: self.handlers,
        }
    }
}

impl Worker {
    pub fn builder(cfg: WorkerConfig) -> WorkerBuilder {
        WorkerBuilder {
            cfg,
            handlers: Handlers::default(),
        }
    }

    /// Consumes until `shutdown` is cancelled, then drains (see
    /// [`WorkerConfig::shutdown_deadline`]). Losing the broker restarts the
    /// consumers after a backoff; unacked fires are redelivered by the broker.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let recent = Arc::new(Mutex::new(RecentFires::new(DEDUP_WINDOW, DEDUP_CAPACITY)));
        let started_at = chrono::Utc::now();
        let mut supervisor =
            sundial_runtime::supervise::Supervisor::new("worker", self.cfg.supervisor);
        self.cfg
            .health
            .set(HEALTH_PART, Some("connecting to the broker".into()));
        loop {
            match self.run_once(&shutdown, recent.clone(), started_at).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.cfg.health.set(
                        HEALTH_PART,
                        Some(format!("broker link lost ({e}); reconnecting")),
                    );
                    supervisor.restart(e, &shutdown).await?;
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn run_once(
        &self,
        shutdown: &CancellationToken,
        recent: Arc<Mutex<RecentFires>>,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Error> {
        let cfg = &self.cfg;
        let topo = Arc::new(cfg.topology.clone());
        let (conn, broker) =
            sundial_amqp::broker::connect_any(&cfg.broker, &format!("sundial worker {}", cfg.id))
                .await?;
        let conn = Arc::new(conn);
        let lost = sundial_amqp::broker::on_connection_error(&conn);
        sundial_amqp::topology::apply_if_permitted(&conn, &topo.declarations()).await?;

        let input = sundial_amqp::broker::open_channel(&conn).await?;
        // Per consumer (global=false): global QoS on a quorum queue closes
        // the connection in RabbitMQ 3.10.
        input
            .basic_qos(cfg.concurrency, BasicQosOptions { global: false })
            .await
            .map_err(Error::broker("basic.qos"))?;
        let out = sundial_amqp::broker::confirming_channel(&conn).await?;
        let abandon = CancellationToken::new();
        let recorder = crate::record::Recorder::start(
            out.clone(),
            topo.history_exchange(),
            cfg.history_batch_max as usize,
        );
        let shared = Arc::new(Shared {
            topo: topo.clone(),
            pool: cfg.pool.clone(),
            worker: cfg.id.clone(),
            out,
            executors: Executors::new(
                cfg.shell_allow.clone(),
                self.handlers.clone(),
                conn.clone(),
            )?,
            recent: recent.clone(),
            warned: Mutex::new(HashSet::new()),
            consumer_timeout: cfg.consumer_timeout,
            abandon: abandon.clone(),
            running: Mutex::new(HashMap::new()),
            hmac_key: cfg.hmac_key.clone(),
            run_events: cfg.run_events,
            recorder,
            acks: crate::acks::Acks::start(input.clone()),
            meters: attempt::Meters::of(&cfg.pool),
        });
        let cancels =
            cancel::listen(&conn, &topo, &cfg.id, shared.clone(), abandon.clone()).await?;

        let mut consumers = Vec::with_capacity(topo.shards as usize);
        let mut tags = Vec::with_capacity(topo.shards as usize);
        for shard in 0..topo.shards {
            let tag = format!("{}.{shard}", cfg.id);
            let c = input
                .basic_consume(
                    topo.work_queue(&cfg.pool, shard).as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(Error::broker(format!(
                    "basic.consume {}",
                    topo.work_queue(&cfg.pool, shard)
                )))?;
            consumers.push(c);
            tags.push(tag);
        }
        // This worker's own queue: the fires of `every-worker` steps for it
        // (docs/semantics.md §7). A broker user that may not declare it
        // leaves this worker out of every-worker steps (their fires to it
        // come back unroutable and end dead).
        let own = topo.worker_queue(&cfg.pool, &cfg.id);
        if sundial_amqp::topology::apply_if_permitted(
            &conn,
            &topo.worker_declarations(&cfg.pool, &cfg.id),
        )
        .await?
        {
            let tag = format!("{}.own", cfg.id);
            let c = input
                .basic_consume(
                    own.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(Error::broker(format!("basic.consume {own}")))?;
            consumers.push(c);
            tags.push(tag);
        } else {
            warn!(worker = %cfg.id, queue = %own, "may not declare this worker's own queue: it takes no every-worker fires");
        }
        let mut deliveries = select_all(consumers);
        let permits = Arc::new(Semaphore::new(usize::from(cfg.concurrency)));
        let beat_stop = CancellationToken::new();
        let beats = beat::start(
            conn.clone(),
            &topo,
            beat::Identity {
                worker: cfg.id.clone(),
                pool: cfg.pool.clone(),
                started_at,
                concurrency: cfg.concurrency,
                broker,
                interval: cfg.heartbeat_interval,
            },
            shared.clone(),
            beat_stop.clone(),
            shutdown.clone(),
        );
        let tasks = TaskTracker::new();
        info!(worker = %cfg.id, pool = %cfg.pool, shards = topo.shards, concurrency = cfg.concurrency, "worker consuming");
        cfg.health.set(HEALTH_PART, None);

        // Cancelled when the output channel is unusable: attempts cannot
        // report or retry, so the run restarts with fresh channels.
        let broken = CancellationToken::new();
        let result: Result<(), Error> = loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                () = broken.cancelled() => break Err(sundial_amqp::Error::ConnectionLost("output channel closed").into()),
                () = lost.cancelled() => break Err(sundial_amqp::Error::ConnectionLost("connection closed").into()),
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break Ok(()),
                },
            };
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                () = broken.cancelled() => break Err(sundial_amqp::Error::ConnectionLost("output channel closed").into()),
                () = lost.cancelled() => break Err(sundial_amqp::Error::ConnectionLost("connection closed").into()),
                d = deliveries.next() => d,
            };
            let delivery = match delivery {
                Some(Ok(d)) => d,
                Some(Err(e)) => break Err(Error::broker("work delivery")(e)),
                None => break Err(sundial_amqp::Error::StreamEnded("work consumers").into()),
            };
            // Noted before its attempt can ask for its ack (crate::acks).
            shared.acks.taken(delivery.delivery_tag);
            let shared = shared.clone();
            let broken = broken.clone();
            // Kept to settle the delivery when the attempt could not.
            let acker = delivery.acker.clone();
            let tag = delivery.delivery_tag;
            // The permit goes when the executor is done: settling (records,
            // retry, ack) overlaps the next runs.
            tasks.spawn(async move {
                use futures_util::FutureExt;
                let handled =
                    std::panic::AssertUnwindSafe(attempt::handle(&shared, &delivery, permit))
                        .catch_unwind()
                        .await;
                let result = match handled {
                    Ok(r) => r,
                    Err(panic) => {
                        attempt::dead_letter_panicked(
                            &shared,
                            &delivery,
                            &sundial_runtime::panic::panic_text(&*panic),
                        )
                        .await
                    }
                };
                if let Err(e) = result {
                    settle_unsettled(&shared, &acker, tag, &e, &broken).await;
                }
            });
        };

        // Stop taking new fires; let running attempts finish until the
        // deadline (graceful shutdown) or abandon them at once (link lost).
        for tag in &tags {
            let _ = input
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await;
        }
        tasks.close();
        let deadline = if result.is_ok() {
            cfg.shutdown_deadline
        } else {
            Duration::ZERO
        };
        if tokio::time::timeout(deadline, tasks.wait()).await.is_err() || result.is_err() {
            if result.is_ok() {
                warn!(running = tasks.len(), "shutdown deadline passed; cancelling running attempts (the broker redelivers them)");
            }
            abandon.cancel();
            let _ = tokio::time::timeout(ABANDON_GRACE, tasks.wait()).await;
        }
        abandon.cancel();
        let _ = cancels.await;
        beat_stop.cancel();
        // Its last heartbeat (`leaving`) never holds up a stop.
        let _ = tokio::time::timeout(Duration::from_secs(2), beats).await;
        // Closing the channel returns every unacked delivery to its queue.
        let _ = input.close(200, "worker stopping".into()).await;
        let _ = shared.out.close(200, "worker stopping".into()).await;
        let _ = conn.close(200, "worker stopping".into()).await;
        if result.is_ok() {
            info!(worker = %cfg.id, "worker stopped");
        }
        result
    }
}
