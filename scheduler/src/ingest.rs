//! `ingest`: follows the history stream into the index, from the offset the
//! index has reached (the first record kept, for a new index), after
//! checking that the index was built from this very stream. A message
//! that does not decode (a foreign publisher, a newer version) is skipped,
//! counted and logged once a minute; it never stops the index.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures_util::{FutureExt, StreamExt};
use lapin::{options::BasicAckOptions, Connection};
use sundial_core::{codec::decode, protocol::run::RunBatch, topology::Topology};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use sundial_amqp::broker::{consume_stream, meta_of, stream_offset, StreamStart};
use sundial_runtime::{metrics as m, ratelimit::Every};
use sundial_store::{Batch, Index};

use crate::error::Error;

/// "The labels of these jobs": asked of the scheduler's registry when a
/// batch is indexed, so a row keeps the labels its job had.
#[derive(actix::Message)]
#[rtype(result = "HashMap<String, BTreeMap<String, String>>")]
pub struct LabelsOf(pub Vec<String>);

/// Stream messages in flight to this consumer.
const PREFETCH: u16 = 500;
/// Stream messages written in one transaction, at most.
const GROUP: usize = 200;
/// How often the retention runs.
const RETAIN_EVERY: Duration = Duration::from_secs(60);

/// Indexes the history stream until `shutdown` (Ok) or the channel fails.
/// `stream` names the stream's origin (the broker's addresses, the vhost
/// and the stream's name): the index is bound to it, and emptied and
/// rebuilt when it was built from another one ([`Index::bind`]).
pub async fn ingest(
    conn: &Connection,
    topo: &Topology,
    stream: &str,
    index: Arc<Index>,
    labels: Option<actix::Recipient<LabelsOf>>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    index.bind(stream).await?;
    loop {
        match follow(conn, topo, stream, &index, labels.as_ref(), &shutdown).await? {
            Followed::Stopped => return Ok(()),
            // Emptied: read the stream again from its first record.
            Followed::Rebuilt => continue,
        }
    }
}

/// How [`follow`] ended without an error.
enum Followed {
    Stopped,
    Rebuilt,
}

/// What the first delivery says about the stream the index was built from.
enum Resume {
    /// The record at the index's last offset, already indexed: skip it.
    Same,
    /// Records past the index's last offset (retention dropped that one).
    After,
    /// Another stream under the same name (recreated): rebuild, saying why.
    Other(String),
}

/// Checks the first delivery against the last record indexed, `(offset,
/// message id)`. The consumer starts at that offset, so the same stream
/// delivers that very record first (or a later one, if retention dropped
/// it); a stream declared again numbers its records from 0, so it delivers
/// a lower offset, or another message at that offset.
fn resume(last: &(u64, Option<String>), d: &lapin::message::Delivery) -> Resume {
    let (offset, id) = last;
    let got = d.properties.message_id().as_ref().map(|s| s.to_string());
    match stream_offset(d) {
        Some(o) if o == *offset && (id.is_none() || *id == got) => Resume::Same,
        Some(o) if o == *offset => Resume::Other(format!(
            "the record at offset {o}, where the index stopped, is another one: the stream was declared again"
        )),
        Some(o) if o < *offset => Resume::Other(format!(
            "the stream's records end before offset {offset}, where the index stopped (got {o}): the stream was declared again"
        )),
        _ => Resume::After,
    }
}

async fn follow(
    conn: &Connection,
    topo: &Topology,
    stream: &str,
    index: &Index,
    labels: Option<&actix::Recipient<LabelsOf>>,
    shutdown: &CancellationToken,
) -> Result<Followed, Error> {
    let mut last = index.last_indexed().await?;
    let start = match &last {
        Some((o, _)) => StreamStart::Offset(*o),
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
                return Ok(Followed::Stopped);
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
        // Only the first delivery of a run is checked against the index.
        let mut skip = 0;
        if let Some(last) = last.take() {
            match resume(&last, &deliveries[0]) {
                Resume::Same => skip = 1,
                Resume::After => {}
                Resume::Other(why) => {
                    let _ = ch.close(200, "history index rebuilding".into()).await;
                    index.rebuild(stream, why).await?;
                    return Ok(Followed::Rebuilt);
                }
            }
        }
        let mut batches = Vec::with_capacity(deliveries.len());
        for d in deliveries.iter().skip(skip) {
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
            let id = d.properties.message_id().as_ref().map(|s| s.to_string());
            batches.push(Batch {
                offset,
                id,
                records,
            });
        }
        let jobs: HashSet<String> = batches
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.job_id.clone()))
            .collect();
        let labels = match (labels, jobs.is_empty()) {
            (Some(registry), false) => registry
                .send(LabelsOf(jobs.into_iter().collect()))
                .await
                .unwrap_or_default(),
            _ => Default::default(),
        };
        // Waits while the writer is behind or failing: unacked, the stream
        // sends no more, and the records wait there.
        if !batches.is_empty() {
            index.write(batches, labels).await?;
        }
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
        None => Err(Error::stream_ended("history stream consumer")),
    }
}
