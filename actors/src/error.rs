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
    /// A message could not be encoded (a bug: our own messages always encode).
    #[error("cannot encode: {0}")]
    Codec(String),
    /// The registry could not be read or written.
    #[error("registry: {0}")]
    Registry(String),
    /// A refused command could not be dead-lettered (so it is not acked).
    #[error("dead letter not stored: {0}")]
    DeadLetter(String),
    /// The broker connection was lost.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// A supervision loop restarted more often than its intensity allows.
    #[error("{what}: {restarts} restarts within {within}, giving up (last error: {last})")]
    GaveUp {
        what: &'static str,
        restarts: usize,
        within: sundial_core::HumanDuration,
        last: String,
    },
    /// TLS files could not be read.
    #[error("tls: {0}")]
    Tls(String),
    /// The operations endpoint could not bind its address.
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: String, why: String },
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
    /// Any other broker error during an operation.
    #[error("{operation} failed: {source}")]
    Broker {
        operation: String,
        #[source]
        source: lapin::Error,
    },
}

impl Error {
    /// The broker refused for lack of permission (403 ACCESS_REFUSED): the
    /// user's configure/write/read regexes do not cover the name.
    pub fn is_access_refused(&self) -> bool {
        matches!(self, Error::Broker { source, .. }
            if matches!(source.kind(), lapin::ErrorKind::ProtocolError(e) if e.get_id() == 403))
    }

    /// The broker says the exchange or queue does not exist (404 NOT_FOUND).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Broker { source, .. }
            if matches!(source.kind(), lapin::ErrorKind::ProtocolError(e) if e.get_id() == 404))
    }

    /// Maps a lapin error from `operation` (`"basic.qos"`, `"queue.declare x"`)
    /// to [`Error::Broker`]; for `map_err`.
    pub fn broker(operation: impl Into<String>) -> impl FnOnce(lapin::Error) -> Error {
        let operation = operation.into();
        move |source| Error::Broker { operation, source }
    }
}
