//! `ingest`: follows the history stream into the index, from the offset the
//! index has reached (the first record kept, for a new index). A message
//! that does not decode (a foreign publisher, a newer version) is skipped,
//! counted and logged once a minute; it never stops the index.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures_util::{FutureExt, StreamExt};
use lapin::{options::BasicAckOptions, Connection};
use sundial_core::{codec::decode, protocol::run::RunBatch, topology::Topology};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    index::{Batch, Index},
    LabelsOf,
};
use crate::{
    broker::{consume_stream, meta_of, stream_offset, StreamStart},
    error::Error,
    metrics as m,
    ratelimit::Every,
};

/// Stream messages in flight to this consumer.
const PREFETCH: u16 = 500;
/// Stream messages written in one transaction, at most.
const GROUP: usize = 200;
/// How often the retention runs.
const RETAIN_EVERY: Duration = Duration::from_secs(60);

/// Indexes the history stream until `shutdown` (Ok) or the channel fails.
pub async fn ingest(
    conn: &Connection,
    topo: &Topology,
    index: Arc<Index>,
    labels: Option<actix::Recipient<LabelsOf>>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let start = match index.resume_offset().await? {
        Some(o) => StreamStart::Offset(o),
        None => StreamStart::First,
    };
    info!(path = %index.path().display(), ?start, "history index following the stream");
    let (ch, mut consumer) = consume_stream(conn, &topo.history_stream(), start, PREFETCH).await?;
    let mut skipped_log = Every::new(Duration::from_secs(60));
    let mut retain = tokio::time::interval(RETAIN_EVERY);
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => {
                let _ = ch.close(200, "history index stopping".into()).await;
                return Ok(());
            }
            _ = retain.tick() => {
                index.retain().await?;
                continue;
            }
            d = consumer.next() => d,
        };
        let mut deliveries = vec![next_delivery(first)?];
        while deliveries.len() < GROUP {
            match consumer.next().now_or_never() {
                Some(d) => deliveries.push(next_delivery(d)?),
                None => break,
            }
        }
        let mut batches = Vec::with_capacity(deliveries.len());
        for d in &deliveries {
            let Some(offset) = stream_offset(d) else {
                continue;
            };
            let records = match decode::<RunBatch>(&meta_of(&d.properties), &d.data) {
                Ok(b) => b.records,
                Err(e) => {
                    metrics::counter!(m::HISTORY_SKIPPED_TOTAL).increment(1);
                    if let Some(held) = skipped_log.allow(std::time::Instant::now()) {
                        warn!(offset, error = %e, held_back = held, "history stream message not understood; skipped");
                    }
                    Vec::new()
                }
            };
            batches.push(Batch { offset, records });
        }
        let jobs: HashSet<String> = batches
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.job_id.clone()))
            .collect();
        let labels = match (&labels, jobs.is_empty()) {
            (Some(registry), false) => registry
                .send(LabelsOf(jobs.into_iter().collect()))
                .await
                .unwrap_or_default(),
            _ => Default::default(),
        };
        // Waits while the writer is behind or failing: unacked, the stream
        // sends no more, and the records wait there.
        index.write(batches, labels).await?;
        if let Some(last) = deliveries.last() {
            last.acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .map_err(Error::broker("basic.ack history"))?;
        }
    }
}

fn next_delivery(
    d: Option<Result<lapin::message::Delivery, lapin::Error>>,
) -> Result<lapin::message::Delivery, Error> {
    match d {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(Error::broker("history delivery")(e)),
        None => Err(Error::StreamEnded("history stream consumer")),
    }
}
