//! `sundial-actors`: the actix actors and the AMQP adapters they use.
//!
//! This crate is where Sundial meets RabbitMQ: the adapters (connection,
//! message properties, confirmed publishing, topology declaration, the
//! control client) and the scheduler's actors (`Registry`, `TimerShard`, the
//! control consumer). Workers and the general supervisor arrive with their
//! issues; until then `scheduler::run` restarts everything that uses the
//! connection when it is lost (the root of the rest-for-one policy below).
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
//! # Supervision tree (target shape, DESIGN.md §2)
//!
//! ```text
//! sundial scheduler                          sundial worker --pool NAME
//! Supervisor (intensity R in T, escalate)    Supervisor
//!  ├─ BrokerLink  connections, channels       ├─ BrokerLink
//!  ├─ Registry    follows sundial.registry    ├─ Worker × shard queues of the pool
//!  ├─ Control     sundial.control → replies   └─ DlqWatcher
//!  ├─ ShardLeases owns timer shards
//!  │   └─ TimerShard × owned shards
//!  ├─ RunTracker  run events → overlap policy
//!  └─ Http        /metrics /healthz /readyz
//! ```
//! Children that use a connection restart after the broker link
//! (rest-for-one); independent children restart alone (one-for-one). Today
//! the scheduler's and the worker's loops (`supervise`) restart everything
//! on their connection with backoff and jitter, and exit non-zero past the
//! restart intensity (`supervisor.max_restarts` in `supervisor.within`).
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
pub mod scheduler;
pub mod status;
mod supervise;
pub mod topology;
pub mod worker;

pub use error::Error;
