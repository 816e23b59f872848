//! Shard watermarks (semantics §3): one last-value queue per shard
//! (`sundial.watermark.{shard}`, max-length 1) holds the newest
//! `Watermark`. The timer shard writes it; a new owner, `sundial status`
//! and the ledger read it. The same last-value read serves the registry's
//! index queue.

use lapin::{
    options::{BasicGetOptions, BasicNackOptions},
    Channel, Connection,
};
use sundial_core::{
    codec::{decode, encode},
    protocol::fire::Watermark,
    topology::Topology,
};
use tracing::warn;

use crate::{
    broker::{meta_of, open_channel},
    error::Error,
    publish::publish_confirmed,
};

/// Reads the message of a last-value queue (max-length 1), leaving it there.
/// An undecodable message reads as none (said in a warning).
pub async fn read_last_value<M: sundial_core::protocol::Message>(
    conn: &Connection,
    queue: &str,
) -> Result<Option<M>, Error> {
    let ch = open_channel(conn).await?;
    let value = last_value_on(&ch, queue).await;
    // Closed on every path: a channel left open holds one of the
    // connection's ids for as long as the connection lives.
    let _ = ch.close(200, "read".into()).await;
    value
}

async fn last_value_on<M: sundial_core::protocol::Message>(
    ch: &lapin::Channel,
    queue: &str,
) -> Result<Option<M>, Error> {
    let got = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(Error::broker("basic.get last value"))?;
    Ok(match got {
        None => None,
        Some(msg) => {
            let decoded = decode::<M>(&meta_of(&msg.delivery.properties), &msg.delivery.data);
            msg.delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
                .map_err(Error::broker("basic.nack last value"))?;
            match decoded {
                Ok(v) => Some(v),
                Err(e) => {
                    warn!(queue, error = %e, "undecodable last value ignored");
                    None
                }
            }
        }
    })
}

/// Reads the last watermark of `shard`, leaving it in its queue.
pub async fn read(
    conn: &Connection,
    topo: &Topology,
    shard: u32,
) -> Result<Option<Watermark>, Error> {
    read_last_value(conn, &topo.watermark_queue(shard)).await
}

/// Writes `wm` to its shard's queue and awaits the confirm (`ch` is in
/// confirm mode). The queue keeps only the newest.
pub async fn write(ch: &Channel, topo: &Topology, wm: &Watermark) -> Result<(), Error> {
    let enc = encode(wm)?;
    publish_confirmed(ch, "", &topo.watermark_queue(wm.shard), &enc, || {})
        .await
        .map_err(Error::not_stored("watermark"))
}
