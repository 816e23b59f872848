//! `sundial-store`: the run-history index (ADR 0015). The history stream
//! `sundial.history` is the source of truth; a scheduler (or `sundial run`)
//! keeps this index of it on disk: one SQLite file, written by one thread,
//! bound to the stream it follows. No AMQP and no HTTP here: the scheduler
//! feeds it batches (`sundial_scheduler::ingest`), the web application
//! queries it.
//!
//! # Layout
//!
//! | module    | responsibility |
//! |-----------|----------------|
//! | [`index`] | `Index`: open (one file per process, locked), what it answers, `Batch` |
//! | `thread`  | the index thread: writes, retention, queries between writes, binding |
//! | `schema`  | the file's layout, migrations, the binding to a stream |
//! | `query`   | a page of runs, a job's summary |
//! | [`error`] | this crate's error type |

pub mod error;
pub mod index;
mod query;
mod schema;
mod thread;

pub use error::Error;
pub use index::{Batch, Index};

/// Opens the history index `settings` name for a scheduler, if enabled.
/// Held by another process (two schedulers on one host with the default
/// path): this one keeps none, said once. Any other failure (an unwritable
/// directory, a corrupt file): none either, and the process is not ready,
/// with the reason, until it is fixed and restarted.
pub fn open(
    settings: &sundial_core::settings::HistorySettings,
    health: &std::sync::Arc<sundial_runtime::Health>,
) -> Option<std::sync::Arc<Index>> {
    if !settings.enabled {
        return None;
    }
    match Index::open(settings, health.clone()) {
        Ok(index) => Some(index),
        Err(e @ crate::Error::Locked { .. }) => {
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
