//! Publishing with confirms: every publish is `mandatory` and persistent, and
//! its confirm is awaited individually (lapin's `wait_for_confirms()` would
//! hide a nack). A returned message is a topology error, not a success.

use chrono::{DateTime, Utc};
use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, LongString},
    BasicProperties, Channel, Confirmation, PublisherConfirm,
};
use sundial_core::{
    codec::Encoded,
    protocol::{headers, timestamp},
};

pub use crate::error::PublishError;
use crate::{broker::properties, error::Error};

fn broker_err(exchange: &str, routing_key: &str) -> impl FnOnce(lapin::Error) -> PublishError {
    let operation = format!("basic.publish to {exchange}/{routing_key}");
    move |source| PublishError::Broker(Error::broker(operation)(source))
}

/// Hands one message with Sundial's properties to the connection. Returns
/// the confirm to await.
async fn send(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    enc: &Encoded,
) -> Result<PublisherConfirm, PublishError> {
    send_raw(ch, exchange, routing_key, &enc.body, properties(&enc.meta)).await
}

/// Hands one message to the connection, `mandatory`, with the given
/// properties (a dead letter keeps the original ones).
async fn send_raw(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<PublisherConfirm, PublishError> {
    ch.basic_publish(
        exchange.into(),
        routing_key.into(),
        BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        },
        body,
        props,
    )
    .await
    .map_err(broker_err(exchange, routing_key))
}

/// Awaits one confirm; anything but a plain ack is an error.
async fn confirmed(
    confirm: PublisherConfirm,
    exchange: &str,
    routing_key: &str,
) -> Result<(), PublishError> {
    match confirm.await.map_err(broker_err(exchange, routing_key))? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::NotRequested => Err(PublishError::NotConfirmed),
        Confirmation::Ack(Some(_)) => Err(PublishError::Returned {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
        }),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
    }
}

/// Publishes and awaits the broker's confirm. The channel must be in
/// confirm mode. `on_sent` runs once the message is handed to the
/// connection (before the confirm), for timing.
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    enc: &Encoded,
    on_sent: impl FnOnce(),
) -> Result<(), PublishError> {
    let confirm = send(ch, exchange, routing_key, enc).await?;
    on_sent();
    confirmed(confirm, exchange, routing_key).await
}

/// Publishes an event that may have no listener (not `mandatory`) and
/// returns its confirm, so a caller can pipeline it with other work and
/// await it before acking what caused it.
pub async fn publish_event(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    enc: &Encoded,
) -> Result<impl std::future::Future<Output = Result<(), PublishError>>, PublishError> {
    let confirm = ch
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            &enc.body,
            properties(&enc.meta),
        )
        .await
        .map_err(broker_err(exchange, routing_key))?;
    let (exchange, routing_key) = (exchange.to_string(), routing_key.to_string());
    Ok(async move { confirmed(confirm, &exchange, &routing_key).await })
}

/// Publishes a raw body with explicit properties and awaits its confirm.
pub async fn publish_raw_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), PublishError> {
    let confirm = send_raw(ch, exchange, routing_key, body, props).await?;
    confirmed(confirm, exchange, routing_key).await
}

/// Publishes every message, then awaits every confirm (pipelined, in
/// order). Fails on the first message that was not confirmed.
pub async fn publish_all_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    messages: &[Encoded],
) -> Result<(), PublishError> {
    let mut confirms = Vec::with_capacity(messages.len());
    for enc in messages {
        confirms.push(send(ch, exchange, routing_key, enc).await?);
    }
    for c in confirms {
        confirmed(c, exchange, routing_key).await?;
    }
    Ok(())
}

/// The most bytes of the original message's headers a dead letter keeps
/// (RabbitMQ's frame limit is 128 KiB; Sundial's own reason headers take at
/// most a few `MAX_TEXT`s).
const KEPT_HEADERS_MAX: usize = 96 * 1024;

