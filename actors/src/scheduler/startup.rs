//! What a scheduler reads before it fires anything: the registry (replayed
//! from the stream's first offset up to a marker it appends itself) and the
//! shard watermarks.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions,
        BasicNackOptions, BasicQosOptions, ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
    Connection,
};
use sundial_core::{
    codec::{decode, encode},
    protocol::{fire::Watermark, registry::RegistryRecord},
    registry::RegistryView,
    topology::Topology,
};
use tracing::{info, warn};

use crate::{broker::meta_of, error::Error, publish::publish_confirmed};

/// Stream credit while replaying: how many records may be unacked at once.
/// Measured here: ~40k records/s through lapin at prefetch 2,000.
const REPLAY_PREFETCH: u16 = 2_000;
/// Acks go in batches (one `multiple` ack per this many records).
const ACK_BATCH: u64 = 500;

fn broker(operation: &str) -> impl FnOnce(lapin::Error) -> Error + '_ {
    move |source| Error::Broker {
        operation: operation.to_string(),
        source,
    }
}

/// Replays `sundial.registry` into a fresh view. Appends a `sync` marker
/// first and reads until it, so everything accepted before this start is in
/// the view.
pub(crate) async fn replay_registry(
    conn: &Connection,
    topo: &Topology,
    node: &str,
) -> Result<RegistryView, Error> {
    let ch = conn
        .create_channel()
        .await
        .map_err(broker("channel.open"))?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(broker("confirm.select"))?;
    let marker = format!(
        "{node}-{}",
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let enc = encode(&RegistryRecord::Sync { id: marker.clone() })
        .map_err(|e| Error::Codec(e.to_string()))?;
    let stream = topo.registry_stream();
    publish_confirmed(&ch, "", &stream, &enc, |p| p)
        .await
        .map_err(|e| Error::Registry(format!("cannot append the sync marker: {e}")))?;

    ch.basic_qos(REPLAY_PREFETCH, BasicQosOptions::default())
        .await
        .map_err(broker("basic.qos"))?;
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-stream-offset"),
        AMQPValue::LongString("first".into()),
    );
    let mut consumer = ch
        .basic_consume(
            stream.as_str().into(),
            format!("replay-{node}").into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .map_err(broker("basic.consume registry"))?;

    let mut view = RegistryView::default();
    let mut read = 0u64;
    let started = std::time::Instant::now();
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(broker("registry delivery"))?;
        read += 1;
        let meta = meta_of(&delivery.properties);
        let done = match decode::<RegistryRecord>(&meta, &delivery.data) {
            Ok(RegistryRecord::Sync { id }) => id == marker,
            Ok(record) => {
                if let Err(e) = view.apply(&record) {
                    warn!(error = %e, "registry record skipped");
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
                .map_err(broker("basic.ack registry"))?;
        }
        if done {
            break;
        }
    }
    let _ = ch
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    let _ = ch.close(200, "replayed".into()).await;
    info!(
        records = read,
        jobs = view.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "registry replayed"
    );
    Ok(view)
}

/// Reads the last watermark of `shard`, leaving it in its queue.
pub(crate) async fn read_watermark(
    conn: &Connection,
    topo: &Topology,
    shard: u32,
) -> Result<Option<Watermark>, Error> {
    let ch = conn
        .create_channel()
        .await
        .map_err(broker("channel.open"))?;
    let q = topo.watermark_queue(shard);
    let got = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(broker("basic.get watermark"))?;
    let wm = match got {
        None => None,
        Some(msg) => {
            let meta = meta_of(&msg.delivery.properties);
            let wm = decode::<Watermark>(&meta, &msg.delivery.data);
            msg.delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
                .map_err(broker("basic.nack watermark"))?;
            match wm {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!(shard, error = %e, "undecodable watermark ignored");
                    None
                }
            }
        }
    };
    let _ = ch.close(200, "read".into()).await;
    Ok(wm)
}

/// The instant misfires are counted from for a shard: its watermark, or, for
/// a shard that never fired, `now` (nothing was missed).
pub(crate) fn misfire_floor(wm: Option<&Watermark>, now: DateTime<Utc>) -> DateTime<Utc> {
    wm.map_or(now, |w| w.up_to.min(now))
}
