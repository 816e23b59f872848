//! `sundial-amqp`: where Sundial meets RabbitMQ.
//!
//! # Layout
//!
//! | module       | responsibility |
//! |--------------|----------------|
//! | [`broker`]   | connecting with lapin (`broker::connect_to`, `connect_any`), channels (`open_channel`, `confirming_channel`), the probe connection, consumers |
//! | [`props`]    | `codec::Meta` ⇄ AMQP properties and headers (re-exported by `broker`) |
//! | [`publish`]  | mandatory, persistent publishes with an awaited confirm each; the one dead-letter publisher |
//! | [`topology`] | declaring `sundial_core::topology::Declarations`, idempotently, with clear conflict errors |
//! | [`client`]   | a control-protocol client (what the CLI's `job` commands and the API's writes use) |
//! | [`audit`]    | the audit trail's writer: an entry to the registry and history streams |
//! | [`dlq`]      | dead-letter queues: list without consuming, replay, purge, depth |
//! | [`status`]   | what `sundial status` gathers: heartbeats, watermarks, queue depths |
//! | [`watermark`] | the shard watermarks: read the last one, write one |
//! | [`history`]  | the history stream: `Reader` (the one reader), stream consumers (`StreamStart`, `consume_stream`), which stream an index follows (`stream_identity`) |
//! | [`error`]    | this crate's error type |

pub mod audit;
pub mod broker;
pub mod client;
pub mod dlq;
pub mod error;
pub mod history;
pub mod props;
pub mod publish;
pub mod status;
pub mod topology;
pub mod watermark;

pub use error::Error;
