//! The index file's layout: the schema, opening a connection, migrating
//! an older layout, and binding the index to the stream it follows.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use tracing::warn;

use crate::error::{sql, Error};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id           INTEGER PRIMARY KEY,
    fire_id      TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    job_id       TEXT    NOT NULL,
    pool         TEXT    NOT NULL,
    labels       TEXT,
    scheduled_at INTEGER,
    started_at   INTEGER,
    finished_at  INTEGER,
    at           INTEGER NOT NULL,
    outcome      TEXT    NOT NULL,
    retried      INTEGER NOT NULL DEFAULT 0,
    duration_ms  INTEGER,
    worker       TEXT    NOT NULL,
    reason       TEXT,
    output       TEXT,
    replay       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (fire_id, attempt, replay)
);
CREATE INDEX IF NOT EXISTS runs_job_at ON runs (job_id, at);
CREATE INDEX IF NOT EXISTS runs_at ON runs (at);
CREATE INDEX IF NOT EXISTS runs_failures ON runs (at, job_id) WHERE outcome IN ('failed', 'dead');
CREATE INDEX IF NOT EXISTS runs_failures_job ON runs (job_id, at) WHERE outcome IN ('failed', 'dead');
CREATE TABLE IF NOT EXISTS hourly (
    hour   INTEGER PRIMARY KEY,
    runs   INTEGER NOT NULL,
    failed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id          TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    job_id      TEXT    NOT NULL,
    fire_id     TEXT    NOT NULL,
    scheduled   INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    resolves    TEXT,
    at          INTEGER NOT NULL,
    node        TEXT    NOT NULL,
    resolved_by TEXT
);
CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at);
CREATE INDEX IF NOT EXISTS alerts_job_at ON alerts (job_id, at);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    alert   TEXT    NOT NULL,
    route   TEXT    NOT NULL,
    outcome TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    node    TEXT    NOT NULL,
    error   TEXT,
    PRIMARY KEY (alert, route, at, node)
);
CREATE TABLE IF NOT EXISTS audit (
    seq     INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    action  TEXT    NOT NULL,
    who     TEXT,
    job_id  TEXT,
    reason  TEXT,
    detail  TEXT,
    node    TEXT
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_job ON audit (job_id, seq);
CREATE TABLE IF NOT EXISTS audit_jobs (
    job_id TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS origin (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

pub(crate) const COLUMNS: &str =
    "id, fire_id, attempt, job_id, pool, labels, scheduled_at, started_at, \
                       finished_at, outcome, retried, duration_ms, worker, reason, output, replay";

/// The layout [`SCHEMA`] creates (meta key `schema`). An index of another
/// layout is dropped and rebuilt from the stream, from its first offset
/// (the index is a cache of the stream).
const SCHEMA_VERSION: i64 = 6;

pub(crate) fn open_conn(path: &Path) -> Result<Connection, Error> {
    let c = Connection::open(path).map_err(sql(path, "opening"))?;
    // Exclusive, before WAL is first used: the WAL index is kept in memory,
    // no `-shm` file is mapped (the process is the index's only user; its
    // lock file says so). WAL: a write appends; NORMAL: a crash loses at
    // most the last transactions, which the stream still holds.
    c.execute_batch(
        "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
    )
    .map_err(sql(path, "setting it up"))?;
    Ok(c)
}

/// Creates the schema, or rebuilds an index of an older layout (its rows
/// and offset go; ingest reads the stream again from its first offset).
pub(crate) fn migrate(c: &Connection, path: &Path) -> Result<(), Error> {
    let has_runs: bool = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'runs'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(sql(path, "reading the schema"))?;
    let version: Option<i64> = if has_runs {
        c.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()
        .unwrap_or(None)
    } else {
        Some(SCHEMA_VERSION)
    };
    if version != Some(SCHEMA_VERSION) {
        tracing::warn!(path = %path.display(), found = ?version, want = SCHEMA_VERSION, "history index of an older layout: rebuilding it from the history stream");
        c.execute_batch(
            "DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS alerts; \
             DROP TABLE IF EXISTS alert_deliveries; DROP TABLE IF EXISTS audit; DROP TABLE IF EXISTS audit_jobs; \
             DROP TABLE IF EXISTS hourly; \
             DROP TABLE IF EXISTS meta;",
        )
        .map_err(sql(path, "dropping an old layout"))?;
    }
    c.execute_batch(SCHEMA)
        .map_err(sql(path, "creating the schema"))?;
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('schema', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![SCHEMA_VERSION],
    )
    .map_err(sql(path, "recording the schema"))?;
    Ok(())
}

/// Records `stream` as the index's stream; empties the index first when
/// `rebuild` says why, or when it was built from another stream (or from
/// one it did not record: an older release). Returns whether it emptied it.
pub(crate) fn bind(
    conn: &mut Connection,
    path: &Path,
    stream: &str,
    rebuild: Option<String>,
) -> Result<bool, Error> {
    let stored: Option<String> = conn
        .query_row("SELECT value FROM origin WHERE key = 'stream'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql(path, "reading the index's stream"))?;
    let indexed: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'offset')",
            [],
            |r| r.get(0),
        )
        .map_err(sql(path, "reading the offset"))?;
    let why = match (rebuild, stored) {
        (Some(why), _) => Some(why),
        (None, Some(s)) if s != stream => Some(format!("it was built from another stream ({s})")),
        (None, None) if indexed => {
            Some("it does not say which stream it was built from (an older release)".into())
        }
        (None, _) => None,
    };
    let tx = conn
        .transaction()
        .map_err(sql(path, "binding to the stream"))?;
    if let Some(why) = &why {
        tx.execute_batch(
            "DELETE FROM runs; DELETE FROM alerts; DELETE FROM alert_deliveries; \
             DELETE FROM audit; DELETE FROM audit_jobs; DELETE FROM hourly; \
             DELETE FROM meta WHERE key = 'offset'; DELETE FROM origin;",
        )
        .map_err(sql(path, "emptying the index"))?;
        warn!(path = %path.display(), %stream, reason = %why, "history index emptied; rebuilding it from the stream");
    }
    tx.execute(
        "INSERT INTO origin (key, value) VALUES ('stream', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![stream],
    )
    .map_err(sql(path, "recording the index's stream"))?;
    tx.commit().map_err(sql(path, "binding to the stream"))?;
    Ok(why.is_some())
}
