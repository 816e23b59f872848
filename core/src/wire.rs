//! Names on the wire that every layer of core may need (the protocol
//! version header, content types, dead-letter headers and their bound):
//! below `protocol`, `job` and `error`, so none of them import each other
//! for a name. `protocol` re-exports all of it (`protocol::headers`).

/// The protocol version this build writes on every message but one, sent
/// in [`VERSION_HEADER`].
pub const VERSION: i64 = 1;
/// The newest version this build reads (it reads 1 to this). The fires of
/// workflow steps carry it (docs/protocol.md §6), so a worker built before
/// workflows refuses them — dead-letters them with "unsupported protocol
/// version" — rather than running a step as a lone job, untold of its
/// shard.
pub const MAX_VERSION: i64 = 2;
/// AMQP header carrying the protocol version (an integer).
pub const VERSION_HEADER: &str = "x-sundial-version";

pub const CONTENT_TYPE_JSON: &str = "application/json";
/// bincode 2.0.1, `config::standard()` (little endian, varint), serde mode.
pub const CONTENT_TYPE_BINCODE: &str = "application/x-bincode";

/// Headers on dead letters (docs/protocol.md §8).
pub mod headers {
    pub const ERROR: &str = "x-sundial-error";
    pub const ATTEMPTS: &str = "x-sundial-attempts";
    pub const FIRST_FAILURE: &str = "x-sundial-first-failure";
    pub const LAST_FAILURE: &str = "x-sundial-last-failure";
    pub const WORKER: &str = "x-sundial-worker";
    /// The pool whose worker dead-lettered it (replay routes by it).
    pub const POOL: &str = "x-sundial-pool";
    /// Set by `dlq replay` (the replay's time) and carried by its retries:
    /// a replayed fire is not a duplicate of its first run.
    pub const REPLAY: &str = "x-sundial-replay";

    /// The most bytes of text Sundial writes into one header value. Error
    /// texts can echo user input (a 100k-entry cron list, a 200 KB field
    /// name); RabbitMQ closes the whole connection when a header frame
    /// passes its `frame_max` (128 KiB), so every text header is cut to
    /// this with [`bounded`] (the whole text stays in the reply body or the
    /// run history).
    pub const MAX_TEXT: usize = 4096;

    /// `text` cut to [`MAX_TEXT`] bytes (see [`bounded_to`]).
    pub fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
        bounded_to(text, MAX_TEXT)
    }

    /// `text` itself when it has at most `max` bytes; else its first bytes
    /// (on a character boundary) followed by `… (cut: N bytes in all)`, the
    /// whole no longer than `max` (for `max` ≥ 64).
    pub fn bounded_to(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
        if text.len() <= max {
            return std::borrow::Cow::Borrowed(text);
        }
        let note = format!("… (cut: {} bytes in all)", text.len());
        let mut end = max.saturating_sub(note.len());
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        std::borrow::Cow::Owned(format!("{}{note}", &text[..end]))
    }
}
