//! Every message Sundial puts on the wire. Names here (kinds, headers, content
//! types) are contracts documented in `docs/protocol.md`; renaming a Rust type
//! never changes them.
//!
//! | kind (AMQP `type`)  | Rust type                 | primary format | also |
//! |---------------------|---------------------------|----------------|------|
//! | `sundial.command`   | [`control::Command`]      | JSON           |      |
//! | `sundial.reply`     | [`control::Reply`]        | JSON           |      |
//! | `sundial.registry`  | [`registry::RegistryRecord`] | JSON        |      |
//! | `sundial.fire`      | [`fire::FireEvent`]       | bincode        | JSON |
//! | `sundial.watermark` | [`fire::Watermark`]       | bincode        | JSON |
//! | `sundial.run`       | [`run::RunEvent`]         | JSON           |      |
//! | `sundial.cancel`    | [`run::CancelRun`]        | JSON           |      |
//! | `sundial.heartbeat` | [`node::Heartbeat`]       | JSON           |      |
//! | `sundial.worker-heartbeat` | [`node::WorkerBeat`] | JSON         |      |

pub mod alert;
pub mod audit;
pub mod control;
pub mod fire;
pub mod node;
pub mod registry;
pub mod run;

use serde::{de::DeserializeOwned, Serialize};

pub use crate::wire::{
    headers, CONTENT_TYPE_BINCODE, CONTENT_TYPE_JSON, MAX_VERSION, VERSION, VERSION_HEADER,
};

/// What a job is told about its run, by executor (docs/protocol.md §9):
/// the idempotency key and the occurrence. Names are contracts.
pub mod run_context {
    /// `shell`: environment variables.
    pub const ENV_FIRE_ID: &str = "SUNDIAL_FIRE_ID";
    pub const ENV_JOB_ID: &str = "SUNDIAL_JOB_ID";
    pub const ENV_SCHEDULED_AT: &str = "SUNDIAL_SCHEDULED_AT";
    pub const ENV_ATTEMPT: &str = "SUNDIAL_ATTEMPT";
    pub const ENV_PAYLOAD: &str = "SUNDIAL_PAYLOAD";
    /// The payload travels in the environment only up to this size (the
    /// kernel refuses an `exec` with a variable over 128 KiB); stdin always
    /// has it.
    pub const ENV_PAYLOAD_MAX: usize = 64 * 1024;
    /// A workflow step's fire (issue 24): its step, and for a step fanned
    /// out over shards, its shard index (from 0) and the number of shards.
    pub const ENV_STEP: &str = "SUNDIAL_STEP";
    pub const ENV_SHARD_INDEX: &str = "SUNDIAL_SHARD_INDEX";
    pub const ENV_SHARD_TOTAL: &str = "SUNDIAL_SHARD_TOTAL";
    /// `http`: request headers.
    pub const HEADER_IDEMPOTENCY_KEY: &str = "Idempotency-Key";
    pub const HEADER_FIRE_ID: &str = "X-Sundial-Fire-Id";
    pub const HEADER_JOB_ID: &str = "X-Sundial-Job-Id";
    pub const HEADER_SCHEDULED_AT: &str = "X-Sundial-Scheduled-At";
    pub const HEADER_ATTEMPT: &str = "X-Sundial-Attempt";
    pub const HEADER_STEP: &str = "X-Sundial-Step";
    pub const HEADER_SHARD_INDEX: &str = "X-Sundial-Shard-Index";
    pub const HEADER_SHARD_TOTAL: &str = "X-Sundial-Shard-Total";
    /// `publish`: message headers.
    pub const AMQP_STEP: &str = "x-sundial-step";
    pub const AMQP_SHARD_INDEX: &str = "x-sundial-shard-index";
    pub const AMQP_SHARD_TOTAL: &str = "x-sundial-shard-total";

    /// What a step's fire is told, by name (`STEP`, `SHARD_INDEX`,
    /// `SHARD_TOTAL`), for each executor to write in its own form; empty
    /// for a lone job's fire.
    pub fn step_values(fire: &super::fire::FireEvent) -> Vec<(StepValue, String)> {
        let Some(step) = fire.step() else {
            return Vec::new();
        };
        let mut out = vec![(StepValue::Step, step.step.to_string())];
        if let Some((k, n)) = step.shard {
            out.push((StepValue::ShardIndex, k.to_string()));
            out.push((StepValue::ShardTotal, n.to_string()));
        }
        out
    }

