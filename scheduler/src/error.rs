//! Errors of `sundial-scheduler`.

use sundial_amqp::publish::PublishError;

/// Why a scheduler's run (one connection's life) ended, or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Talking to RabbitMQ failed.
    #[error(transparent)]
    Amqp(#[from] sundial_amqp::Error),
    /// The history index failed.
    #[error(transparent)]
    Store(#[from] sundial_store::Error),
    /// The registry stream could not be appended to.
    #[error("registry: {what}: {source}")]
    Registry {
        what: &'static str,
        #[source]
        source: Box<PublishError>,
    },
    /// The Registry actor is gone (it stopped or panicked).
    #[error("registry actor gone: {0}")]
    RegistryGone(#[from] actix::MailboxError),
    /// A message could not be encoded (a bug: our own messages encode).
    #[error("cannot encode: {0}")]
    Codec(#[from] sundial_core::CodecError),
    /// A task the scheduler's run needs stopped on its own.
    #[error("{0} stopped")]
    TaskStopped(&'static str),
    /// The supervision loop restarted more often than its intensity allows.
    #[error(transparent)]
    GaveUp(#[from] sundial_runtime::GaveUp),
}

impl Error {
    /// Maps a lapin error from `operation` to a broker error; for `map_err`.
    pub fn broker(operation: impl Into<String>) -> impl FnOnce(lapin::Error) -> Error {
        let f = sundial_amqp::Error::broker(operation);
        move |source| Error::Amqp(f(source))
    }

    /// A consumer's stream of deliveries ended (its channel closed).
    pub(crate) fn stream_ended(what: &'static str) -> Error {
        Error::Amqp(sundial_amqp::Error::StreamEnded(what))
    }

    /// The broker connection (or a channel on it) closed.
    pub(crate) fn connection_lost(what: &'static str) -> Error {
        Error::Amqp(sundial_amqp::Error::ConnectionLost(what))
    }

    /// `what` (a cancel request, say) was not stored.
    pub(crate) fn not_stored(what: &str) -> impl FnOnce(PublishError) -> Error {
        let f = sundial_amqp::Error::not_stored(what.to_string());
        move |e| Error::Amqp(f(e))
    }
}
