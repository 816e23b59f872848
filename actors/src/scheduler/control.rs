//! The control consumer: reads `sundial.control`, has the Registry execute
//! each command, replies to `reply_to` with the same `correlation_id`, and
//! dead-letters every refused command with the reason. Bad input never stops
//! it; every delivery is acked exactly once, after its reply and dead letter.

use actix::Addr;
use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Connection,
};
use sundial_core::{
    codec::{decode, encode},
    protocol::{
        control::{Command, Reply, ReplyError},
        headers,
    },
    topology::{Topology, CONTROL_DEAD_KEY},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::registry::{Execute, Registry};
use crate::{broker::meta_of, error::Error, publish::publish_raw_confirmed};

/// Commands read ahead of the one being executed.
const CONTROL_PREFETCH: u16 = 16;

/// Consumes until `shutdown` is cancelled (`Ok`) or the channel fails (`Err`).
pub(crate) async fn run(
    conn: &Connection,
    topo: &Topology,
    node: &str,
    registry: Addr<Registry>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let ch = crate::broker::confirming_channel(conn).await?;
    ch.basic_qos(CONTROL_PREFETCH, BasicQosOptions::default())
        .await
        .map_err(Error::broker("basic.qos"))?;
    let mut consumer = ch
        .basic_consume(
            topo.control_queue().as_str().into(),
            format!("control-{node}").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("basic.consume control"))?;
    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => {
                // Closed here, not by drop: a drop-close racing the
                // connection's close makes lapin report a connection error.
                let _ = ch.close(200, "control stopping".into()).await;
                return Ok(());
            }
            d = consumer.next() => d,
        };
        let Some(delivery) = delivery else {
            return Err(Error::ConnectionLost("control consumer ended".into()));
        };
        let delivery = delivery.map_err(Error::broker("control delivery"))?;
        handle(&ch, topo, &registry, &delivery).await?;
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(Error::broker("basic.ack control"))?;
    }
}

async fn handle(
    ch: &Channel,
    topo: &Topology,
    registry: &Addr<Registry>,
    d: &Delivery,
) -> Result<(), Error> {
    let meta = meta_of(&d.properties);
    let reply = match decode::<Command>(&meta, &d.data) {
        Ok(cmd) => registry
            .send(Execute(cmd))
            .await
            .map_err(|e| Error::ConnectionLost(format!("registry actor gone: {e}")))?,
        Err(e) => Reply::error(
            None,
            ReplyError {
                field: e.field(),
                message: e.to_string(),
            },
        ),
    };
    let command = reply.command.clone().unwrap_or_else(|| "?".into());
    let outcome = if reply.ok { "ok" } else { "error" };
    metrics::counter!(crate::metrics::CONTROL_COMMANDS_TOTAL, "command" => command.clone(), "outcome" => outcome).increment(1);
    if let Some(err) = &reply.error {
        if !reply.ok {
            dead_letter(ch, topo, d, &format!("{}: {}", err.field, err.message)).await?;
        }
    }
    match d.properties.reply_to() {
        Some(reply_to) => {
            send_reply(
                ch,
                reply_to.as_str(),
                d.properties.correlation_id().clone(),
                &reply,
            )
            .await
        }
        None => {
            if reply.ok {
                info!(command = %command, "control command done (no reply_to)");
            } else {
                warn!(command = %command, error = ?reply.error, "control command refused (no reply_to)");
            }
        }
    }
    Ok(())
}

/// Republishes the command to the dead-letter exchange with the reason.
async fn dead_letter(
    ch: &Channel,
    topo: &Topology,
    d: &Delivery,
    reason: &str,
) -> Result<(), Error> {
    let mut h = d.properties.headers().clone().unwrap_or_default();
    h.insert(
        ShortString::from(headers::ERROR),
        AMQPValue::LongString(LongString::from(reason)),
    );
    h.insert(
        ShortString::from(headers::ATTEMPTS),
        AMQPValue::LongLongInt(1),
    );
    let props = d.properties.clone().with_headers(h).with_delivery_mode(2);
    // Not confirmed: fail, so the delivery is not acked and comes back.
    publish_raw_confirmed(ch, &topo.dead_exchange(), CONTROL_DEAD_KEY, &d.data, props)
        .await
        .map_err(|e| Error::DeadLetter(e.to_string()))?;
    warn!(reason, "control command dead-lettered");
    Ok(())
}

async fn send_reply(
    ch: &Channel,
    reply_to: &str,
    correlation_id: Option<ShortString>,
    reply: &Reply,
) {
    let Ok(enc) = encode(reply) else { return };
    let mut props: BasicProperties = crate::broker::properties(&enc.meta).with_delivery_mode(1);
    if let Some(c) = correlation_id {
        props = props.with_correlation_id(c);
    }
    // Not mandatory and not awaited: the client may have gone away, which
    // must not block the control queue.
    if let Err(e) = ch
        .basic_publish(
            "".into(),
            reply_to.into(),
            BasicPublishOptions::default(),
            &enc.body,
            props,
        )
        .await
    {
        warn!(reply_to, error = %e, "reply not sent");
    }
}
