//! The queries the index answers: a page of runs, a job's summary.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};
use sundial_core::{
    history::{
        Cursor, Failing, JobRecent, Outcome, RunBrief, RunPage, RunQuery, RunRow, Summary,
        FAILURES_COUNTED, MAX_PAGE,
    },
    protocol::{
        alert::{Alert, AlertKind, AlertQuery, AlertRow, Delivered, DeliveryOutcome, Raised},
        audit::{AuditEntry, AuditQuery, AuditRow},
    },
};

use crate::schema::COLUMNS;

pub(crate) fn time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

/// A row of `SELECT {COLUMNS}`, with its id.
pub(crate) fn from_sql(r: &Row<'_>) -> rusqlite::Result<(i64, RunRow)> {
    let labels: Option<String> = r.get("labels")?;
    let outcome: String = r.get("outcome")?;
    let duration: Option<i64> = r.get("duration_ms")?;
    Ok((
        r.get("id")?,
        RunRow {
            fire_id: r.get("fire_id")?,
            attempt: r.get("attempt")?,
            job_id: r.get("job_id")?,
            pool: r.get("pool")?,
            labels: labels
                .and_then(|l| serde_json::from_str(&l).ok())
                .unwrap_or_default(),
            scheduled_at: time(r.get("scheduled_at")?),
            started_at: time(r.get("started_at")?),
            finished_at: time(r.get("finished_at")?),
            outcome: outcome.parse().unwrap_or(Outcome::Running),
            retried: r.get("retried")?,
            duration_ms: duration.and_then(|d| u64::try_from(d).ok()),
            worker: r.get("worker")?,
            reason: r.get("reason")?,
            output: r.get("output")?,
            replay: Some(r.get::<_, i64>("replay")?)
                .filter(|ms| *ms != 0)
                .and_then(DateTime::from_timestamp_millis),
        },
    ))
}

