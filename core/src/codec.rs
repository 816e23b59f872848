//! The one place where messages become bytes and bytes become messages.
//!
//! Every message travels with [`Meta`] (AMQP `type`, `content_type`,
//! `message_id`, `timestamp` and the `x-sundial-version` header). Decoding
//! checks size, version, type and content type before touching the body, and
//! never panics: each kind of bad input maps to a [`CodecError`] variant.
//!
//! bincode is pinned (`=2.0.1`, the last usable release; the crate is
//! unmaintained, RUSTSEC-2025-0141) and used only here, through serde, with a
//! decode size limit, so the binary format can be swapped by changing this file
//! and the content type.

use crate::{
    error::CodecError,
    protocol::{Format, Message, MAX_VERSION, VERSION},
};

/// The AMQP metadata of a message. Adapters map it to and from lapin's
/// `BasicProperties` + headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// AMQP `type`.
    pub kind: Option<String>,
    pub content_type: Option<String>,
    pub message_id: Option<String>,
    /// AMQP `timestamp`, seconds since the epoch.
    pub timestamp: Option<u64>,
    /// `x-sundial-version` header.
    pub version: Option<i64>,
}

/// An encoded message, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub body: Vec<u8>,
    pub meta: Meta,
}

const BINCODE_LIMIT: usize = 64 * 1024 * 1024;

fn bincode_config() -> impl bincode::config::Config {
    // The limit is a backstop for length prefixes inside the body; the
    // per-message `MAX_SIZE` check before decoding is the real bound.
    bincode::config::standard().with_limit::<BINCODE_LIMIT>()
}

/// Encodes `msg` in its primary format.
pub fn encode<M: Message>(msg: &M) -> Result<Encoded, CodecError> {
    encode_as(msg, M::PRIMARY)
}

/// Encodes `msg` in `format`, which must be one of `M::FORMATS`.
pub fn encode_as<M: Message>(msg: &M, format: Format) -> Result<Encoded, CodecError> {
    if !M::FORMATS.contains(&format) {
        return Err(CodecError::UnsupportedContentType {
            kind: M::KIND,
            found: format.content_type().to_string(),
        });
    }
    let body = match format {
        Format::Json => serde_json::to_vec(msg).map_err(|e| CodecError::Encode {
            kind: M::KIND,
            detail: e.to_string(),
        })?,
        Format::Bincode => bincode::serde::encode_to_vec(msg, bincode_config()).map_err(|e| {
            CodecError::Encode {
                kind: M::KIND,
                detail: e.to_string(),
            }
        })?,
    };
    if body.len() > M::MAX_SIZE {
        return Err(CodecError::TooLarge {
            size: body.len(),
            limit: M::MAX_SIZE,
        });
    }
    // No clock and no process id here: the AMQP adapter stamps the send
    // time and gives a message without a natural id a unique one
    // (`sundial_amqp::broker::properties`).
    let meta = Meta {
        kind: Some(M::KIND.to_string()),
        content_type: Some(format.content_type().to_string()),
        message_id: msg.natural_id(),
        timestamp: None,
        version: Some(msg.version()),
    };
    Ok(Encoded { body, meta })
}

/// Decodes a body with its metadata. Absent `type` or `content_type` are read
/// as "the expected kind" and "the primary format" (clients in other languages
/// may leave them out); a missing version header is an error.
pub fn decode<M: Message>(meta: &Meta, body: &[u8]) -> Result<M, CodecError> {
    if body.len() > M::MAX_SIZE {
        return Err(CodecError::TooLarge {
            size: body.len(),
            limit: M::MAX_SIZE,
        });
    }
    let version = meta
        .version
        .ok_or(CodecError::MissingHeader(crate::protocol::VERSION_HEADER))?;
    if !(VERSION..=MAX_VERSION).contains(&version) {
        return Err(CodecError::UnsupportedVersion {
            found: version,
            supported: MAX_VERSION,
        });
    }
    if let Some(kind) = meta.kind.as_deref() {
        if kind != M::KIND {
            return Err(CodecError::WrongType {
                expected: M::KIND,
                found: kind.to_string(),
            });
        }
    }
    let format = match meta.content_type.as_deref() {
        None => M::PRIMARY,
        Some(ct) => Format::from_content_type(ct)
            .filter(|f| M::FORMATS.contains(f))
            .ok_or_else(|| CodecError::UnsupportedContentType {
                kind: M::KIND,
                found: ct.to_string(),
            })?,
    };
    match format {
        Format::Json => decode_json(body),
        Format::Bincode => decode_bincode(body),
    }
}

fn decode_json<M: Message>(body: &[u8]) -> Result<M, CodecError> {
    if let Some(m) = M::from_json_slice(body) {
        return Ok(m);
    }
    // Parse to a value first: syntax and truncation errors are told apart from
    // schema errors, and schema errors get a path.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            CodecError::Truncated {
                kind: M::KIND,
                detail: e.to_string(),
            }
        } else {
            CodecError::Malformed {
                kind: M::KIND,
                path: "body".to_string(),
                detail: e.to_string(),
            }
        }
    })?;
    M::from_json(value).map_err(|e| {
        let path = if e.path == "." {
            crate::protocol::field_in_message(&e.detail)
                .or_else(|| {
                    M::TAG
                        .filter(|_| e.detail.contains("variant"))
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "body".to_string())
        } else {
            e.path
        };
        CodecError::Malformed {
            kind: M::KIND,
            path,
            detail: e.detail,
        }
    })
}

fn decode_bincode<M: Message>(body: &[u8]) -> Result<M, CodecError> {
    use bincode::error::DecodeError;
    let (msg, read) =
        bincode::serde::decode_from_slice::<M, _>(body, bincode_config()).map_err(|e| match e {
            DecodeError::UnexpectedEnd { additional } => CodecError::Truncated {
                kind: M::KIND,
                detail: format!("{additional} more bytes needed"),
            },
            // The body is small; a length prefix inside it claims more.
            DecodeError::LimitExceeded => CodecError::Malformed {
                kind: M::KIND,
                path: "body".to_string(),
                detail: format!(
                    "a length prefix claims more than the {BINCODE_LIMIT}-byte limit in a {}-byte body",
                    body.len()
                ),
            },
            other => CodecError::Malformed {
                kind: M::KIND,
                path: "body".to_string(),
                detail: other.to_string(),
            },
        })?;
    if read != body.len() {
        return Err(CodecError::TrailingBytes {
            kind: M::KIND,
            extra: body.len() - read,
        });
    }
    Ok(msg)
}
