//! Run history (ADR 0015): workers record the start and outcome of every
//! attempt as run records, batched ([`record::Recorder`]) onto the stream
//! `sundial.history`, the source of truth; a scheduler (or `sundial run`)
//! keeps an index of it on disk ([`index::Index`], built by
//! [`ingest::ingest`]) and answers queries over HTTP ([`api`]).

pub mod api;
pub mod index;
pub mod ingest;
pub mod record;

use std::collections::{BTreeMap, HashMap};

pub use index::Index;
pub use record::Recorder;

/// "The labels of these jobs": asked of the scheduler's registry when a
/// batch is indexed, so a row keeps the labels its job had.
#[derive(actix::Message)]
#[rtype(result = "HashMap<String, BTreeMap<String, String>>")]
pub struct LabelsOf(pub Vec<String>);

/// Opens the history index `settings` name for a scheduler, if enabled.
/// Held by another process (two schedulers on one host with the default
/// path): this one keeps none, said once. Any other failure (an unwritable
/// directory, a corrupt file): none either, and the process is not ready,
/// with the reason, until it is fixed and restarted.
pub fn open(
    settings: &sundial_core::settings::HistorySettings,
    health: &std::sync::Arc<crate::http::Health>,
) -> Option<std::sync::Arc<Index>> {
    if !settings.enabled {
        return None;
    }
    match Index::open(settings, health.clone()) {
        Ok(index) => Some(index),
        Err(e @ crate::Error::HistoryLocked { .. }) => {
            tracing::warn!(error = %e, "this node keeps no history index");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "history index unavailable");
            health.set(index::HEALTH_PART, Some(e.to_string()));
            None
        }
    }
}

/// Which history stream an index follows, as text: the broker's addresses
/// (`host:port`, sorted: a cluster is the same whichever node answers), the
/// vhost and the stream's name. An index is bound to it
/// ([`Index::bind`]); a stream declared again under the same name is told
/// apart by its records ([`ingest`]).
pub fn stream_identity(
    broker: &sundial_core::settings::BrokerSettings,
    topo: &sundial_core::topology::Topology,
) -> String {
    let mut hosts = Vec::new();
    let mut vhost = String::from("?");
    for url in std::iter::once(&broker.url).chain(&broker.urls) {
        if let Ok(u) = url.parse::<lapin::uri::AMQPUri>() {
            hosts.push(format!("{}:{}", u.authority.host, u.authority.port));
            vhost = u.vhost;
        }
    }
    hosts.sort();
    hosts.dedup();
    // The vhost as a URL writes it (`/` is `%2f`).
    let vhost = vhost.replace('%', "%25").replace('/', "%2f");
    format!(
        "amqp://{}/{vhost} stream {}",
        hosts.join(","),
        topo.history_stream()
    )
}
