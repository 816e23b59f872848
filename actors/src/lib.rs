//! `sundial-actors`: the actix actors and the AMQP adapters they use.
//!
//! This crate is where Sundial meets RabbitMQ. Today it holds the adapters
//! (connection, message properties, topology declaration); the actors of the
//! tree below arrive with the scheduler, worker and supervision issues.
//!
//! # Layout
//!
//! | module       | responsibility |
//! |--------------|----------------|
//! | [`broker`]   | connecting with lapin; `codec::Meta` ⇄ AMQP properties and headers |
//! | [`metrics`]  | metric names (recorded through the `metrics` facade) |
//! | [`publish`]  | mandatory, persistent publishes with an awaited confirm each |
//! | [`scheduler`] | the scheduler: registry, control, timer shards |
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
//! (rest-for-one); independent children restart alone (one-for-one).
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
pub mod error;
pub mod metrics;
pub mod publish;
pub mod scheduler;
pub mod topology;

pub use error::Error;
