//! Errors of `sundial-store`.

/// What went wrong with the history index file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The history index file could not be opened, read or written.
    #[error("history index {path}: {what}: {source}")]
    Index {
        path: std::path::PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The history index file or its directory cannot be created or opened.
    #[error("history index {path}: {why}")]
    File {
        path: std::path::PathBuf,
        why: String,
    },
    /// The history index file is held by another process.
    #[error("history index {path} is in use by another process ({why}); set history.path to a file of this process's own, or history.enabled = false")]
    Locked {
        path: std::path::PathBuf,
        why: String,
    },
    /// The index thread is gone (it stopped, or panicked): `0` names what
    /// found it gone.
    #[error("{0} stopped")]
    Stopped(&'static str),
}

/// Maps a SQLite error of `what` on the index at `path`; for `map_err`.
pub(crate) fn sql(
    path: &std::path::Path,
    what: &'static str,
) -> impl FnOnce(rusqlite::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Index { path, what, source }
}
