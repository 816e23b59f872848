//! What a scheduler reads before it fires anything: the registry (replayed
//! from the stream's first offset up to a marker it appends itself) and the
//! shard watermarks.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::{AMQPValue, FieldTable, ShortString},
    Connection,
};
use sundial_core::{
    codec::{decode, encode},
    protocol::{
        fire::Watermark,
        registry::{RegistryIndex, RegistryRecord},
    },
    registry::{Change, RegistryView},
    topology::Topology,
};
use tracing::{info, warn};

use sundial_amqp::{broker::meta_of, publish::publish_confirmed};

use crate::error::Error;

/// Stream credit while replaying: how many records may be unacked at once.
/// Records are small (one command) or large (an `upsert-many` batch or a
/// snapshot part: up to ~1,000 definitions, ~300 KB): 200 in flight keeps
/// the stream busy without buffering hundreds of megabytes in the client.
const REPLAY_PREFETCH: u16 = 200;
/// Acks go in batches (one `multiple` ack per this many records).
const ACK_BATCH: u64 = 50;

/// What replay learned besides the view.
pub(crate) struct Replayed {
    pub(crate) view: RegistryView,
    /// Bytes of records after the newest complete snapshot.
    pub(crate) bytes_since_snapshot: u64,
    /// When the newest complete snapshot was written, if any.
    pub(crate) last_snapshot: Option<DateTime<Utc>>,
    /// The stream consumer, positioned just after the sync marker: the
    /// registry follows it for records appended by other nodes.
    pub(crate) follow: lapin::Consumer,
    /// Its channel (kept open with it).
    pub(crate) follow_channel: lapin::Channel,
}

/// Replays `sundial.registry` into a fresh view: from the chunk of the newest
/// snapshot named in the index queue (a minute early, to be safe), or from
/// the first offset. Appends a `sync` marker first and reads until it, so
/// everything accepted before this start is in the view, and keeps the
/// consumer for the registry to follow.
pub(crate) async fn replay_registry(
    conn: &Connection,
    topo: &Topology,
    node: &str,
) -> Result<Replayed, Error> {
    let ch = sundial_amqp::broker::confirming_channel(conn).await?;
    let marker = format!(
        "{node}-{}",
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let enc = encode(&RegistryRecord::Sync { id: marker.clone() })?;
    let stream = topo.registry_stream();
    publish_confirmed(&ch, "", &stream, &enc, || {})
        .await
        .map_err(|e| Error::Registry {
            what: "cannot append the sync marker",
            source: Box::new(e),
        })?;

    ch.basic_qos(REPLAY_PREFETCH, BasicQosOptions::default())
        .await
        .map_err(Error::broker("basic.qos"))?;
    let index = sundial_amqp::watermark::read_last_value::<RegistryIndex>(
        conn,
        &topo.registry_index_queue(),
    )
    .await?;
    let mut args = FieldTable::default();
    let offset = match &index {
        // Stream chunks are found by timestamp to the second; start a
        // minute early: records before the snapshot are superseded by it.
        Some(ix) => {
            AMQPValue::Timestamp(u64::try_from(ix.written_at.timestamp() - 60).unwrap_or(0))
        }
        None => AMQPValue::LongString("first".into()),
    };
    args.insert(ShortString::from("x-stream-offset"), offset);
    let mut consumer = ch
        .basic_consume(
            stream.as_str().into(),
            format!("replay-{node}").into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .map_err(Error::broker("basic.consume registry"))?;

    let mut view = RegistryView::new(topo.shards);
    let mut read = 0u64;
    let mut bytes_since_snapshot = 0u64;
    let mut last_snapshot = None;
    let started = std::time::Instant::now();
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(Error::broker("registry delivery"))?;
        read += 1;
        let meta = meta_of(&delivery.properties);
        let done = match decode::<RegistryRecord>(&meta, &delivery.data) {
            Ok(RegistryRecord::Sync { id }) => id == marker,
            Ok(record) => {
                bytes_since_snapshot += delivery.data.len() as u64;
                match view.apply_owned(record) {
                    Ok(Change::Reloaded) => {
                        bytes_since_snapshot = 0;
                        last_snapshot = Some(delivery_time(&delivery).unwrap_or_else(Utc::now));
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "registry record skipped"),
                }
                false
            }
            Err(e) => {
                warn!(error = %e, "undecodable registry record skipped");
                false
            }
        };
        if done || read.is_multiple_of(ACK_BATCH) {
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .map_err(Error::broker("basic.ack registry"))?;
        }
        if done {
            break;
        }
    }
    view.end_replay();
    info!(
        records = read,
        jobs = view.len(),
        from_snapshot = index.as_ref().map(|i| i.snapshot_id.as_str()),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "registry replayed"
    );
    Ok(Replayed {
        view,
        bytes_since_snapshot,
        last_snapshot: last_snapshot.or(index.map(|i| i.written_at)),
        follow: consumer,
        follow_channel: ch,
    })
}

fn delivery_time(d: &lapin::message::Delivery) -> Option<DateTime<Utc>> {
    let secs = i64::try_from((*d.properties.timestamp())?).ok()?;
    DateTime::from_timestamp(secs, 0)
}

/// The instant misfires are counted from for a shard: its watermark, or, for
/// a shard that never fired, `now` (nothing was missed).
pub(crate) fn misfire_floor(wm: Option<&Watermark>, now: DateTime<Utc>) -> DateTime<Utc> {
    wm.map_or(now, |w| w.up_to.min(now))
}
