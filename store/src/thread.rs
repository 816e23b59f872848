//! The index thread: the one owner of the file's connection. It takes
//! [`Job`]s in order: writes (one transaction per group of stream
//! messages, with the offset they reach), queries between writes,
//! retention, binding to a stream. A failing write is tried again while
//! queries are still answered; readiness says why meanwhile.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sundial_core::{
    history::RunRow,
    protocol::{
        alert::{Delivered, Raised},
        audit::AuditEntry,
        run::RunEvent,
    },
};
use sundial_runtime::{metrics as m, ratelimit::Every, Health};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::{
    error::Error,
    query::from_sql,
    schema::{bind, COLUMNS},
};

/// The readiness part the index reports under.
pub const HEALTH_PART: &str = "history index";
/// How long the writer waits before trying a failed write again.
const WRITE_RETRY: Duration = Duration::from_secs(2);

/// One history stream message: its offset and its records (none when it
/// could not be read: it is skipped, and the offset still moves past it).
#[derive(Debug, Clone)]
pub struct Batch {
    pub offset: u64,
    /// The stream message's `message_id`: with the offset, it identifies the
    /// stream the index follows (a recreated stream has other ids there).
    pub id: Option<String>,
    pub records: Vec<RunEvent>,
    /// Alerts raised, and what became of them on their routes.
    pub alerts: Vec<Raised>,
    pub deliveries: Vec<Delivered>,
    /// Writes of people and tools (ADR 0023).
    pub audit: Vec<AuditEntry>,
}

pub(crate) enum Job {
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

#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    pub(crate) max_age: Duration,
    pub(crate) keep_per_job: u32,
}

pub(crate) fn write_loop(
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
        // For the hourly counts: whether a row is new, and whether it had
        // failed before this write.
        let mut before: HashMap<(String, u32, i64), Option<bool>> = HashMap::new();
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
                before.insert(
                    key.clone(),
                    stored.as_ref().map(|row| row.outcome.is_failure()),
                );
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
        // Runs started and failures per hour (the 7-day trend), counted
        // as rows appear and fail, not by scanning them.
        let mut hours: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for key in &order {
            let Some(row) = rows.get(key) else { continue };
            let h = hours
                .entry(row.at().timestamp_millis().div_euclid(3_600_000))
                .or_default();
            let was = before.get(key).copied().flatten();
            if was.is_none() {
                h.0 += 1;
            }
            if row.outcome.is_failure() && was != Some(true) {
                h.1 += 1;
            }
        }
        let mut hourly = tx.prepare_cached(
            "INSERT INTO hourly (hour, runs, failed) VALUES (?1, ?2, ?3) ON CONFLICT (hour) \
             DO UPDATE SET runs = runs + excluded.runs, failed = failed + excluded.failed",
        )?;
        for (hour, (runs, failed)) in hours {
            hourly.execute(params![hour, runs, failed])?;
        }
        n += put_alerts(&tx, batches)?;
        n += put_audit(&tx, batches)?;
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

/// The alerts and deliveries of `batches` (an alert raised twice, by two
/// owners for a moment, is kept once: the first); a `resolved` marks the
/// alerts it resolves. Returns how many were written.
fn put_alerts(tx: &rusqlite::Transaction<'_>, batches: &[Batch]) -> rusqlite::Result<usize> {
    let mut n = 0;
    let mut put = tx.prepare_cached(
        "INSERT INTO alerts (id, kind, job_id, fire_id, scheduled, reason, resolves, at, node) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
    )?;
    let mut close = tx.prepare_cached(
        "UPDATE alerts SET resolved_by = ?1 WHERE id = ?2 AND resolved_by IS NULL",
    )?;
    let mut sent = tx.prepare_cached(
        "INSERT INTO alert_deliveries (alert, route, outcome, at, node, error) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
    )?;
    for b in batches {
        for r in &b.alerts {
            let a = &r.alert;
            let resolves = (!a.resolves.is_empty())
                .then(|| serde_json::to_string(&a.resolves).ok())
                .flatten();
            n += put.execute(params![
                a.id,
                a.kind.as_str(),
                a.job_id,
                a.fire_id,
                a.scheduled.timestamp_millis(),
                a.reason,
                resolves,
                r.at.timestamp_millis(),
                r.node,
            ])?;
            for closed in &a.resolves {
                close.execute(params![a.id, closed])?;
            }
        }
        for d in &b.deliveries {
            n += sent.execute(params![
                d.alert,
                d.route,
                d.outcome.as_str(),
                d.at.timestamp_millis(),
                d.node,
                d.error,
            ])?;
        }
    }
    Ok(n)
}

/// The audit entries of `batches`, in stream order (their `seq`).
fn put_audit(tx: &rusqlite::Transaction<'_>, batches: &[Batch]) -> rusqlite::Result<usize> {
    let mut put = tx.prepare_cached(
        "INSERT INTO audit (at, action, who, job_id, reason, detail, node) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut each =
        tx.prepare_cached("INSERT OR IGNORE INTO audit_jobs (job_id, seq) VALUES (?1, ?2)")?;
    let mut n = 0;
    for e in batches.iter().flat_map(|b| &b.audit) {
        n += put.execute(params![
            e.at.timestamp_millis(),
            e.action,
            e.by,
            e.job_id,
            e.reason,
            e.detail,
            e.node,
        ])?;
        let seq = tx.last_insert_rowid();
        for j in &e.jobs {
            each.execute(params![j, seq])?;
        }
    }
    Ok(n)
}

/// A replay's key part: 0 for the runs of no replay.
fn replay_ms(replay: Option<DateTime<Utc>>) -> i64 {
    replay.map_or(0, |t| t.timestamp_millis())
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
    n += c.execute("DELETE FROM alerts WHERE at < ?1", params![cutoff])?;
    n += c.execute(
        "DELETE FROM alert_deliveries WHERE at < ?1",
        params![cutoff],
    )?;
    n += c.execute("DELETE FROM audit WHERE at < ?1", params![cutoff])?;
    c.execute(
        "DELETE FROM hourly WHERE hour < ?1",
        params![cutoff.div_euclid(3_600_000)],
    )?;
    c.execute(
        "DELETE FROM audit_jobs WHERE seq < (SELECT coalesce(min(seq), 1 << 62) FROM audit)",
        [],
    )?;
    let mut per_job = c.prepare_cached(
        "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE job_id = ?1 \
         ORDER BY at DESC, id DESC LIMIT -1 OFFSET ?2)",
    )?;
    for j in jobs {
        n += per_job.execute(params![j, r.keep_per_job])?;
    }
    Ok(n)
}