    /// One of the values a step's fire is told.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StepValue {
        Step,
        ShardIndex,
        ShardTotal,
    }

    impl StepValue {
        pub fn env(self) -> &'static str {
            match self {
                StepValue::Step => ENV_STEP,
                StepValue::ShardIndex => ENV_SHARD_INDEX,
                StepValue::ShardTotal => ENV_SHARD_TOTAL,
            }
        }
        pub fn http_header(self) -> &'static str {
            match self {
                StepValue::Step => HEADER_STEP,
                StepValue::ShardIndex => HEADER_SHARD_INDEX,
                StepValue::ShardTotal => HEADER_SHARD_TOTAL,
            }
        }
        pub fn amqp_header(self) -> &'static str {
            match self {
                StepValue::Step => AMQP_STEP,
                StepValue::ShardIndex => AMQP_SHARD_INDEX,
                StepValue::ShardTotal => AMQP_SHARD_TOTAL,
            }
        }
    }
}

/// The one timestamp form Sundial writes in headers, replies and
/// environments: RFC 3339 in UTC with milliseconds and `Z`
/// (`2026-03-08T07:00:00.000Z`), as in fire ids.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Bincode,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => CONTENT_TYPE_JSON,
            Format::Bincode => CONTENT_TYPE_BINCODE,
        }
    }

    pub fn from_content_type(ct: &str) -> Option<Self> {
        // Tolerate parameters such as `application/json; charset=utf-8`.
        let base = ct.split(';').next().unwrap_or("").trim();
        if base.eq_ignore_ascii_case(CONTENT_TYPE_JSON) {
            Some(Format::Json)
        } else if base.eq_ignore_ascii_case(CONTENT_TYPE_BINCODE) {
            Some(Format::Bincode)
        } else {
            None
        }
    }
}

/// A message type: its kind, formats and size limit.
pub trait Message: Serialize + DeserializeOwned {
    /// AMQP `type` property.
    const KIND: &'static str;
    /// The format it is published in.
    const PRIMARY: Format;
    /// Formats it can be decoded from (the primary one first).
    const FORMATS: &'static [Format];
    /// Largest body accepted when decoding (and produced when encoding).
    const MAX_SIZE: usize;
    /// The JSON key that names the variant, for internally tagged enums
    /// (`command`, `op`); errors about the variant name this field.
    const TAG: Option<&'static str> = None;

    /// The AMQP `message_id` for this message when it has a natural one (a
    /// fire's fire_id); otherwise the codec generates one.
    fn natural_id(&self) -> Option<String> {
        None
    }

    /// The protocol version written in its header ([`VERSION`] but for the
    /// fires of workflow steps).
    fn version(&self) -> i64 {
        VERSION
    }

    /// Decodes a well-formed body in one pass (no intermediate value);
    /// `None` sends it down the slower path that names the offending field.
    /// Types whose [`Message::from_json`] does more than serde return `None`.
    fn from_json_slice(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    /// Builds the message from a parsed JSON value; an error names the path
    /// of the offending field. The default goes through serde with path
    /// tracking; internally tagged enums override it, because serde loses the
    /// path inside them.
    fn from_json(value: serde_json::Value) -> Result<Self, JsonError> {
        serde_path_to_error::deserialize(value).map_err(|e| JsonError {
            path: e.path().to_string(),
            detail: e.inner().to_string(),
        })
    }
}

/// serde names the field only in the message of `unknown field `x`` and
/// `missing field `x`` errors.
pub(crate) fn field_in_message(detail: &str) -> Option<String> {
    ["unknown field `", "missing field `"]
        .iter()
        .find_map(|p| detail.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string)
}

/// A JSON schema error: `path` is dotted (`job.retry.max_attempts`), `.` for
/// the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub path: String,
    pub detail: String,
}

impl JsonError {
    pub fn new(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// Decodes `value` as `T`, prefixing error paths with `prefix`.
    pub fn decode<T: DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, Self> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let inner = e.path().to_string();
            let path = match (prefix.is_empty(), inner.as_str()) {
                (true, _) => inner,
                (false, ".") => prefix.to_string(),
                (false, p) => format!("{prefix}.{p}"),
            };
            JsonError::new(path, e.inner().to_string())
        })
    }
}

/// One MiB: the control body limit (docs/protocol.md §3).
pub const MIB: usize = 1024 * 1024;
