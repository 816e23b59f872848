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

use lapin::Connection;
use sundial_core::topology::Topology;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use sundial_amqp::history::{Message, Reader, StreamStart};
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
fn resume(last: &(u64, Option<String>), m: &Message) -> Resume {
    let (offset, id) = last;
    match m.offset {
        Some(o) if o == *offset && (id.is_none() || *id == m.id) => Resume::Same,
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
    let mut reader = Reader::open(conn, &topo.history_stream(), start, PREFETCH).await?;
    let mut skipped_log = Every::new(Duration::from_secs(60));
    let mut retain = tokio::time::interval(RETAIN_EVERY);
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => {
                reader.close("history index stopping").await;
                return Ok(Followed::Stopped);
            }
            _ = retain.tick() => {
                index.retain().await?;
                continue;
            }
            m = reader.next() => m?,
        };
        let mut messages = vec![first.ok_or(Error::stream_ended("history stream consumer"))?];
        while messages.len() < GROUP {
            match reader.ready().await? {
                Some(m) => messages.push(m),
                None => break,
            }
        }
        // Only the first message of a run is checked against the index.
        let mut skip = 0;
        if let Some(last) = last.take() {
            match resume(&last, &messages[0]) {
                Resume::Same => skip = 1,
                Resume::After => {}
                Resume::Other(why) => {
                    reader.close("history index rebuilding").await;
                    index.rebuild(stream, why).await?;
                    return Ok(Followed::Rebuilt);
                }
            }
        }
        let mut batches = Vec::with_capacity(messages.len());
        for m in messages.into_iter().skip(skip) {
            let Some(offset) = m.offset else {
                continue;
            };
            let (records, alerts, deliveries, audit) = match m.batch {
                Ok(b) => (b.records, b.alerts, b.deliveries, b.audit),
                Err(e) => {
                    metrics::counter!(m::HISTORY_SKIPPED_TOTAL).increment(1);
                    if let Some(held) = skipped_log.allow(std::time::Instant::now()) {
                        warn!(offset, error = %e, held_back = held, "history stream message not understood; skipped");
                    }
                    Default::default()
                }
            };
            batches.push(Batch {
                offset,
                id: m.id,
                records,
                alerts,
                deliveries,
                audit,
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
        // Waits while the writer is behind or failing: the reader acks
        // (gives the stream credit) only when asked for more, so the
        // stream sends no more meanwhile, and the records wait there.
        if !batches.is_empty() {
            index.write(batches, labels).await?;
        }
    }
}
