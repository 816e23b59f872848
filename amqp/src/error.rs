//! Errors of `sundial-amqp`: what went wrong talking to RabbitMQ.

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
    /// The address took the socket but did not finish the AMQP handshake in
    /// time (a broker at its file-handle limit does this), or did not
    /// answer at all.
    #[error("cannot connect to {url}: no answer within {after} (TCP connect and AMQP handshake; broker.connect_timeout)")]
    ConnectTimeout {
        /// The broker URL with its password masked.
        url: String,
        after: sundial_core::HumanDuration,
    },
    /// An existing exchange or queue has other arguments than Sundial
    /// declares; `detail` is the broker's message naming the argument.
    #[error("{what} \"{name}\" already exists with different settings: {detail}")]
    Conflict {
        what: &'static str,
        name: String,
        detail: String,
    },
    /// A message could not be encoded (a bug: our own messages always
    /// encode, within their size limits).
    #[error("cannot encode: {0}")]
    Codec(#[from] sundial_core::CodecError),
    /// A message could not be stored (nacked, returned, or the channel
    /// failed): `what` says which (a dead letter, a run event, a retry).
    #[error("{what} not stored: {source}")]
    NotStored {
        what: String,
        #[source]
        source: Box<PublishError>,
    },
    /// The broker connection (or a channel on it) closed.
    #[error("connection lost: {0}")]
    ConnectionLost(&'static str),
    /// A consumer's stream of deliveries ended (its channel closed).
    #[error("{0} ended")]
    StreamEnded(&'static str),
    /// A TLS file could not be read, or is not PEM.
    #[error("{setting}: cannot read {path}: {source}")]
    Tls {
        setting: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another reader holds the dead-letter queue for longer than a reader
    /// waits (a replay of 100,000 letters, a stuck process).
    #[error("{queue} is held by another reader (a listing, replay or purge) for over {waited}s: try again")]
    Busy { queue: String, waited: u64 },
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

    /// Maps a publish that did not land to [`Error::NotStored`], saying
    /// `what` it was (a dead letter, a watermark, a cancel request); for
    /// `map_err`.
    pub fn not_stored(what: impl Into<String>) -> impl FnOnce(PublishError) -> Error {
        let what = what.into();
        move |e| Error::NotStored {
            what,
            source: Box::new(e),
        }
    }
}

/// Why a confirmed publish did not land.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker nacked the message")]
    Nacked,
    /// A bug: the channel is not in confirm mode, so nothing is known.
    #[error("publisher confirms are not enabled on this channel")]
    NotConfirmed,
    #[error("message returned unroutable (no queue bound for {exchange}/{routing_key})")]
    Returned {
        exchange: String,
        routing_key: String,
    },
    #[error(transparent)]
    Broker(#[from] Error),
}
