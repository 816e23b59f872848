//! Publishing with confirms: every publish is `mandatory` and persistent, and
//! its confirm is awaited individually (lapin's `wait_for_confirms()` would
//! hide a nack). A returned message is a topology error, not a success.

use lapin::{options::BasicPublishOptions, BasicProperties, Channel, Confirmation};
use sundial_core::codec::Encoded;

use crate::{broker::properties, error::Error};

/// Why a confirmed publish did not land.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker nacked the message")]
    Nacked,
    /// A bug: the channel is not in confirm mode, so nothing is known.
    #[error("publisher confirms are not enabled on this channel")]
    NotConfirmed,
    #[error("message returned unroutable (no queue bound for {exchange}/{routing_key})")]
    Returned {
        exchange: String,
        routing_key: String,
    },
    #[error(transparent)]
    Broker(#[from] Error),
}

/// Publishes and awaits the broker's confirm. The channel must be in
/// confirm mode.
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    enc: &Encoded,
    extra: impl FnOnce(BasicProperties) -> BasicProperties,
) -> Result<(), PublishError> {
    let broker = |source| Error::Broker {
        operation: format!("basic.publish to {exchange}/{routing_key}"),
        source,
    };
    let confirm = ch
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &enc.body,
            extra(properties(&enc.meta)),
        )
        .await
        .map_err(broker)?
        .await
        .map_err(broker)?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::NotRequested => Err(PublishError::NotConfirmed),
        Confirmation::Ack(Some(_)) => Err(PublishError::Returned {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
        }),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
    }
}

/// Publishes every message, then awaits every confirm (pipelined, in
/// order). Fails on the first message that was not confirmed.
pub async fn publish_all_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    messages: &[Encoded],
) -> Result<(), PublishError> {
    let broker = |source| Error::Broker {
        operation: format!("basic.publish to {exchange}/{routing_key}"),
        source,
    };
    let mut confirms = Vec::with_capacity(messages.len());
    for enc in messages {
        let c = ch
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &enc.body,
                properties(&enc.meta),
            )
            .await
            .map_err(broker)?;
        confirms.push(c);
    }
    for c in confirms {
        match c.await.map_err(broker)? {
            Confirmation::Ack(None) => {}
            Confirmation::NotRequested => return Err(PublishError::NotConfirmed),
            Confirmation::Ack(Some(_)) => {
                return Err(PublishError::Returned {
                    exchange: exchange.to_string(),
                    routing_key: routing_key.to_string(),
                })
            }
            Confirmation::Nack(_) => return Err(PublishError::Nacked),
        }
    }
    Ok(())
}
