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
    /// The registry stream could not be appended to.
    #[error("registry: {what}: {source}")]
    Registry {
        what: &'static str,
        #[source]
        source: Box<crate::publish::PublishError>,
    },
    /// A message could not be stored (nacked, returned, or the channel
    /// failed): `what` says which (a dead letter, a run event, a retry).
    #[error("{what} not stored: {source}")]
    NotStored {
        what: String,
        #[source]
        source: Box<crate::publish::PublishError>,
    },
    /// A run record did not reach the history stream (its batch was
    /// nacked, returned, or its channel failed).
    #[error("run record not stored: {0}")]
    RecordNotStored(String),
    /// The history index file could not be opened, read or written.
    #[error("history index {path}: {what}: {source}")]
    HistoryIndex {
        path: std::path::PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The history index file or its directory cannot be created or opened.
    #[error("history index {path}: {why}")]
    HistoryFile {
        path: std::path::PathBuf,
        why: String,
    },
    /// The history index file is held by another process.
    #[error("history index {path} is in use by another process ({why}); set history.path to a file of this process's own, or history.enabled = false")]
    HistoryLocked {
        path: std::path::PathBuf,
        why: String,
    },
    /// The broker connection (or a channel on it) closed.
    #[error("connection lost: {0}")]
    ConnectionLost(&'static str),
    /// A consumer's stream of deliveries ended (its channel closed).
    #[error("{0} ended")]
    StreamEnded(&'static str),
    /// The scheduler's Registry actor is gone (it stopped or panicked).
    #[error("registry actor gone: {0}")]
    RegistryGone(#[from] actix::MailboxError),
    /// A task the scheduler's run needs stopped on its own.
    #[error("{0} stopped")]
    TaskStopped(&'static str),
    /// A supervision loop restarted more often than its intensity allows.
    #[error("{what}: {restarts} restarts within {within}, giving up (last error: {last})")]
    GaveUp {
        what: &'static str,
        restarts: usize,
        within: sundial_core::HumanDuration,
        last: String,
    },
    /// A TLS file could not be read, or is not PEM.
    #[error("{setting}: cannot read {path}: {source}")]
    Tls {
        setting: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The operations endpoint could not bind its address.
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: String, why: String },
    /// The HTTP client (http executor, webhook) could not be built.
    #[error("http client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The Prometheus recorder could not be installed.
    #[error("metrics recorder: {0}")]
    Metrics(String),
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

/// The text of a caught panic (`panic!` with a literal or a formatted
/// message), for the reason of what it ended.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
