//! `Index`: the history index, one SQLite file (WAL) built from the history
//! stream (ADR 0015). One thread owns the file's one connection: it writes,
//! in one transaction per group of stream messages, the rows and the stream
//! offset they reach, so a process killed mid-write reopens at a consistent
//! point and resumes after it, and answers queries between writes. A lock
//! file keeps a second process off the same index.
//!
//! The connection holds the file in SQLite's exclusive locking mode, so the
//! WAL index lives in the process's memory, not in a memory-mapped `-shm`
//! file: a `-shm` that cannot be written, or a file system remounted
//! read-only, is then a write error (not ready, with the reason) instead of
//! a SIGBUS that kills the process without a word.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use sundial_core::{
    history::{Cursor, Outcome, RunPage, RunQuery, RunRow, Summary, MAX_PAGE},
    protocol::run::RunEvent,
    settings::HistorySettings,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use sundial_runtime::{metrics as m, ratelimit::Every, Health};

use crate::error::Error;

/// The readiness part the index reports under.
pub const HEALTH_PART: &str = "history index";
/// How long the writer waits before trying a failed write again.
const WRITE_RETRY: Duration = Duration::from_secs(2);

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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS origin (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

const COLUMNS: &str = "id, fire_id, attempt, job_id, pool, labels, scheduled_at, started_at, \
                       finished_at, outcome, retried, duration_ms, worker, reason, output, replay";

/// The layout [`SCHEMA`] creates (meta key `schema`). An index of another
/// layout is dropped and rebuilt from the stream, from its first offset
/// (the index is a cache of the stream).
const SCHEMA_VERSION: i64 = 2;

/// One history stream message: its offset and its records (none when it
/// could not be read: it is skipped, and the offset still moves past it).
#[derive(Debug, Clone)]
pub struct Batch {
    pub offset: u64,
    /// The stream message's `message_id`: with the offset, it identifies the
    /// stream the index follows (a recreated stream has other ids there).
    pub id: Option<String>,
    pub records: Vec<RunEvent>,
}

enum Job {
    /// Rows of `batches`, with the labels of their jobs.
    Write {
        batches: Vec<Batch>,
        labels: HashMap<String, BTreeMap<String, String>>,
        done: oneshot::Sender<()>,
        /// One of [`WRITES_IN_FLIGHT`]: the ingest waits while the writer
        /// is behind (the records wait in the stream).
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
    /// Drop rows past the retention.
    Retain,
    /// A query, answered between writes.
    Read(Box<dyn FnOnce(&Connection) + Send>),
    /// Make the index the one of `stream`, emptied first when `rebuild`
    /// says why (or when it belonged to another stream); answers whether it
    /// was emptied.
    Bind {
        stream: String,
        rebuild: Option<String>,
        done: oneshot::Sender<Result<bool, Error>>,
    },
}

/// The history index of this process.
pub struct Index {
    path: PathBuf,
    /// The index thread's queue: writes, queries, retention, binding.
    jobs: mpsc::Sender<Job>,
    /// Writes queued or running, at most [`WRITES_IN_FLIGHT`].
    writes: Arc<tokio::sync::Semaphore>,
    _lock: std::fs::File,
}

/// Groups of stream messages queued for the writer at most.
const WRITES_IN_FLIGHT: usize = 4;
/// Jobs (mostly queries) queued for the index thread at most.
const QUEUE: usize = 64;

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).finish()
    }
}

