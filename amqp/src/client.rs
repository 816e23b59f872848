//! A control-protocol client: publishes a command to `sundial.control` and
//! waits (bounded) for the reply on RabbitMQ's direct reply-to pseudo-queue.
//! It speaks exactly docs/protocol.md §3, like a client in any language.

use std::{collections::BTreeMap, time::Duration};

use futures_util::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, BasicPublishOptions},
    types::{FieldTable, ShortString},
    Connection,
};
use sundial_core::{
    codec::decode,
    protocol::control::{Command, Reply, LIST_MAX_LIMIT},
    topology::Topology,
};

use crate::{
    broker::{meta_of, properties},
    error::Error,
};

/// RabbitMQ's direct reply-to: no queue to declare or clean up.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Why a command got no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Broker(#[from] Error),
    #[error("no reply within {0:?}: is a scheduler running?")]
    Timeout(Duration),
    #[error("cannot deliver the command ({0}); has `sundial topology apply` run on this vhost and prefix?")]
    NoControlQueue(String),
    #[error("unreadable reply: {0}")]
    BadReply(String),
    /// The scheduler answered with an error: `field: message`.
    #[error("{0}")]
    Refused(String),
}

/// Every job whose labels include all of `labels`, as `list` describes
/// them, fetched page by page (`after` = the previous page's `next_after`,
/// pages of [`LIST_MAX_LIMIT`]), so a million jobs never make one reply.
pub async fn list_all(
    conn: &Connection,
    topo: &Topology,
    labels: &BTreeMap<String, String>,
    timeout: Duration,
    key: Option<&[u8]>,
) -> Result<Vec<serde_json::Value>, ClientError> {
    let mut jobs = Vec::new();
    let mut after = None;
    loop {
        let cmd = Command::List {
            labels: labels.clone(),
            q: None,
            pool: None,
            paused: None,
            after: after.take(),
            limit: Some(LIST_MAX_LIMIT),
        };
        let reply = call_signed(conn, topo, &cmd, timeout, key).await?;
        if let (false, Some(e)) = (reply.ok, &reply.error) {
            return Err(ClientError::Refused(format!("{}: {}", e.field, e.message)));
        }
        let mut result = reply.result.unwrap_or_default();
        if let Some(serde_json::Value::Array(page)) =
            result.get_mut("jobs").map(serde_json::Value::take)
        {
            jobs.extend(page);
        }
        match result.get("next_after").and_then(serde_json::Value::as_str) {
            Some(next) => after = Some(next.to_string()),
            None => return Ok(jobs),
        }
    }
}

/// Sends `cmd` and waits up to `timeout` for its reply.
pub async fn call(
    conn: &Connection,
    topo: &Topology,
    cmd: &Command,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    call_signed(conn, topo, cmd, timeout, None).await
}

/// As [`call`], signing the command with `key` when given
/// (`control.hmac_key`; see `sundial_core::sign`).
pub async fn call_signed(
    conn: &Connection,
    topo: &Topology,
    cmd: &Command,
    timeout: Duration,
    key: Option<&[u8]>,
) -> Result<Reply, ClientError> {
    let ch = crate::broker::confirming_channel(conn).await?;
    let mut replies = ch
        .basic_consume(
            DIRECT_REPLY_TO.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("basic.consume reply-to"))?;
    let enc =
        crate::broker::encode_stamped(cmd).map_err(|e| ClientError::BadReply(e.to_string()))?;
    let correlation = enc.meta.message_id.clone().unwrap_or_default();
    let mut props = properties(&enc.meta)
        .with_reply_to(ShortString::from(DIRECT_REPLY_TO))
        .with_correlation_id(ShortString::from(correlation.as_str()));
    if let Some(key) = key {
        let at = chrono::Utc::now().timestamp();
        // The message id is unique to this command (process id, start time,
        // counter): it is the nonce, so an honest repeat is a new command.
        let nonce = correlation.as_str();
        let mut h = props.headers().clone().unwrap_or_default();
        h.insert(
            ShortString::from(sundial_core::sign::SIGNATURE_HEADER),
            lapin::types::AMQPValue::LongString(
                sundial_core::sign::sign_command(key, at, Some(nonce), &enc.body)
                    .as_str()
                    .into(),
            ),
        );
        h.insert(
            ShortString::from(sundial_core::sign::NONCE_HEADER),
            lapin::types::AMQPValue::LongString(nonce.into()),
        );
        h.insert(
            ShortString::from(sundial_core::sign::SIGNED_AT_HEADER),
            lapin::types::AMQPValue::LongLongInt(at),
        );
        props = props.with_headers(h);
    }
    // Confirmed and mandatory: a missing control exchange or queue is
    // reported at once instead of as a timeout.
    let confirm = ch
        .basic_publish(
            topo.control_exchange().as_str().into(),
            "".into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &enc.body,
            props,
        )
        .await
        .map_err(Error::broker("basic.publish command"))?
        .await
        .map_err(|e| ClientError::NoControlQueue(e.to_string()))?;
    match confirm {
        lapin::Confirmation::Ack(None) => {}
        lapin::Confirmation::Ack(Some(ret)) => {
            return Err(ClientError::NoControlQueue(format!(
                "returned by the broker: {} {}",
                ret.reply_code, ret.reply_text
            )))
        }
        other => {
            let what = if other.is_nack() {
                "nacked by the broker"
            } else {
                "not confirmed"
            };
            return Err(ClientError::NoControlQueue(what.into()));
        }
    }
    let wait = async {
        while let Some(d) = replies.next().await {
            let d = d.map_err(Error::broker("reply delivery"))?;
            if d.properties.correlation_id().as_ref().map(|c| c.as_str())
                != Some(correlation.as_str())
            {
                continue;
            }
            let meta = meta_of(&d.properties);
            return decode::<Reply>(&meta, &d.data)
                .map_err(|e| ClientError::BadReply(e.to_string()));
        }
        Err(ClientError::BadReply("reply consumer ended".into()))
    };
    let result = tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?;
    let _ = ch.close(200, "done".into()).await;
    result
}
