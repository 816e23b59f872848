//! Errors of `sundial-web`.

/// Why the web application could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operations endpoint could not bind its address.
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: String, why: String },
    /// The Prometheus recorder could not be installed.
    #[error("metrics recorder: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    /// The thread that folds histogram samples could not start.
    #[error("metrics upkeep thread: {0}")]
    Upkeep(String),
}
