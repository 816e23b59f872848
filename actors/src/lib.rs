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
//! | [`broker`]   | connecting with lapin (`broker::connect_to`); `codec::Meta` ⇄ AMQP properties and headers |
//! | [`http`]     | `/metrics`, `/healthz`, `/readyz`, `/api/v1` (hyper + the Prometheus recorder) |
//! | [`history`]  | run history: the worker's `Recorder` (batches to `sundial.history`), the scheduler's `Index` (SQLite) and `ingest::ingest`, the `/api/v1` runs endpoints |
//! | [`metrics`]  | metric names (recorded through the `metrics` facade) |
//! | [`publish`]  | mandatory, persistent publishes with an awaited confirm each |
//! | [`scheduler`] | the scheduler: `Registry`, `control::run`, `leases::run`, `TimerShard`s, `runs::track` |
//! | [`worker`]   | the worker: shard consumers, `attempt::handle`, executors, retries, dead letters; the handler API |
//! | [`dlq`]      | dead-letter queues: list without consuming, replay, purge, watch, depth |
//! | [`dlq_watcher`] | the `DlqWatcher` actor: dead-letter depth gauge, growth warnings, webhook alerts |
//! | [`status`]   | what `sundial status` gathers: heartbeats, watermarks, queue depths |
//! | `supervise`  | `Supervisor` (restart intensity, backoff), `OneForOne`, `Obituary`; the supervision matrix tests |
//! | `ratelimit`  | one log line per repeated condition per interval |
//! | [`client`]   | a control-protocol client (what the CLI's `job` commands use) |
//! | [`topology`] | declaring `sundial_core::topology::Declarations`, idempotently, with clear conflict errors |
//! | [`error`]    | this crate's error type |
//!
//! # Supervision tree
//!
//! Every name is a type or function in this crate.
//!
//! ```text
//! sundial scheduler
//! scheduler::run ─ Supervisor (backoff 0.5→15 s, jitter; more than
//!  │    supervisor.max_restarts in supervisor.within → exit 1)
//!  └─ scheduler::run_once  [rest-for-one: everything below restarts
//!      │    together when either connection or the Registry goes]
//!      ├─ broker::connect_to × 2   the connection, and the lease connection
//!      ├─ Registry        actor; a DropGuard cancels the run if it stops or panics
//!      ├─ control::run, runs::track, history::ingest::ingest   tasks; an
//!      │    error or stream end ends the run (history::Index, its writer
//!      │    thread and file outlive the run: opened once per process)
//!      └─ leases::run     task (state: leases::State): heartbeats, leases, rebalancing
//!          └─ OneForOne("timer-shard", same intensity; exceeded → escalate to run_once)
//!              └─ TimerShard × held shards   actors on 1–4 arbiters, each over a
//!                                            core::timer::ShardTimer; each holds
//!                                            an Obituary (dropped however it ends)
//! sundial worker --pool P     (src/commands/worker.rs starts both roots)
//! worker::Worker::run ─ Supervisor
//!  └─ Worker::run_once [rest-for-one]
//!      ├─ broker::connect_to
//!      ├─ history::Recorder   task batching run records (a failed publish
//!      │   fails every waiting attempt, which ends run_once)
//!      ├─ shard consumers → attempt::handle per delivery (tasks; a panicking
//!      │   handler is caught per attempt and reported as a failed run; an
//!      │   attempt that cannot settle its delivery on a live connection
//!      │   requeues it; a broken output channel ends run_once)
//!      └─ cancel::listen  task
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
//! Four files, each doing one thing:
//!
//! 1. `core/src/timer.rs` — `ShardTimer::due` pops the occurrence off the
//!    deadline queue and re-arms the job from its schedule.
//! 2. `actors/src/scheduler/timer.rs` — `TimerShard::publish` applies
//!    `core::overlap::decide`, builds `FireEvent::of`, publishes it
//!    (`publish::publish_confirmed`: mandatory, confirmed) and tells the
//!    timer `sent`/`settled`; the watermark follows `ShardTimer::tick`.
//! 3. `actors/src/worker/mod.rs` — `Worker::run_once` consumes
//!    `sundial.work.{pool}.{shard}` within the prefetch and spawns one task
//!    per delivery.
//! 4. `actors/src/worker/attempt.rs` — `attempt::handle` decodes, drops
//!    duplicates, runs the executor under the timeout, and ends in exactly
//!    one outcome: ack, a retry tier (`core::attempt::after_failure`) or a
//!    dead letter, each confirmed before the ack, as are its run records
//!    (`history::Recorder`, batched onto `sundial.history`).
//!
//! ```text
//! TimerShard ──publish(mandatory, confirm, message_id = fire_id)──▶ sundial.fire
//!     │ watermark advances when every fire ≤ T is confirmed         │ {pool}.{shard}
//!     ▼                                                             ▼
//! sundial.watermark.{shard}                          sundial.work.{pool}.{shard} (quorum)
//!                                                                   │ prefetch = concurrency
//!                             attempt::handle: run executor ────────┤
//!                     success: ack ◀───────────────────────────────┤
//!  failure: publish sundial.retry (tier header) → TTL → sundial.fire┤
//!                exhausted/abort: sundial.dead → sundial.dead.{pool}┘
//!   every step: Recorder ──batch──▶ sundial.history (stream) ──▶ runs::track,
//!                                                    history::ingest → Index
//! ```

pub mod api;
pub mod broker;
pub mod client;
pub mod dlq;
pub mod dlq_watcher;
pub mod error;
pub mod history;
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
