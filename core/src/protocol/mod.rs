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
    /// `http`: request headers.
    pub const HEADER_IDEMPOTENCY_KEY: &str = "Idempotency-Key";
    pub const HEADER_FIRE_ID: &str = "X-Sundial-Fire-Id";
    pub const HEADER_JOB_ID: &str = "X-Sundial-Job-Id";
    pub const HEADER_SCHEDULED_AT: &str = "X-Sundial-Scheduled-At";
    pub const HEADER_ATTEMPT: &str = "X-Sundial-Attempt";
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
