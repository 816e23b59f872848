//! `sundial-actors`: the actix actors and the AMQP adapters they use.
//!
//! This crate is where Sundial meets RabbitMQ: the adapters (connection,
//! message properties, confirmed publishing, topology declaration, the
//! control client), the scheduler's actors (`Registry`, the lease task,
//! `TimerShard`s, the control consumer, the run tracker), the worker, and the
//! supervision that keeps them running.
//!
//! # Layout
//!
//! | module       | responsibility |
//! |--------------|----------------|
//! | [`broker`]   | connecting with lapin; `codec::Meta` ⇄ AMQP properties and headers |
//! | [`http`]     | `/metrics`, `/healthz`, `/readyz` (hyper + the Prometheus recorder) |
//! | [`metrics`]  | metric names (recorded through the `metrics` facade) |
//! | [`publish`]  | mandatory, persistent publishes with an awaited confirm each |
//! | [`scheduler`] | the scheduler: registry, control, timer shards |
//! | [`worker`]   | the worker: shard consumers, executors, retries, dead letters; the handler API |
//! | [`dlq`]      | dead-letter queues: list without consuming, replay, purge, watch, depth |
//! | [`dlq_watcher`] | the `DlqWatcher` actor: dead-letter depth gauge, growth warnings, webhook alerts |
//! | [`client`]   | a control-protocol client (what the CLI's `job` commands use) |
//! | [`topology`] | declaring `sundial_core::topology::Declarations`, idempotently, with clear conflict errors |
//! | [`error`]    | this crate's error type |
//!
//! # Supervision tree
//!
//! ```text
//! sundial scheduler
//! root: scheduler::run ─ Supervisor (backoff 0.5→15 s, jitter; more than
//!  │    supervisor.max_restarts in supervisor.within → exit 1)
//!  └─ run_once  [rest-for-one: everything below restarts together when the
//!      │         broker link, the lease link or the Registry goes]
//!      ├─ connection + lease connection (BrokerLink)
//!      ├─ Registry        actor; a DropGuard cancels the run if it stops or panics
//!      ├─ control consumer, RunTracker   tasks; an error or stream end ends the run
//!      └─ ShardLeases     task: heartbeats, leases, rebalancing
//!          └─ OneForOne("timer-shard", same intensity; exceeded → escalate to run_once)
//!              └─ TimerShard × held shards   actors on 1–4 arbiters; each holds
//!                                            an Obituary (dropped however it ends)
//! sundial worker --pool P     (src/commands/worker.rs starts both roots)
//! root: worker::run ─ Supervisor
//!  └─ run_once [rest-for-one]
//!      ├─ connection
//!      ├─ shard consumers → attempts (tasks; a panicking handler is caught
//!      │   per attempt and reported as a failed run; an attempt that cannot
//!      │   settle its delivery on a live connection requeues it; a broken
//!      │   output channel ends run_once)
//!      └─ cancel listener (task)
//! beside it, not supervised: DlqWatcher  actor (depth gauge, growth
//!      warnings, webhook). It never stops on errors: each tick connects
//!      again if it must, so it needs no restarts; the command stops it
//!      (inside the runtime) when the worker ends.
//! ```
//! Actors fail by stopping; a panic ends an actix actor's task, so the
//! supervisor learns of every end through the child's `Obituary` (actix's own
//! `Supervisor` restarts only actors that stop, never after a panic, and
//! keeps their state; restarted children here are built fresh). Nothing
//! implements `stopping`/`stopped` with code that may panic: actix stops an
//! actor again while unwinding, and a second panic aborts the process (the
//! supervision matrix in `supervise` shows both).
//!
//! # One fire's path
//!
//! ```text
//! TimerShard ──publish(mandatory, confirm, message_id = fire_id)──▶ sundial.fire
//!     │ watermark advances when every fire ≤ T is confirmed         │ {pool}.{shard}
//!     ▼                                                             ▼
//! sundial.watermark.{shard}                          sundial.work.{pool}.{shard} (quorum)
//!                                                                   │ prefetch = concurrency
//!                                        Worker: run executor ──────┤
//!                     success: ack ◀───────────────────────────────┤
//!  failure: publish sundial.retry (tier header) → TTL → sundial.fire┤
//!                exhausted/abort: sundial.dead → sundial.dead.{pool}┘
//! ```

pub mod broker;
pub mod client;
pub mod dlq;
pub mod dlq_watcher;
pub mod error;
pub mod http;
pub mod metrics;
pub mod publish;
mod ratelimit;
pub mod scheduler;
pub mod status;
mod supervise;
pub mod topology;
pub mod worker;

pub use error::Error;
