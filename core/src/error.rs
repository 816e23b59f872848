//! Error types of `sundial-core`. Messages are lowercase and name the offending
//! field or value, because they travel back to users in control replies and CLI
//! output.

use std::fmt;

/// A rule a user-supplied value broke. `field` is a dotted path into the job
/// document (`retry.max_attempts`, `executor.url`), so a client in any language
/// can point at the right input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a schedule expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The expression does not parse; `reason` names the field and the rule.
    #[error("invalid schedule \"{expr}\": {reason}")]
    Invalid { expr: String, reason: String },
    /// The expression parses but has no occurrence after the given instant
    /// (`0 0 30 2 *`, an `@at` in the past, an `@every` past its end).
    #[error("schedule \"{expr}\" never fires after {after}")]
    NeverFires { expr: String, after: String },
    /// The time zone is not an IANA zone name known to chrono-tz.
    #[error("unknown time zone \"{0}\": expected an IANA name such as \"Europe/Berlin\"")]
    UnknownZone(String),
}

/// Why bytes could not become a message (or a message bytes). Decoding never
/// panics: every malformed input maps to one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("message too large: {size} bytes, limit {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("unsupported protocol version {found}: this build reads versions 1 to {supported} (a newer Sundial wrote it; upgrade this process)")]
    UnsupportedVersion { found: i64, supported: i64 },
    #[error("wrong message type: expected {expected}, got {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("unsupported content type {found:?} for {kind}")]
    UnsupportedContentType { kind: &'static str, found: String },
    #[error("truncated {kind} message: {detail}")]
    Truncated { kind: &'static str, detail: String },
    #[error("malformed {kind} message at {path}: {detail}")]
    Malformed {
        kind: &'static str,
        path: String,
        detail: String,
    },
    #[error("{extra} trailing bytes after a {kind} message")]
    TrailingBytes { kind: &'static str, extra: usize },
    #[error("cannot encode {kind}: {detail}")]
    Encode { kind: &'static str, detail: String },
}

impl CodecError {
    /// What a control reply says about this error next to its
    /// [`field`](Self::field): the detail alone for a malformed body (the
    /// field already says where), else the whole message.
    pub fn reply_message(&self) -> String {
        match self {
            CodecError::Malformed { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }

    /// The field a control reply should name for this error: the JSON path for
    /// malformed bodies, otherwise the AMQP property or header at fault.
    pub fn field(&self) -> String {
        match self {
            CodecError::Malformed { path, .. } => path.clone(),
            CodecError::MissingHeader(h) => (*h).to_string(),
            CodecError::UnsupportedVersion { .. } => crate::wire::VERSION_HEADER.to_string(),
            CodecError::WrongType { .. } => "type".to_string(),
            CodecError::UnsupportedContentType { .. } => "content_type".to_string(),
            CodecError::TooLarge { .. }
            | CodecError::Truncated { .. }
            | CodecError::TrailingBytes { .. }
            | CodecError::Encode { .. } => "body".to_string(),
        }
    }
}
