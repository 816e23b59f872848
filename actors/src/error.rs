//! Errors of `sundial-actors`.

/// What went wrong talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Could not open a connection or channel.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The broker URL with its password masked.
        url: String,
        #[source]
        source: lapin::Error,
    },
    /// An existing exchange or queue has other arguments than Sundial
    /// declares; `detail` is the broker's message naming the argument.
    #[error("{what} \"{name}\" already exists with different settings: {detail}")]
    Conflict {
        what: &'static str,
        name: String,
        detail: String,
    },
    /// Any other broker error during an operation.
    #[error("{operation} failed: {source}")]
    Broker {
        operation: String,
        #[source]
        source: lapin::Error,
    },
}
