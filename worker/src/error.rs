//! Errors of `sundial-worker`.

use sundial_amqp::publish::PublishError;

/// Why a worker's run (one connection's life) ended, or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Talking to RabbitMQ failed.
    #[error(transparent)]
    Amqp(#[from] sundial_amqp::Error),
    /// A run record did not reach the history stream (its batch was
    /// nacked, returned, or its channel failed).
    #[error("run record not stored: {0}")]
    RecordNotStored(#[source] std::sync::Arc<PublishError>),
    /// A message could not be encoded (a bug: our own messages encode).
    #[error("cannot encode: {0}")]
    Codec(#[from] sundial_core::CodecError),
    /// A task the worker's run needs stopped on its own.
    #[error("{0} stopped")]
    TaskStopped(&'static str),
    /// The supervision loop restarted more often than its intensity allows.
    #[error(transparent)]
    GaveUp(#[from] sundial_runtime::GaveUp),
    /// The HTTP client of the `http` executor could not be built.
    #[cfg(feature = "http")]
    #[error("http client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

impl Error {
    /// Maps a lapin error from `operation` to a broker error; for `map_err`.
    pub fn broker(operation: impl Into<String>) -> impl FnOnce(lapin::Error) -> Error {
        let f = sundial_amqp::Error::broker(operation);
        move |source| Error::Amqp(f(source))
    }
}