impl Index {
    /// Opens (creating) the index at `settings.path` and starts its writer
    /// thread; readiness part [`HEALTH_PART`] says when writes fail.
    pub fn open(settings: &HistorySettings, health: Arc<Health>) -> Result<Arc<Self>, Error> {
        let path = settings.path.clone();
        let lock = lock(&path)?;
        let conn = open_conn(&path)?;
        migrate(&conn, &path)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let retention = Retention {
            max_age: settings.max_age,
            keep_per_job: settings.keep_per_job,
        };
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("history-index".into())
            .spawn(move || write_loop(conn, rx, retention, health, thread_path))
            .map_err(|e| Error::File {
                path: path.clone(),
                why: format!("cannot start its writer thread: {e}"),
            })?;
        Ok(Arc::new(Self {
            path,
            jobs: tx,
            writes: Arc::new(tokio::sync::Semaphore::new(WRITES_IN_FLIGHT)),
            _lock: lock,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stream offset to read from: just after the last one written.
    pub async fn resume_offset(&self) -> Result<Option<u64>, Error> {
        self.read(|c, path| {
            let v: Option<i64> = c
                .query_row("SELECT value FROM meta WHERE key = 'offset'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql(path, "reading the offset"))?;
            Ok(v.and_then(|v| u64::try_from(v).ok()).map(|v| v + 1))
        })
        .await
    }

    /// The last stream message indexed: its offset and message id.
    pub async fn last_indexed(&self) -> Result<Option<(u64, Option<String>)>, Error> {
        self.read(|c, path| {
            let offset: Option<i64> = c
                .query_row("SELECT value FROM meta WHERE key = 'offset'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql(path, "reading the offset"))?;
            let id: Option<String> = c
                .query_row("SELECT value FROM origin WHERE key = 'last_id'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql(path, "reading the last message id"))?;
            Ok(offset.and_then(|o| u64::try_from(o).ok()).map(|o| (o, id)))
        })
        .await
    }

    /// Binds the index to `stream` (the broker's addresses, the vhost and
    /// the stream's name): an index built from another stream, or from no
    /// known one (an older release), is emptied and rebuilt from this
    /// stream, with one log line saying why. Returns whether it was emptied.
    pub async fn bind(&self, stream: &str) -> Result<bool, Error> {
        self.bind_job(stream, None).await
    }

    /// Empties the index (it is rebuilt from `stream`'s first record),
    /// logging `why`.
    pub async fn rebuild(&self, stream: &str, why: String) -> Result<(), Error> {
        self.bind_job(stream, Some(why)).await.map(|_| ())
    }

    async fn bind_job(&self, stream: &str, rebuild: Option<String>) -> Result<bool, Error> {
        let (done, wait) = oneshot::channel();
        let gone = || Error::File {
            path: self.path.clone(),
            why: "its writer thread stopped".into(),
        };
        self.jobs
            .send(Job::Bind {
                stream: stream.to_string(),
                rebuild,
                done,
            })
            .await
            .map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }

    /// Queues `batches` for the writer; resolves when they are written.
    /// Waits while the writer is behind (or failing: the records wait in
    /// the stream).
    pub async fn write(
        &self,
        batches: Vec<Batch>,
        labels: HashMap<String, BTreeMap<String, String>>,
    ) -> Result<oneshot::Receiver<()>, Error> {
        let (done, wait) = oneshot::channel();
        let permit = self
            .writes
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Stopped("history index writer"))?;
        self.jobs
            .send(Job::Write {
                batches,
                labels,
                done,
                _permit: permit,
            })
            .await
            .map_err(|_| Error::Stopped("history index writer"))?;
        Ok(wait)
    }

    /// Asks the writer to apply the retention now.
    pub async fn retain(&self) -> Result<(), Error> {
        self.jobs
            .send(Job::Retain)
            .await
            .map_err(|_| Error::Stopped("history index writer"))
    }

    /// Runs matching `q`, newest first, one page.
    pub async fn runs(&self, q: RunQuery) -> Result<RunPage, Error> {
        self.read(move |c, path| query_runs(c, &q).map_err(sql(path, "querying runs")))
            .await
    }

    /// `job_id`'s finished attempts since `since`.
    pub async fn summary(&self, job_id: String, since: DateTime<Utc>) -> Result<Summary, Error> {
        self.read(move |c, path| summarise(c, &job_id, since).map_err(sql(path, "summarising")))
            .await
    }

    /// Per minute since `since` (oldest first): the minute (ms since the
    /// epoch), attempts that started in it, and those of them that failed
    /// (`failed` or `dead`). Minutes without runs are left out.
    pub async fn per_minute(&self, since: DateTime<Utc>) -> Result<Vec<(i64, u64, u64)>, Error> {
        self.read(move |c, path| {
            let mut st = c
                .prepare_cached(
                    "SELECT at / 60000, count(*), sum(outcome IN ('failed', 'dead')) \
                     FROM runs WHERE at >= ?1 GROUP BY 1 ORDER BY 1",
                )
                .map_err(sql(path, "counting runs per minute"))?;
            let rows = st
                .query_map([since.timestamp_millis()], |r| {
                    Ok((
                        r.get::<_, i64>(0)? * 60_000,
                        u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        u64::try_from(r.get::<_, Option<i64>>(2)?.unwrap_or(0)).unwrap_or(0),
                    ))
                })
                .and_then(Iterator::collect)
                .map_err(sql(path, "counting runs per minute"))?;
            Ok(rows)
        })
        .await
    }

    /// Rows in the index.
    pub async fn count(&self) -> Result<u64, Error> {
        self.read(|c, path| {
            c.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(sql(path, "counting"))
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Path) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        let path = self.path.clone();
        let job = Job::Read(Box::new(move |c| {
            let _ = tx.send(f(c, &path));
        }));
        self.jobs
            .send(job)
            .await
            .map_err(|_| Error::Stopped("history index thread"))?;
        rx.await
            .map_err(|_| Error::Stopped("history index query"))?
    }
}

fn sql(path: &Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Index { path, what, source }
}

/// Takes `{path}.lock` for this process (released when it exits, however).
fn lock(path: &Path) -> Result<std::fs::File, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::File {
            path: path.to_path_buf(),
            why: format!("cannot create {}: {e}", dir.display()),
        })?;
    }
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(|e| Error::File {
            path: path.to_path_buf(),
            why: format!("cannot open its lock file: {e}"),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_path_buf(),
            why: "its lock file is held".into(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::File {
            path: path.to_path_buf(),
            why: format!("cannot lock it: {e}"),
        }),
    }
}

fn open_conn(path: &Path) -> Result<Connection, Error> {
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

#[derive(Debug, Clone, Copy)]
struct Retention {
    max_age: Duration,
    keep_per_job: u32,
}

fn write_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    retention: Retention,
    health: Arc<Health>,
    path: PathBuf,
) {
    let mut touched: HashSet<String> = HashSet::new();
    let mut failing = Every::new(Duration::from_secs(60));
    // Jobs taken while a failing write waited to be tried again.
    let mut deferred: VecDeque<Job> = VecDeque::new();
    health.set(HEALTH_PART, None);
    loop {
        let Some(job) = deferred.pop_front().or_else(|| rx.blocking_recv()) else {
            return;
        };
        match job {
            Job::Read(f) => f(&conn),
            Job::Write {
                batches,
                labels,
                done,
                _permit,
            } => loop {
                match apply(&mut conn, &batches, &labels) {
                    Ok(n) => {
                        health.set(HEALTH_PART, None);
                        metrics::counter!(m::HISTORY_INDEXED_TOTAL).increment(n as u64);
                        if let Some(last) = batches.last() {
                            metrics::gauge!(m::HISTORY_OFFSET).set(last.offset as f64);
                        }
                        touched.extend(
                            batches
                                .iter()
                                .flat_map(|b| b.records.iter().map(|r| r.job_id.clone())),
                        );
                        let _ = done.send(());
                        break;
                    }
                    Err(e) => {
                        // A full disk, a file made read-only: not ready, and
                        // nothing lost (the records wait in the stream; this
                        // write is tried again). Queries are answered meanwhile.
                        health.set(HEALTH_PART, Some(format!("cannot write: {e}")));
                        if let Some(held) = failing.allow(std::time::Instant::now()) {
                            warn!(path = %path.display(), error = %e, held_back = held, "history index write failed; retrying (the records wait in the stream)");
                        }
                        if !answer_reads_for(&conn, &mut rx, &mut deferred, WRITE_RETRY) {
                            return;
                        }
                    }
                }
            },
            Job::Bind {
                stream,
                rebuild,
                done,
            } => {
                let _ = done.send(bind(&mut conn, &path, &stream, rebuild));
            }
            Job::Retain => {
                let jobs: Vec<String> = touched.drain().collect();
                match retain(&conn, retention, &jobs, Utc::now()) {
                    Ok(0) => {}
                    Ok(n) => info!(path = %path.display(), dropped = n, "history index retention"),
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "history index retention failed")
                    }
                }
            }
        }
    }
}

/// How often a failing write's wait looks for queries to answer.
const READ_POLL: Duration = Duration::from_millis(20);

/// Waits `wait` before a failed write is tried again, answering the queries
/// that arrive meanwhile (other jobs wait in `deferred`). `false` when the
/// index is closed.
fn answer_reads_for(
    conn: &Connection,
    rx: &mut mpsc::Receiver<Job>,
    deferred: &mut VecDeque<Job>,
    wait: Duration,
) -> bool {
    let until = std::time::Instant::now() + wait;
    while std::time::Instant::now() < until {
        match rx.try_recv() {
            Ok(Job::Read(f)) => f(conn),
            Ok(other) => deferred.push_back(other),
            Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(READ_POLL),
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
    true
}

/// Writes the rows of `batches` and the offset they reach, in one
/// transaction; returns the number of records applied.
fn apply(
    conn: &mut Connection,
    batches: &[Batch],
    labels: &HashMap<String, BTreeMap<String, String>>,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let mut n = 0;
    {
        let mut get = tx.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM runs WHERE fire_id = ?1 AND attempt = ?2 AND replay = ?3"
        ))?;
        let mut rows: HashMap<(String, u32, i64), RunRow> = HashMap::new();
        let mut order: Vec<(String, u32, i64)> = Vec::new();
        for r in batches.iter().flat_map(|b| b.records.iter()) {
            let replay = replay_ms(r.replay);
            let key = (r.fire_id.clone(), r.attempt, replay);
            if let Some(row) = rows.get_mut(&key) {
                row.apply(r);
            } else {
                let stored = get
                    .query_row(params![r.fire_id, r.attempt, replay], |row| {
                        from_sql(row).map(|(_, r)| r)
                    })
                    .optional()?;
                let row = match stored {
                    Some(mut row) => {
                        row.apply(r);
                        Some(row)
                    }
                    None => RunRow::from_record(r),
                };
                if let Some(mut row) = row {
                    if row.labels.is_empty() {
                        if let Some(l) = labels.get(&row.job_id) {
                            row.labels = l.clone();
                        }
                    }
                    order.push(key.clone());
                    rows.insert(key, row);
                }
            }
            n += 1;
        }
        let mut put = tx.prepare_cached(
            "INSERT INTO runs (fire_id, attempt, job_id, pool, labels, scheduled_at, started_at, \
             finished_at, at, outcome, retried, duration_ms, worker, reason, output, replay) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
             ON CONFLICT (fire_id, attempt, replay) DO UPDATE SET labels = excluded.labels, \
             scheduled_at = excluded.scheduled_at, started_at = excluded.started_at, \
             finished_at = excluded.finished_at, at = excluded.at, outcome = excluded.outcome, \
             retried = excluded.retried, duration_ms = excluded.duration_ms, \
             worker = excluded.worker, reason = excluded.reason, output = excluded.output",
        )?;
        for key in &order {
            let Some(row) = rows.get(key) else { continue };
            let labels = (!row.labels.is_empty())
                .then(|| serde_json::to_string(&row.labels).ok())
                .flatten();
            put.execute(params![
                row.fire_id,
                row.attempt,
                row.job_id,
                row.pool,
                labels,
                row.scheduled_at.map(|t| t.timestamp_millis()),
                row.started_at.map(|t| t.timestamp_millis()),
                row.finished_at.map(|t| t.timestamp_millis()),
                row.at().timestamp_millis(),
                row.outcome.as_str(),
                row.retried,
                row.duration_ms.and_then(|d| i64::try_from(d).ok()),
                row.worker,
                row.reason,
                row.output,
                replay_ms(row.replay),
            ])?;
        }
        if let Some(last) = batches.last() {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('offset', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![i64::try_from(last.offset).unwrap_or(i64::MAX)],
            )?;
            match &last.id {
                Some(id) => tx.execute(
                    "INSERT INTO origin (key, value) VALUES ('last_id', ?1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![id],
                )?,
                None => tx.execute("DELETE FROM origin WHERE key = 'last_id'", [])?,
            };
        }
    }
    tx.commit()?;
    Ok(n)
}

/// Records `stream` as the index's stream; empties the index first when
/// `rebuild` says why, or when it was built from another stream (or from
/// one it did not record: an older release). Returns whether it emptied it.
fn bind(
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
            "DELETE FROM runs; DELETE FROM meta WHERE key = 'offset'; DELETE FROM origin;",
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

/// A replay's key part: 0 for the runs of no replay.
fn replay_ms(replay: Option<DateTime<Utc>>) -> i64 {
    replay.map_or(0, |t| t.timestamp_millis())
}

/// Creates the schema, or rebuilds an index of an older layout (its rows
/// and offset go; ingest reads the stream again from its first offset).
fn migrate(c: &Connection, path: &Path) -> Result<(), Error> {
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
        c.execute_batch("DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS meta;")
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

fn time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

/// A row of `SELECT {COLUMNS}`, with its id.
fn from_sql(r: &Row<'_>) -> rusqlite::Result<(i64, RunRow)> {
    let labels: Option<String> = r.get(5)?;
    let outcome: String = r.get(9)?;
    let duration: Option<i64> = r.get(11)?;
    Ok((
        r.get(0)?,
        RunRow {
            fire_id: r.get(1)?,
            attempt: r.get(2)?,
            job_id: r.get(3)?,
            pool: r.get(4)?,
            labels: labels
                .and_then(|l| serde_json::from_str(&l).ok())
                .unwrap_or_default(),
            scheduled_at: time(r.get(6)?),
            started_at: time(r.get(7)?),
            finished_at: time(r.get(8)?),
            outcome: outcome.parse().unwrap_or(Outcome::Running),
            retried: r.get(10)?,
            duration_ms: duration.and_then(|d| u64::try_from(d).ok()),
            worker: r.get(12)?,
            reason: r.get(13)?,
            output: r.get(14)?,
            replay: Some(r.get::<_, i64>(15)?)
                .filter(|ms| *ms != 0)
                .and_then(DateTime::from_timestamp_millis),
        },
    ))
}

fn query_runs(c: &Connection, q: &RunQuery) -> rusqlite::Result<RunPage> {
    let mut sql = format!("SELECT {COLUMNS}, at FROM runs WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    use rusqlite::types::Value as V;
    if let Some(j) = &q.job {
        arg(&mut sql, " AND job_id = ?", V::Text(j.clone()));
    }
    if let Some(p) = q.job_prefix.as_ref().filter(|p| !p.is_empty()) {
        // A range on job_id: the index serves it, and no LIKE escaping.
        arg(&mut sql, " AND job_id >= ?", V::Text(p.clone()));
        arg(
            &mut sql,
            " AND job_id < ?",
            V::Text(format!("{p}\u{10FFFF}")),
        );
    }
    if let Some(p) = &q.pool {
        arg(&mut sql, " AND pool = ?", V::Text(p.clone()));
    }
    if let Some(o) = q.outcome {
        arg(&mut sql, " AND outcome = ?", V::Text(o.as_str().into()));
    }
    if let Some((k, v)) = &q.label {
        let path = format!("$.\"{}\"", k.replace('"', ""));
        arg(&mut sql, " AND json_extract(labels, ?", V::Text(path));
        arg(&mut sql, ") = ?", V::Text(v.clone()));
    }
    if let Some(t) = q.since {
        arg(&mut sql, " AND at >= ?", V::Integer(t.timestamp_millis()));
    }
    if let Some(t) = q.until {
        arg(&mut sql, " AND at < ?", V::Integer(t.timestamp_millis()));
    }
    if let Some(cur) = q.after {
        arg(&mut sql, " AND (at < ?", V::Integer(cur.at_ms));
        arg(&mut sql, " OR (at = ?", V::Integer(cur.at_ms));
        arg(&mut sql, " AND id < ?))", V::Integer(cur.id));
    }
    let limit = q.limit.clamp(1, MAX_PAGE);
    sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT {}", limit + 1));
    let mut stmt = c.prepare_cached(&sql)?;
    let mut found: Vec<(i64, i64, RunRow)> = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            let (id, row) = from_sql(r)?;
            Ok((id, r.get::<_, i64>(16)?, row))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let more = found.len() > limit;
    found.truncate(limit);
    let next = if more {
        found.last().map(|(id, at, _)| {
            Cursor {
                at_ms: *at,
                id: *id,
            }
            .to_string()
        })
    } else {
        None
    };
    Ok(RunPage {
        runs: found.into_iter().map(|(_, _, r)| r).collect(),
        next,
    })
}

fn summarise(c: &Connection, job: &str, since: DateTime<Utc>) -> rusqlite::Result<Summary> {
    let mut stmt = c.prepare_cached(
        "SELECT outcome, duration_ms FROM runs WHERE job_id = ?1 AND at >= ?2 \
         AND outcome NOT IN ('running', 'skipped')",
    )?;
    let rows: Vec<(Outcome, Option<u64>)> = stmt
        .query_map(params![job, since.timestamp_millis()], |r| {
            let o: String = r.get(0)?;
            let d: Option<i64> = r.get(1)?;
            Ok((
                o.parse().unwrap_or(Outcome::Running),
                d.and_then(|d| u64::try_from(d).ok()),
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let last = |outcomes: &str| -> rusqlite::Result<Option<DateTime<Utc>>> {
        c.query_row(
            &format!(
                "SELECT max(coalesce(finished_at, at)) FROM runs WHERE job_id = ?1 AND outcome IN ({outcomes})"
            ),
            params![job],
            |r| r.get::<_, Option<i64>>(0),
        )
        .map(time)
    };
    Ok(Summary::of(
        job,
        since,
        &rows,
        last("'succeeded'")?,
        last("'failed', 'dead'")?,
    ))
}

/// Drops rows older than the retention age, and the oldest of each of
/// `jobs` past `keep_per_job`; returns how many went.
fn retain(
    c: &Connection,
    r: Retention,
    jobs: &[String],
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    let age = chrono::Duration::from_std(r.max_age).unwrap_or(chrono::TimeDelta::MAX);
    let cutoff = now
        .checked_sub_signed(age)
        .unwrap_or(DateTime::UNIX_EPOCH)
        .timestamp_millis();
    let mut n = c.execute("DELETE FROM runs WHERE at < ?1", params![cutoff])?;
    let mut per_job = c.prepare_cached(
        "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE job_id = ?1 \
         ORDER BY at DESC, id DESC LIMIT -1 OFFSET ?2)",
    )?;
    for j in jobs {
        n += per_job.execute(params![j, r.keep_per_job])?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use sundial_core::protocol::run::RunKind;

    use super::*;

    /// Writes the records of one stream message and waits until they are.
    async fn write_one(index: &Index, offset: u64, id: Option<&str>, records: Vec<RunEvent>) {
        index
            .write(
                vec![Batch {
                    offset,
                    id: id.map(str::to_string),
                    records,
                }],
                HashMap::new(),
            )
            .await
            .expect("queued")
            .await
            .expect("written");
    }

    fn record(job: &str, at: DateTime<Utc>, kind: RunKind) -> RunEvent {
        RunEvent {
            kind,
            fire_id: sundial_core::FireId::new(job, at).to_string(),
            job_id: job.into(),
            pool: "default".into(),
            attempt: 1,
            worker: "w".into(),
            at,
            duration_ms: (kind != RunKind::Started).then_some(5),
            reason: None,
            output: None,
            deadline: None,
            scheduled_at: Some(at),
            replay: None,
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sundial-index-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("h.db")
    }

    fn settings(path: &Path, keep_per_job: u32) -> HistorySettings {
        HistorySettings {
            path: path.to_path_buf(),
            keep_per_job,
            ..HistorySettings::default()
        }
    }

    #[tokio::test]
    async fn retention_drops_runs_past_the_age_and_past_the_count_per_job() {
        let path = temp("retain");
        let index = Index::open(&settings(&path, 3), Health::new()).expect("opens");
        let now = Utc::now();
        let mut records = vec![record(
            "old",
            now - chrono::TimeDelta::days(8),
            RunKind::Succeeded,
        )];
        for i in 0..5 {
            let at = now - chrono::TimeDelta::minutes(10 - i);
            records.push(record("busy", at, RunKind::Started));
            records.push(record("busy", at, RunKind::Succeeded));
        }
        write_one(&index, 7, None, records).await;
        assert_eq!(index.count().await.expect("count"), 6);
        index.retain().await.expect("queued");
        // The writer applies jobs in order: a write after the retention
        // resolves once the retention is done.
        write_one(&index, 8, None, vec![]).await;
        assert_eq!(
            index.count().await.expect("count"),
            3,
            "8 days old and the 2 oldest of busy go"
        );
        let page = index
            .runs(RunQuery {
                job: Some("busy".into()),
                limit: 10,
                ..RunQuery::default()
            })
            .await
            .expect("query");
        let newest = now - chrono::TimeDelta::minutes(6);
        assert_eq!(
            page.runs[0].started_at.map(|t| t.timestamp_millis()),
            Some(newest.timestamp_millis())
        );
        assert_eq!(page.runs.len(), 3);
        assert_eq!(index.resume_offset().await.expect("offset"), Some(9));
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[tokio::test]
    async fn a_second_process_is_refused_and_pages_continue_where_they_ended() {
        let path = temp("pages");
        let index = Index::open(&settings(&path, 100), Health::new()).expect("opens");
        assert!(
            matches!(lock(&path), Err(Error::Locked { .. })),
            "the lock is held"
        );
        let now = Utc::now();
        let records: Vec<RunEvent> = (0..7)
            .map(|i| record("p", now - chrono::TimeDelta::seconds(i), RunKind::Succeeded))
            .collect();
        write_one(&index, 0, None, records).await;
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = index
                .runs(RunQuery {
                    job_prefix: Some("p".into()),
                    limit: 3,
                    after,
                    ..RunQuery::default()
                })
                .await
                .expect("page");
            seen.extend(page.runs.iter().map(|r| r.fire_id.clone()));
            match page.next {
                Some(c) => after = Some(c.parse().expect("cursor")),
                None => break,
            }
        }
        assert_eq!(seen.len(), 7, "{seen:?}");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.reverse();
        assert_eq!(seen, sorted, "newest first, no repeats");
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[tokio::test]
    async fn a_replay_is_its_own_run_and_an_old_layout_is_rebuilt() {
        let path = temp("replay");
        let now = Utc::now();
        {
            let index = Index::open(&settings(&path, 100), Health::new()).expect("opens");
            let died = record("feed", now, RunKind::Dead);
            let mut replayed = record("feed", now, RunKind::Succeeded);
            replayed.at = now + chrono::TimeDelta::seconds(30);
            replayed.replay = Some(now + chrono::TimeDelta::seconds(29));
            write_one(&index, 3, None, vec![died, replayed]).await;
            let page = index
                .runs(RunQuery {
                    limit: 10,
                    ..RunQuery::default()
                })
                .await
                .expect("runs");
            let outcomes: Vec<(Outcome, bool)> = page
                .runs
                .iter()
                .map(|r| (r.outcome, r.replay.is_some()))
                .collect();
            assert_eq!(
                outcomes,
                [(Outcome::Succeeded, true), (Outcome::Dead, false)],
                "the replay does not undo the death: two runs of attempt 1"
            );
        }
        // An index of the layout before replays: dropped and read again.
        let c = Connection::open(&path).expect("reopen");
        c.execute_batch("DROP TABLE runs; DELETE FROM meta WHERE key = 'schema'; CREATE TABLE runs (id INTEGER PRIMARY KEY, fire_id TEXT NOT NULL, attempt INTEGER NOT NULL, UNIQUE (fire_id, attempt));")
            .expect("old layout");
        drop(c);
        let index = Index::open(&settings(&path, 100), Health::new()).expect("opens");
        assert_eq!(
            index.resume_offset().await.expect("offset"),
            None,
            "read from the first offset"
        );
        assert_eq!(index.count().await.expect("count"), 0);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[tokio::test]
    async fn an_index_of_another_stream_is_emptied_and_one_of_its_own_is_kept() {
        let path = temp("bind");
        let index = Index::open(&settings(&path, 100), Health::new()).expect("opens");
        assert!(
            !index.bind("a").await.expect("bind"),
            "a new index has nothing to empty"
        );
        let records = vec![record("job", Utc::now(), RunKind::Succeeded)];
        write_one(&index, 5, Some("m-5"), records).await;
        assert_eq!(
            index.last_indexed().await.expect("last"),
            Some((5, Some("m-5".into())))
        );
        assert!(
            !index.bind("a").await.expect("bind"),
            "its own stream: kept"
        );
        assert_eq!(index.count().await.expect("count"), 1);
        assert!(
            index.bind("b").await.expect("bind"),
            "another stream: emptied"
        );
        assert_eq!(index.count().await.expect("count"), 0);
        assert_eq!(index.last_indexed().await.expect("last"), None);
        let _ = std::fs::remove_file(&path);
    }
}
