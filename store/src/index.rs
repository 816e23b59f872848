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
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension};
use sundial_core::{
    history::{Failing, JobRecent, RunPage, RunQuery, RunRow, Summary},
    protocol::{
        alert::{AlertQuery, AlertRow},
        audit::{AuditQuery, AuditRow},
    },
    settings::HistorySettings,
};
use sundial_runtime::Health;
use tokio::sync::{mpsc, oneshot};

pub use crate::thread::{Batch, HEALTH_PART};
use crate::{
    error::{sql, Error},
    query::{
        query_alerts, query_audit, query_failing, query_fire, query_recent, query_runs, summarise,
    },
    schema::{migrate, open_conn},
    thread::{write_loop, Job, Retention},
};

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

    /// Every run of `fire_id` (all attempts and replays) and, for a
    /// workflow occurrence, of each of its steps' fires (`{fire_id}/…`),
    /// oldest first; at most [`sundial_core::history::MAX_PAGE`] ×
    /// 10 rows.
    pub async fn fire(&self, fire_id: String) -> Result<Vec<RunRow>, Error> {
        self.read(move |c, path| query_fire(c, &fire_id).map_err(sql(path, "querying a fire")))
            .await
    }

    /// `job_id`'s finished attempts since `since`.
    pub async fn summary(&self, job_id: String, since: DateTime<Utc>) -> Result<Summary, Error> {
        self.read(move |c, path| summarise(c, &job_id, since).map_err(sql(path, "summarising")))
            .await
    }

    /// Runs (attempts) per minute since `since`, and those that failed or
    /// died: `(minute start in ms, runs, failed)`, oldest first (minutes
    /// without runs left out). Both counts read an index only (`runs_at`,
    /// and the failures' partial index), not the rows.
    pub async fn per_minute(&self, since: DateTime<Utc>) -> Result<Vec<(i64, u64, u64)>, Error> {
        const BUCKET_MS: i64 = 60_000;
        self.read(move |c, path| {
            let count = |query: &str| -> Result<BTreeMap<i64, u64>, Error> {
                let mut st = c
                    .prepare_cached(query)
                    .map_err(sql(path, "counting runs per minute"))?;
                let rows = st
                    .query_map(
                        rusqlite::params![since.timestamp_millis(), BUCKET_MS],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)? * BUCKET_MS,
                                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                            ))
                        },
                    )
                    .and_then(Iterator::collect)
                    .map_err(sql(path, "counting runs per minute"))?;
                Ok(rows)
            };
            let runs = count(
                "SELECT at / ?2, count(*) FROM runs INDEXED BY runs_at WHERE at >= ?1 GROUP BY 1",
            )?;
            let failed = count(
                "SELECT at / ?2, count(*) FROM runs INDEXED BY runs_failures \
                 WHERE at >= ?1 AND outcome IN ('failed', 'dead') GROUP BY 1",
            )?;
            Ok(runs
                .into_iter()
                .map(|(t, n)| (t, n, failed.get(&t).copied().unwrap_or(0)))
                .collect())
        })
        .await
    }

    /// Alerts matching `q`, newest first, with their deliveries.
    pub async fn alerts(&self, q: AlertQuery) -> Result<Vec<AlertRow>, Error> {
        self.read(move |c, path| query_alerts(c, &q).map_err(sql(path, "querying alerts")))
            .await
    }

    /// Each of `jobs`' last `n` runs and its failures since `since` (the
    /// jobs list's columns).
    pub async fn recent(
        &self,
        jobs: Vec<String>,
        n: usize,
        since: DateTime<Utc>,
    ) -> Result<Vec<JobRecent>, Error> {
        self.read(move |c, path| {
            query_recent(c, &jobs, n, since).map_err(sql(path, "reading recent runs"))
        })
        .await
    }

    /// Runs started and failures per hour since `since` (hours with runs,
    /// oldest first), from the counts kept as rows are written: `(hour
    /// start in ms, runs, failed)`.
    pub async fn per_hour(&self, since: DateTime<Utc>) -> Result<Vec<(i64, u64, u64)>, Error> {
        self.read(move |c, path| {
            let mut st = c
                .prepare_cached(
                    "SELECT hour, runs, failed FROM hourly WHERE hour >= ?1 ORDER BY hour",
                )
                .map_err(sql(path, "reading runs per hour"))?;
            let rows = st
                .query_map([since.timestamp_millis().div_euclid(3_600_000)], |r| {
                    Ok((
                        r.get::<_, i64>(0)? * 3_600_000,
                        u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    ))
                })
                .and_then(Iterator::collect)
                .map_err(sql(path, "reading runs per hour"))?;
            Ok(rows)
        })
        .await
    }

    /// Jobs with failures since `since`, the most recent failure first.
    pub async fn failing(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<Failing>, Error> {
        self.read(move |c, path| {
            query_failing(c, since, limit).map_err(sql(path, "reading failing jobs"))
        })
        .await
    }

    /// Audit entries matching `q`, newest first (ADR 0023).
    pub async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditRow>, Error> {
        self.read(move |c, path| query_audit(c, &q).map_err(sql(path, "querying the audit trail")))
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

#[cfg(test)]
mod tests {
    use sundial_core::{
        history::Outcome,
        protocol::run::{RunEvent, RunKind},
    };

    use super::*;

    /// Writes the records of one stream message and waits until they are.
    async fn write_one(index: &Index, offset: u64, id: Option<&str>, records: Vec<RunEvent>) {
        index
            .write(
                vec![Batch {
                    offset,
                    id: id.map(str::to_string),
                    records,
                    alerts: Vec::new(),
                    deliveries: Vec::new(),
                    audit: Vec::new(),
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
            payload: None,
            by: None,
        }
    }

    /// The query plan SQLite chooses for `sql` with `params`, its details
    /// joined by "; ".
    async fn plan_of<P: rusqlite::Params + Send + 'static>(
        index: &Index,
        sql: String,
        params: P,
    ) -> String {
        index
            .read(move |c, _| {
                let mut st = c
                    .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .expect("a plan");
                let rows: Vec<String> = st
                    .query_map(params, |r| r.get::<_, String>(3))
                    .expect("plan rows")
                    .collect::<Result<_, _>>()
                    .expect("plan rows");
                Ok(rows.join("; "))
            })
            .await
            .expect("plan")
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
    async fn alerts_are_kept_once_closed_by_their_resolution_and_listed_with_deliveries() {
        use sundial_core::protocol::alert::{
            Alert, AlertKind, AlertQuery, Delivered, DeliveryOutcome, Raised,
        };
        let path = temp("alerts");
        let index = Index::open(&settings(&path, 100), Health::new()).expect("opens");
        // The index keeps milliseconds.
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now");
        let raised = |kind: AlertKind, job: &str, ago: i64, resolves: &[&str]| {
            let at = now - chrono::TimeDelta::seconds(ago);
            let fire_id = sundial_core::FireId::new(job, at).to_string();
            Raised {
                alert: Alert {
                    id: format!("{}:{fire_id}", kind.as_str()),
                    kind,
                    job_id: job.into(),
                    fire_id,
                    scheduled: at,
                    reason: "why".into(),
                    resolves: resolves.iter().map(|r| r.to_string()).collect(),
                },
                at: now - chrono::TimeDelta::seconds(ago - 1),
                node: "n1".into(),
            }
        };
        let failed = raised(AlertKind::Failed, "a", 30, &[]);
        let late = raised(AlertKind::Late, "b", 20, &[]);
        let resolved = raised(AlertKind::Resolved, "a", 10, &[&failed.alert.id]);
        let mut again = failed.clone();
        again.node = "n2".into();
        let delivered = Delivered {
            alert: failed.alert.id.clone(),
            route: "hook".into(),
            outcome: DeliveryOutcome::Sent,
            at: now,
            node: "n1".into(),
            error: None,
        };
        let batch = |offset: u64, alerts: Vec<Raised>, deliveries: Vec<Delivered>| Batch {
            offset,
            id: None,
            records: Vec::new(),
            alerts,
            deliveries,
            audit: Vec::new(),
        };
        index
            .write(
                vec![
                    batch(1, vec![failed.clone(), late.clone()], vec![]),
                    batch(2, vec![again, resolved.clone()], vec![delivered.clone()]),
                ],
                HashMap::new(),
            )
            .await
            .expect("queued")
            .await
            .expect("written");
        let q = |job: Option<&str>, open: bool| AlertQuery {
            since: now - chrono::TimeDelta::hours(1),
            job: job.map(str::to_string),
            open,
            limit: 100,
        };
        let all = index.alerts(q(None, false)).await.expect("alerts");
        let ids: Vec<&str> = all.iter().map(|r| r.alert.id.as_str()).collect();
        assert_eq!(
            ids,
            [&resolved.alert.id, &late.alert.id, &failed.alert.id],
            "newest first, the repeat kept once"
        );
        let a = &all[2];
        assert_eq!(a.node, "n1", "the first raise is kept");
        assert_eq!(a.resolved_by.as_deref(), Some(resolved.alert.id.as_str()));
        assert_eq!(a.deliveries, [delivered]);
        assert_eq!(
            all[0].alert.resolves,
            std::slice::from_ref(&failed.alert.id)
        );
        let open = index.alerts(q(None, true)).await.expect("open");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].alert.id, late.alert.id);
        let of_a = index.alerts(q(Some("a"), false)).await.expect("of a");
        assert_eq!(of_a.len(), 2);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[tokio::test]
    async fn audit_entries_are_listed_newest_first_by_job_who_and_action_and_paged() {
        use sundial_core::protocol::audit::{AuditEntry, AuditQuery};
        let path = temp("audit");
        let index = Index::open(&settings(&path, 10), Health::new()).expect("opens");
        // The index keeps milliseconds.
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now");
        let entry = |action: &str, job: &str, by: &str| AuditEntry {
            by: Some(by.into()),
            job_id: Some(job.into()),
            reason: Some(format!("{action} {job}")),
            ..AuditEntry::new(action, now)
        };
        let entries = vec![
            AuditEntry {
                job_id: None,
                jobs: vec!["a".into(), "z".into()],
                ..entry("upsert-many", "-", "ops")
            },
            entry("pause", "a", "ops"),
            entry("resume", "a", "ops"),
            entry("trigger", "b", "ci"),
            entry("delete", "a", "ci"),
        ];
        index
            .write(
                vec![Batch {
                    offset: 1,
                    id: None,
                    records: Vec::new(),
                    alerts: Vec::new(),
                    deliveries: Vec::new(),
                    audit: entries.clone(),
                }],
                HashMap::new(),
            )
            .await
            .expect("queued")
            .await
            .expect("written");
        let q =
            |job: Option<&str>, by: Option<&str>, before: Option<i64>, limit: usize| AuditQuery {
                job: job.map(str::to_string),
                by: by.map(str::to_string),
                before,
                limit,
                ..AuditQuery::default()
            };
        let of_a = index
            .audit(q(Some("a"), None, None, 10))
            .await
            .expect("of a");
        let actions: Vec<&str> = of_a.iter().map(|r| r.entry.action.as_str()).collect();
        assert_eq!(
            actions,
            ["delete", "resume", "pause", "upsert-many"],
            "newest first, with the write of several jobs"
        );
        assert_eq!(of_a[2].entry, entries[1], "stored whole");
        let by_ci = index
            .audit(q(None, Some("ci"), None, 10))
            .await
            .expect("by ci");
        assert_eq!(by_ci.len(), 2);
        let first = index.audit(q(None, None, None, 3)).await.expect("page 1");
        let rest = index
            .audit(q(None, None, Some(first[2].seq), 3))
            .await
            .expect("page 2");
        assert_eq!((first.len(), rest.len()), (3, 2));
        assert_eq!(
            rest[1].entry.action, "upsert-many",
            "the oldest, on the second page"
        );
        // A job's entries are read through its indexes, not by a walk over
        // every entry.
        let plan = plan_of(
            &index,
            crate::query::audit_sql(true),
            rusqlite::params_from_iter({
                use rusqlite::types::Value::{Integer, Null, Text};
                [Text("a".into()), Null, Null, Null, Null, Integer(10)]
            }),
        )
        .await;
        assert!(!plan.contains("SCAN audit"), "{plan}");
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[tokio::test]
    async fn recent_runs_per_job_and_the_failing_jobs_use_their_indexes() {
        let path = temp("recent");
        let index = Index::open(&settings(&path, 100), Health::new()).expect("opens");
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now");
        let at = |s: i64| now - chrono::TimeDelta::seconds(s);
        let mut records = Vec::new();
        // a: 12 runs, the newest dead; b: a failure, then a success; c: fine.
        for i in 0..12 {
            let kind = if i == 0 {
                RunKind::Dead
            } else {
                RunKind::Succeeded
            };
            records.push(record("a", at(i * 10 + 5), RunKind::Started));
            records.push(record("a", at(i * 10 + 5), kind));
        }
        records.push(record("b", at(100), RunKind::Dead));
        records.push(record("b", at(50), RunKind::Succeeded));
        records.push(record("c", at(30), RunKind::Succeeded));
        write_one(&index, 1, None, records).await;
        let recent = index
            .recent(vec!["a".into(), "c".into(), "none".into()], 10, at(3600))
            .await
            .expect("recent");
        assert_eq!(recent.len(), 3);
        assert_eq!(recent[0].runs.len(), 10, "the last 10 only");
        assert_eq!(recent[0].runs[0].outcome, Outcome::Dead, "newest first");
        assert_eq!(recent[0].failed, 1);
        assert_eq!((recent[1].runs.len(), recent[1].failed), (1, 0));
        assert!(recent[2].runs.is_empty());
        let failing = index.failing(at(3600), 10).await.expect("failing");
        let got: Vec<(&str, u64, Outcome)> = failing
            .iter()
            .map(|f| (f.job_id.as_str(), f.failed, f.last_outcome))
            .collect();
        assert_eq!(
            got,
            [("a", 1, Outcome::Dead), ("b", 1, Outcome::Succeeded)],
            "the latest failure first; b recovered"
        );
        let hours = index.per_hour(at(7200)).await.expect("per hour");
        let (runs, failed) = hours
            .iter()
            .fold((0, 0), |(r, f), (_, runs, failed)| (r + runs, f + failed));
        assert_eq!((runs, failed), (15, 2), "counted as written: {hours:?}");
        let plan = plan_of(
            &index,
            crate::query::FAILING_SQL.to_string(),
            rusqlite::params_from_iter([0, 10]),
        )
        .await;
        assert!(plan.contains("runs_failures"), "{plan}");
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
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
