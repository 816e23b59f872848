//! The audit trail's one writer (ADR 0023): an entry goes to the registry
//! stream (the append-only, replicated record of what was done to the
//! jobs) and to the history stream (which the history index reads, for
//! `GET /api/v1/audit`). Both publishes are confirmed; each is bounded.

use std::time::Duration;

use lapin::Channel;
use sundial_core::{
    protocol::{audit::AuditEntry, registry::RegistryRecord, run::RunBatch},
    topology::Topology,
};

use crate::{error::Error, props::encode_stamped, publish::publish_confirmed};

/// How long each of the two appends may take.
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Appends `entry` to both streams over `ch` (a confirm-mode channel).
pub async fn record(ch: &Channel, topo: &Topology, entry: AuditEntry) -> Result<(), Error> {
    let registry = encode_stamped(&RegistryRecord::Audit {
        entry: entry.clone(),
    })?;
    let history = encode_stamped(&RunBatch {
        audit: vec![entry],
        ..RunBatch::of(Vec::new())
    })?;
    let stream = topo.registry_stream();
    let exchange = topo.history_exchange();
    for (exchange, key, enc, what) in [
        (
            "",
            stream.as_str(),
            &registry,
            "audit entry (registry stream)",
        ),
        (
            exchange.as_str(),
            "",
            &history,
            "audit entry (history stream)",
        ),
    ] {
        tokio::time::timeout(
            APPEND_TIMEOUT,
            publish_confirmed(ch, exchange, key, enc, || {}),
        )
        .await
        .map_err(|_| Error::ConnectionLost("audit entry: no confirm within 10s"))?
        .map_err(Error::not_stored(what))?;
    }
    Ok(())
}