/// The runs of `fire_id` and of its steps' fires (ids `{fire_id}/…`: a
/// range on the `(fire_id, …)` unique index; `0` follows `/`), oldest
/// first.
pub(crate) fn query_fire(c: &Connection, fire_id: &str) -> rusqlite::Result<Vec<RunRow>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM runs WHERE fire_id = ?1 OR (fire_id >= ?2 AND fire_id < ?3) \
         ORDER BY at, id LIMIT {}",
        MAX_PAGE * 10
    ))?;
    let rows = stmt
        .query_map(
            params![fire_id, format!("{fire_id}/"), format!("{fire_id}0")],
            |r| from_sql(r).map(|(_, row)| row),
        )?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub(crate) fn query_runs(c: &Connection, q: &RunQuery) -> rusqlite::Result<RunPage> {
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
    if let Some(w) = &q.worker {
        arg(&mut sql, " AND worker = ?", V::Text(w.clone()));
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
            Ok((id, r.get::<_, i64>("at")?, row))
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

pub(crate) fn summarise(
    c: &Connection,
    job: &str,
    since: DateTime<Utc>,
) -> rusqlite::Result<Summary> {
    let mut stmt = c.prepare_cached(
        "SELECT outcome, duration_ms FROM runs WHERE job_id = ?1 AND at >= ?2 \
         AND outcome NOT IN ('running', 'skipped')",
    )?;
    let rows: Vec<(Outcome, Option<u64>)> = stmt
        .query_map(params![job, since.timestamp_millis()], |r| {
            let o: String = r.get("outcome")?;
            let d: Option<i64> = r.get("duration_ms")?;
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

/// Each of `jobs`' last `n` runs (newest first) and its failures since
/// `since`: two range reads on `(job_id, at)` per job.
pub(crate) fn query_recent(
    c: &Connection,
    jobs: &[String],
    n: usize,
    since: DateTime<Utc>,
) -> rusqlite::Result<Vec<JobRecent>> {
    let mut last = c.prepare_cached(
        "SELECT fire_id, attempt, outcome, retried, coalesce(started_at, at) AS t, duration_ms \
         FROM runs WHERE job_id = ?1 ORDER BY at DESC, id DESC LIMIT ?2",
    )?;
    let mut failed = c.prepare_cached(
        "SELECT count(*) FROM (SELECT 1 FROM runs INDEXED BY runs_failures_job \
         WHERE job_id = ?1 AND at >= ?2 AND outcome IN ('failed', 'dead') LIMIT ?3)",
    )?;
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let runs = last
            .query_map(params![job, limit], |r| {
                let outcome: String = r.get("outcome")?;
                let duration: Option<i64> = r.get("duration_ms")?;
                Ok(RunBrief {
                    fire_id: r.get("fire_id")?,
                    attempt: r.get("attempt")?,
                    outcome: outcome.parse().unwrap_or(Outcome::Running),
                    retried: r.get("retried")?,
                    at: time(r.get("t")?).unwrap_or_default(),
                    duration_ms: duration.and_then(|d| u64::try_from(d).ok()),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let n: i64 = failed.query_row(
            params![job, since.timestamp_millis(), FAILURES_COUNTED as i64],
            |r| r.get(0),
        )?;
        out.push(JobRecent {
            job_id: job.clone(),
            runs,
            failed: u64::try_from(n).unwrap_or(0),
        });
    }
    Ok(out)
}

/// The failures since `?1` per job: read from the partial index
/// `runs_failures` (failed and dead rows only; without statistics the
/// planner would walk every run of the window by job instead).
pub(crate) const FAILING_SQL: &str = "SELECT job_id, count(*) AS n, max(at) AS last \
     FROM runs INDEXED BY runs_failures \
     WHERE at >= ?1 AND outcome IN ('failed', 'dead') \
     GROUP BY job_id ORDER BY last DESC LIMIT ?2";

/// Jobs with failures since `since`, the most recent failure first.
pub(crate) fn query_failing(
    c: &Connection,
    since: DateTime<Utc>,
    limit: usize,
) -> rusqlite::Result<Vec<Failing>> {
    let mut st = c.prepare_cached(FAILING_SQL)?;
    let mut newest = c.prepare_cached(
        "SELECT outcome FROM runs WHERE job_id = ?1 ORDER BY at DESC, id DESC LIMIT 1",
    )?;
    let rows: Vec<(String, i64, i64)> = st
        .query_map(
            params![
                since.timestamp_millis(),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(job_id, n, last)| {
            let outcome: String = newest.query_row(params![job_id], |r| r.get(0))?;
            Ok(Failing {
                failed: u64::try_from(n).unwrap_or(0).min(FAILURES_COUNTED),
                last_failure: time(Some(last)).unwrap_or_default(),
                last_outcome: outcome.parse().unwrap_or(Outcome::Running),
                job_id,
            })
        })
        .collect()
}

/// Audit entries matching `q`, newest first.
/// The audit query; `?1` is the job, `?2`–`?6` who, action, since,
/// before and limit (each `NULL` when not asked). A job's entries are its
/// own (index `audit_job`) and those of writes of several jobs that name
/// it (`audit_jobs`), each read by its index.
pub(crate) fn audit_sql(by_job: bool) -> String {
    let job = if by_job {
        "(job_id = ?1 OR seq IN (SELECT seq FROM audit_jobs WHERE job_id = ?1))"
    } else {
        "?1 IS NULL"
    };
    format!(
        "SELECT seq, at, action, who, job_id, reason, detail, node FROM audit \
         WHERE {job} AND (?2 IS NULL OR who = ?2) \
         AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR at >= ?4) \
         AND (?5 IS NULL OR seq < ?5) ORDER BY seq DESC LIMIT ?6"
    )
}

pub(crate) fn query_audit(c: &Connection, q: &AuditQuery) -> rusqlite::Result<Vec<AuditRow>> {
    let mut st = c.prepare_cached(&audit_sql(q.job.is_some()))?;
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let rows = st
        .query_map(
            params![
                q.job,
                q.by,
                q.action,
                q.since.map(|t| t.timestamp_millis()),
                q.before,
                limit
            ],
            |r| {
                Ok(AuditRow {
                    seq: r.get("seq")?,
                    entry: AuditEntry {
                        at: time(r.get("at")?).unwrap_or_default(),
                        action: r.get("action")?,
                        by: r.get("who")?,
                        job_id: r.get("job_id")?,
                        jobs: Vec::new(),
                        reason: r.get("reason")?,
                        detail: r.get("detail")?,
                        node: r.get("node")?,
                    },
                })
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Alerts matching `q`, newest first, each with its deliveries.
pub(crate) fn query_alerts(c: &Connection, q: &AlertQuery) -> rusqlite::Result<Vec<AlertRow>> {
    let mut sql = String::from(
        "SELECT id, kind, job_id, fire_id, scheduled, reason, resolves, at, node, resolved_by \
         FROM alerts WHERE at >= ?1 AND (?2 IS NULL OR job_id = ?2)",
    );
    if q.open {
        sql.push_str(" AND kind != 'resolved' AND resolved_by IS NULL");
    }
    sql.push_str(" ORDER BY at DESC, id DESC LIMIT ?3");
    let mut st = c.prepare_cached(&sql)?;
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let mut rows: Vec<AlertRow> = st
        .query_map(params![q.since.timestamp_millis(), q.job, limit], |r| {
            let kind: String = r.get("kind")?;
            let resolves: Option<String> = r.get("resolves")?;
            Ok(AlertRow::new(
                Raised {
                    alert: Alert {
                        id: r.get("id")?,
                        kind: AlertKind::ALL
                            .into_iter()
                            .find(|k| k.as_str() == kind)
                            .unwrap_or(AlertKind::Failed),
                        job_id: r.get("job_id")?,
                        fire_id: r.get("fire_id")?,
                        scheduled: time(r.get("scheduled")?).unwrap_or_default(),
                        reason: r.get("reason")?,
                        resolves: resolves
                            .and_then(|j| serde_json::from_str(&j).ok())
                            .unwrap_or_default(),
                    },
                    at: time(r.get("at")?).unwrap_or_default(),
                    node: r.get("node")?,
                },
                r.get("resolved_by")?,
                Vec::new(),
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut sent = c.prepare_cached(
        "SELECT route, outcome, at, node, error FROM alert_deliveries WHERE alert = ?1 \
         ORDER BY at, route",
    )?;
    for row in &mut rows {
        row.deliveries = sent
            .query_map(params![row.alert.id], |r| {
                let outcome: String = r.get("outcome")?;
                Ok(Delivered {
                    alert: row.alert.id.clone(),
                    route: r.get("route")?,
                    outcome: DeliveryOutcome::ALL
                        .into_iter()
                        .find(|o| o.as_str() == outcome)
                        .unwrap_or(DeliveryOutcome::GaveUp),
                    at: time(r.get("at")?).unwrap_or_default(),
                    node: r.get("node")?,
                    error: r.get("error")?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(rows)
}
