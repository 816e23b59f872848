//! `codec::Meta` ⇄ AMQP properties and headers: what Sundial writes on
//! every message (persistent, typed, versioned, with a message id and a
//! timestamp) and how it reads them back.

use lapin::{
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties,
};
use sundial_core::{codec::Meta, protocol::VERSION_HEADER};

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// Persistent properties carrying `meta`.
pub fn properties(meta: &Meta) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(v) = meta.version {
        headers.insert(VERSION_HEADER.into(), AMQPValue::LongLongInt(v));
    }
    let mut p = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers);
    if let Some(k) = &meta.kind {
        p = p.with_type(ShortString::from(k.as_str()));
    }
    if let Some(ct) = &meta.content_type {
        p = p.with_content_type(ShortString::from(ct.as_str()));
    }
    // The message id: the natural one (a fire id), else unique to this
    // process; the timestamp: when it is sent.
    let id = meta.message_id.clone().unwrap_or_else(generated_id);
    p = p
        .with_message_id(ShortString::from(id.as_str()))
        .with_timestamp(meta.timestamp.unwrap_or_else(now_secs));
    p
}

/// Encodes `msg` (core's pure codec) and stamps what needs the clock and
/// the process: a unique message id when the message has no natural one,
/// and the send time. For callers that need the id before publishing (a
/// correlation id, the registry recognising its own records).
pub fn encode_stamped<M: sundial_core::protocol::Message>(
    msg: &M,
) -> Result<sundial_core::codec::Encoded, sundial_core::CodecError> {
    let mut enc = sundial_core::codec::encode(msg)?;
    if enc.meta.message_id.is_none() {
        enc.meta.message_id = Some(generated_id());
    }
    enc.meta.timestamp.get_or_insert_with(now_secs);
    Ok(enc)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A process-unique id for messages without a natural one:
/// `{pid}-{start nanos}-{counter}`.
fn generated_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{start:x}-{n}", std::process::id())
}

/// Reads `meta` from received properties. The version header is accepted as
/// any AMQP integer type, or a decimal string, because clients in other
/// languages encode integers differently.
pub fn meta_of(props: &BasicProperties) -> Meta {
    let version = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(VERSION_HEADER).and_then(integer));
    Meta {
        kind: props.kind().as_ref().map(|s| s.to_string()),
        content_type: props.content_type().as_ref().map(|s| s.to_string()),
        message_id: props.message_id().as_ref().map(|s| s.to_string()),
        timestamp: *props.timestamp(),
        version,
    }
}

/// A string header (long or short string) of `props`, if present.
pub fn header_string(props: &BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

pub fn integer(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        _ => None,
    }
}

/// A `FieldTable` from topology arguments.
pub fn field_table(args: &sundial_core::topology::Args) -> FieldTable {
    use sundial_core::topology::ArgValue;
    let mut t = FieldTable::default();
    for (k, v) in args {
        let value = match v {
            ArgValue::Str(s) => AMQPValue::LongString(LongString::from(s.as_str())),
            ArgValue::Int(n) => AMQPValue::LongLongInt(*n),
            ArgValue::Bool(b) => AMQPValue::Boolean(*b),
        };
        t.insert(ShortString::from(k.as_str()), value);
    }
    t
}
