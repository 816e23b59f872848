//! `sundial-core`: Sundial's domain, with no actors and no sockets.
//!
//! Everything here is pure: time comes in as an argument, bytes come in as
//! slices. The other crates (ADR 0019) and the binary wire these pieces to RabbitMQ,
//! SQLite and HTTP.
//!
//! # Layout
//!
//! | module       | responsibility |
//! |--------------|----------------|
//! | [`schedule`] | parse cron / `@every` / `@at` expressions; `next_after` with Debian cron's DST rule |
//! | [`duration`] | the human duration type (`"90s"`, `"10m"`) used in job files and settings |
//! | [`job`]      | `JobSpec`, the user-facing job file format (TOML/JSON), and its validation |
//! | [`fire_id`]  | `FireId = "{job_id}@{scheduled_instant_utc}"`, the idempotency key |
//! | [`registry`] | the current job definitions, rebuilt from registry records |
//! | [`registry_read`] | the API's job reads (`JobsQuery`) answered from a view, with coded refusals |
//! | [`lease`]    | which scheduler holds which timer shard: balanced rendezvous assignment, handover and takeover plans |
//! | [`ledger`]   | expected fire ids of a window vs observed ones: missing, duplicates |
//! | [`misfire`]  | what to fire for occurrences missed while nobody was firing; jitter |
//! | [`timer`]    | one timer shard's deadlines, in-flight fires and watermark, clock injected |
//! | [`overlap`]  | what `overlap` (allow, forbid, replace) does with a fire while a run runs |
//! | [`backoff`]  | the retry-tier choice and the exponential backoff with jitter (restarts, fire re-publishes) |
//! | [`restart`]  | restart backoff with jitter, restart intensity (R restarts in T, then escalate) |
//! | [`protocol`] | every message on the wire: control commands/replies, registry records, fire events, run events, watermarks |
//! | [`control`]  | what a control command does to the registry, decided without I/O |
//! | [`attempt`]  | after an attempt: retry tier or dead letter; recent fire ids; output tail |
//! | [`codec`]    | the one place bytes become messages and back (JSON and pinned bincode), with size limits |
//! | [`topology`] | exchange/queue names, routing keys and queue arguments under a prefix |
//! | [`sign`]     | HMAC-SHA256 signatures of control commands and fire events |
//! | [`workflow`] | workflow steps (issue 24; `job::workflow`, a job's part): their checks, the pure decision of what runs next, an occurrence's progress |
//! | [`wire`]     | names on the wire below every other module: version header, content types, dead-letter headers and their bound |
//! | [`settings`] | raw settings (serde) and their validated form |
//! | [`error`]    | the crate's error types |

pub mod alert;
pub mod attempt;
pub mod auth;
pub mod backoff;
pub mod codec;
pub mod control;
pub mod duration;
pub mod error;
pub mod fire_id;
pub mod history;
pub mod job;
pub mod lease;
pub mod ledger;
pub mod misfire;
pub mod overlap;
pub mod protocol;
pub mod registry;
pub mod registry_read;
pub mod restart;
pub mod schedule;
pub mod settings;
pub mod sign;
pub mod timer;
pub mod topology;
pub mod wire;
/// A job's steps: `job::workflow`, at the crate's top for its users.
pub use job::workflow;

pub use duration::HumanDuration;
pub use error::{CodecError, ScheduleError, ValidationError};
pub use fire_id::FireId;
pub use job::JobSpec;
pub use schedule::{Occurrence, OccurrenceNote, Schedule};