/// About how many bytes `t` takes on the wire (strings and nested tables
/// counted, other values as 16).
fn table_size(t: &lapin::types::FieldTable) -> usize {
    fn value(v: &lapin::types::AMQPValue) -> usize {
        use lapin::types::AMQPValue;
        match v {
            AMQPValue::LongString(s) => s.as_bytes().len() + 5,
            AMQPValue::ShortString(s) => s.as_str().len() + 2,
            AMQPValue::FieldTable(t) => table_size(t),
            AMQPValue::FieldArray(a) => a.as_slice().iter().map(value).sum::<usize>() + 5,
            AMQPValue::ByteArray(b) => b.as_slice().len() + 5,
            _ => 16,
        }
    }
    t.inner()
        .iter()
        .map(|(k, v)| k.as_str().len() + 1 + value(v))
        .sum::<usize>()
        + 4
}

/// A text header value cut to `headers::MAX_TEXT` bytes (a longer one could
/// pass the broker's frame size and close the whole connection); other
/// values as they are.
pub(crate) fn bounded(v: lapin::types::AMQPValue) -> lapin::types::AMQPValue {
    use lapin::types::{AMQPValue, LongString};
    use sundial_core::protocol::headers::{bounded_to, MAX_TEXT};
    match v {
        AMQPValue::LongString(s) if s.as_bytes().len() > MAX_TEXT => {
            let text = String::from_utf8_lossy(s.as_bytes());
            AMQPValue::LongString(LongString::from(bounded_to(&text, MAX_TEXT).as_ref()))
        }
        v => v,
    }
}

/// Why a message is dead-lettered: the `x-sundial-*` headers of
/// docs/protocol.md §9, built in one place for the worker (an attempt that
/// failed for good), the control consumer (a command it could not take)
/// and a timer shard (a fire no queue would take).
#[derive(Debug, Clone, Default)]
pub struct DeadReason<'a> {
    /// `x-sundial-error`: why.
    pub error: &'a str,
    /// `x-sundial-attempts`: attempts made (0: it never ran).
    pub attempts: u32,
    /// `x-sundial-first-failure` and `x-sundial-last-failure`.
    pub failures: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// `x-sundial-worker`: the worker or scheduler node that gave up.
    pub by: Option<&'a str>,
    /// `x-sundial-pool`: the pool the fire was for (replay routes by it).
    pub pool: Option<&'a str>,
}

impl DeadReason<'_> {
    /// The headers, each text cut to `headers::MAX_TEXT` bytes.
    pub fn headers(&self) -> Vec<(&'static str, AMQPValue)> {
        let text = |s: &str| bounded(AMQPValue::LongString(LongString::from(s)));
        let mut h = vec![
            (headers::ERROR, text(self.error)),
            (
                headers::ATTEMPTS,
                AMQPValue::LongLongInt(i64::from(self.attempts)),
            ),
        ];
        if let Some((first, last)) = self.failures {
            h.push((headers::FIRST_FAILURE, text(&timestamp(first))));
            h.push((headers::LAST_FAILURE, text(&timestamp(last))));
        }
        if let Some(by) = self.by {
            h.push((headers::WORKER, text(by)));
        }
        if let Some(pool) = self.pool {
            h.push((headers::POOL, text(pool)));
        }
        h
    }
}

/// Republishes a message to the dead-letter exchange with its original
/// properties plus the headers of `reason`, persistent, and awaits the
/// confirm. An `Err` means it was not stored: the caller must not ack the
/// original.
pub async fn dead_letter(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: &BasicProperties,
    reason: &DeadReason<'_>,
) -> Result<(), Error> {
    let mut h = props.headers().clone().unwrap_or_default();
    let kept = table_size(&h);
    if kept > KEPT_HEADERS_MAX {
        // The original's headers could fit a frame that ours no longer fit
        // beside them: keep only what Sundial adds (the body is kept).
        tracing::warn!(
            bytes = kept,
            "dead letter: the original headers are too large to keep"
        );
        h = lapin::types::FieldTable::default();
    }
    for (k, v) in reason.headers() {
        h.insert(k.into(), v);
    }
    let props = props.clone().with_headers(h).with_delivery_mode(2);
    publish_raw_confirmed(ch, exchange, routing_key, body, props)
        .await
        .map_err(Error::not_stored("dead letter"))
}
