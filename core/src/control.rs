//! What a control command does, decided without I/O: the scheduler's Control
//! actor calls [`decide`], appends the records (awaiting the confirm), applies
//! them to its view and sends the reply.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::{
    error::ValidationError,
    protocol::{
        audit::AuditEntry,
        control::{Command, ItemResult, Reply, ReplyError},
        registry::{RegistryRecord, StoredJob},
    },
    registry::{JobEntry, RegistryView},
};

/// The outcome of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answer; nothing to store.
    Reply(Reply),
    /// Append `records` to the registry, apply them, then answer.
    Append {
        records: Vec<RegistryRecord>,
        reply: Reply,
    },
    /// Fire job `id` now, outside its schedule, then answer.
    Trigger {
        id: String,
        manual: Manual,
        reply: Reply,
    },
    /// Record workflow occurrence `fire_id` of job `id` cancelled, with
    /// `reason` (who asked and why), then answer.
    Cancel {
        id: String,
        fire_id: String,
        reason: String,
        by: Option<String>,
        reply: Reply,
    },
    /// Fire job `id`'s occurrences `at` (a past window, oldest first), then
    /// answer with `reply` (it counts them and those `skipped` by overlap).
    Backfill {
        id: String,
        at: Vec<DateTime<Utc>>,
        reply: Reply,
    },
}

/// What a `trigger` asks beyond the job: another payload, why, and who.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manual {
    pub payload: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub by: Option<String>,
}

fn not_found(command: &str, id: &str) -> Decision {
    Decision::Reply(Reply::error(Some(command), ReplyError::no_job(id)))
}

fn prefixed(prefix: &str, e: ValidationError) -> ReplyError {
    ReplyError {
        field: format!("{prefix}.{}", e.field),
        message: e.message,
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A job as `get` and `list` show it.
pub fn describe(j: &JobEntry, now: DateTime<Utc>) -> Value {
    crate::registry_read::body(crate::registry_read::JobView::of(j, now))
}

/// Validates `job` against the view: `Ok(None)` when it is identical to the
/// stored definition (a no-op), `Ok(Some(record))` to store.
fn upsert_record(
    job: &crate::JobSpec,
    view: &RegistryView,
    now: DateTime<Utc>,
) -> Result<Option<RegistryRecord>, ValidationError> {
    let existing = view.get(&job.id);
    let existing = existing.as_deref();
    let created_at = existing.map_or(now, |e| e.created_at);
    job.validate(created_at, now)?;
    if existing.is_some_and(|e| &e.spec == job) {
        return Ok(None);
    }
    Ok(Some(RegistryRecord::Upsert {
        job: Box::new(job.clone()),
        created_at,
    }))
}

/// The refusal of a job whose pool has no work queues: its fires would come
/// back unroutable (ADR 0013).
fn pool_error(field: &str, pool: &str) -> ReplyError {
    ReplyError {
        field: field.to_string(),
        message: format!(
            "pool \"{pool}\" has no queues on this broker: add it to topology.pools and run `sundial topology apply`, or start a worker with --pool {pool} (it declares its pool's queues)"
        ),
    }
}

/// The first pool of `job` (its own, its steps') with no work queues: the
/// field that names it and the pool.
fn missing_pool(job: &crate::JobSpec, missing: &BTreeSet<String>) -> Option<(String, String)> {
    job.pools()
        .find(|(_, p)| missing.contains(*p))
        .map(|(f, p)| (f, p.to_string()))
}

/// Several upserts become one `upsert-many` record (one stream message).
fn batched(records: Vec<RegistryRecord>) -> Vec<RegistryRecord> {
    if records.len() < 2 {
        return records;
    }
    let jobs = records
        .into_iter()
        .filter_map(|r| match r {
            RegistryRecord::Upsert { job, created_at } => Some(StoredJob {
                job: *job,
                created_at,
                paused: None,
                paused_reason: None,
                paused_at: None,
                paused_by: None,
            }),
            _ => None,
        })
        .collect();
    vec![RegistryRecord::UpsertMany { jobs }]
}

/// Decides what `cmd` does given the current view at `now`.
/// `missing_pools` are pools of the command's jobs found to have no work
/// queues: their jobs are refused, naming `pool`.
pub fn decide(
    cmd: &Command,
    view: &RegistryView,
    missing_pools: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Decision {
    let name = cmd.name();
    match cmd {
        Command::Upsert { job, .. } => match upsert_record(job, view, now) {
            Err(e) => Decision::Reply(Reply::error(Some(name), prefixed("job", e))),
            Ok(_) if missing_pool(job, missing_pools).is_some() => {
                let (field, pool) = missing_pool(job, missing_pools).unwrap_or_default();
                Decision::Reply(Reply::error(
                    Some(name),
                    pool_error(&format!("job.{field}"), &pool),
                ))
            }
            Ok(None) => Decision::Reply(Reply::ok(
                name,
                Some(json!({"id": job.id, "changed": false})),
            )),
            Ok(Some(record)) => Decision::Append {
                records: vec![record],
                reply: Reply::ok(name, Some(json!({"id": job.id, "changed": true}))),
            },
        },
        Command::UpsertMany { jobs, .. } => {
            let mut records = Vec::new();
            let mut results = Vec::with_capacity(jobs.len());
            let mut seen = HashSet::new();
            for (i, job) in jobs.iter().enumerate() {
                let outcome = if !seen.insert(job.id.as_str()) {
                    Err(ReplyError {
                        field: format!("jobs[{i}].id"),
                        message: format!("duplicate id \"{}\" in this batch", job.id),
                    })
                } else {
                    upsert_record(job, view, now)
                        .map_err(|e| prefixed(&format!("jobs[{i}]"), e))
                        .and_then(|rec| match missing_pool(job, missing_pools) {
                            Some((field, pool)) => {
                                Err(pool_error(&format!("jobs[{i}].{field}"), &pool))
                            }
                            None => Ok(rec),
                        })
                };
                results.push(match outcome {
                    Ok(rec) => {
                        records.extend(rec);
                        ItemResult {
                            id: job.id.clone(),
                            ok: true,
                            error: None,
                        }
                    }
                    Err(e) => ItemResult {
                        id: job.id.clone(),
                        ok: false,
                        error: Some(e),
                    },
                });
            }
            let rejected = results.iter().filter(|r| !r.ok).count();
            // Counts in every case: with refusals, the others were applied.
            let counts = json!({"accepted": jobs.len() - rejected, "changed": records.len()});
            let mut reply = if rejected == 0 {
                Reply::ok(name, Some(counts.clone()))
            } else {
                Reply::error(
                    Some(name),
                    ReplyError {
                        field: "jobs".into(),
                        message: format!(
                            "{rejected} of {} jobs rejected; the others were applied",
                            jobs.len()
                        ),
                    },
                )
            };
            reply.result = Some(counts);
            reply.results = Some(results);
            if records.is_empty() {
                Decision::Reply(reply)
            } else {
                Decision::Append {
                    records: batched(records),
                    reply,
                }
            }
        }
        Command::Delete { id, .. } => match view.get(id) {
            None => not_found(name, id),
            Some(_) => Decision::Append {
                records: vec![RegistryRecord::Delete { id: id.clone() }],
                reply: Reply::ok(name, Some(json!({"id": id}))),
            },
        },
        Command::Pause { id, .. } | Command::Resume { id, .. } => {
            let reason = match cmd {
                Command::Pause { reason, by, .. } => Some((reason.clone(), by.clone())),
                _ => None,
            };
            let pause = reason.is_some();
            match view.get(id) {
                None => not_found(name, id),
                Some(j) if j.paused == pause => {
                    Decision::Reply(Reply::ok(name, Some(json!({"id": id, "changed": false}))))
                }
                Some(_) => Decision::Append {
                    records: vec![if let Some((reason, by)) = reason {
                        RegistryRecord::Pause {
                            id: id.clone(),
                            at: Some(now),
                            reason,
                            by,
                        }
                    } else {
                        RegistryRecord::Resume {
                            id: id.clone(),
                            at: Some(now),
                        }
                    }],
                    reply: Reply::ok(name, Some(json!({"id": id, "changed": true}))),
                },
            }
        }
        Command::Trigger {
            id,
            payload,
            reason,
            by,
        } => match view.get(id) {
            None => not_found(name, id),
            Some(_) => Decision::Trigger {
                id: id.clone(),
                manual: Manual {
                    payload: payload.clone(),
                    reason: reason.clone(),
                    by: by.clone(),
                },
                reply: Reply::ok(name, Some(json!({"id": id}))),
            },
        },
        Command::Cancel {
            fire_id,
            reason,
            by,
        } => {
            // The protocol checked the shape: `{job}@{instant}`.
            let id = fire_id.split_once('@').map_or("", |(job, _)| job);
            match view.get(id) {
                None => not_found(name, id),
                Some(j) if j.spec.workflow().is_none() => Decision::Reply(Reply::error(
                    Some(name),
                    ReplyError {
                        field: "fire_id".into(),
                        message: format!(
                            "{id} is not a workflow: only a workflow occurrence can be cancelled \
                             (a running attempt of a lone job ends by its timeout)"
                        ),
                    },
                )),
                Some(_) => Decision::Cancel {
                    id: id.to_string(),
                    fire_id: fire_id.clone(),
                    reason: format!(
                        "cancelled by {}{}",
                        by.as_deref().unwrap_or("(unknown)"),
                        reason
                            .as_deref()
                            .map_or(String::new(), |r| format!(": {r}"))
                    ),
                    by: by.clone(),
                    reply: Reply::ok(name, Some(json!({"id": id, "fire_id": fire_id}))),
                },
            }
        }
        Command::Backfill {
            id,
            from,
            to,
            overlap,
            dry_run,
            ..
        } => match view.get(id) {
            None => not_found(name, id),
            Some(j) => match backfill(name, &j, *from, *to, *overlap, now) {
                Decision::Backfill { reply, .. } if *dry_run => Decision::Reply(reply),
                d => d,
            },
        },
        Command::Get { id } => match view.get(id) {
            None => not_found(name, id),
            Some(j) => {
                let mut v = describe(&j, now);
                v["job"] = serde_json::to_value(&j.spec).unwrap_or(Value::Null);
                Decision::Reply(Reply::ok(name, Some(v)))
            }
        },
        Command::List {
            labels,
            q,
            pool,
            paused,
            after,
            limit,
        } => {
            let limit = limit.unwrap_or(crate::protocol::control::LIST_DEFAULT_LIMIT);
            let filter = crate::registry::JobFilter {
                labels: labels.clone(),
                q: q.clone(),
                pool: pool.clone(),
                paused: *paused,
            };
            let (page, more) = view.list(&filter, after.as_deref(), limit);
            // The cursor of the next page; null on the last one.
            let next_after = more
                .then(|| page.last().map(|j| j.spec.id.clone()))
                .flatten();
            let jobs: Vec<Value> = page.into_iter().map(|j| describe(&j, now)).collect();
            Decision::Reply(Reply::ok(
                name,
                Some(json!({ "jobs": jobs, "next_after": next_after })),
            ))
        }
    }
}

/// The audit entry of `cmd`, answered `reply` at `now` (ADR 0023): for a
/// write that changed something (an identical upsert, a pause of a paused
/// job, a dry run or a refusal writes none).
pub fn audit_of(cmd: &Command, reply: &Reply, now: DateTime<Utc>) -> Option<AuditEntry> {
    let (reason, by) = cmd.asked()?;
    if !reply.ok && !matches!(cmd, Command::UpsertMany { .. }) {
        return None;
    }
    let result = reply.result.as_ref();
    let field = |k: &str| result.and_then(|r| r.get(k));
    if field("changed") == Some(&Value::Bool(false)) {
        return None;
    }
    let mut e = AuditEntry::new(cmd.name(), now);
    e.by = by.map(str::to_string);
    e.reason = reason.map(str::to_string);
    match cmd {
        Command::UpsertMany { .. } => {
            if field("changed").and_then(Value::as_u64).unwrap_or(0) == 0 {
                return None;
            }
            let ids: Vec<String> = reply
                .results
                .iter()
                .flatten()
                .filter(|r| r.ok)
                .map(|r| r.id.clone())
                .collect();
            e = e.naming("jobs accepted", &ids).of_jobs(&ids);
        }
        Command::Upsert { job, .. } => {
            e.job_id = Some(job.id.clone());
            e = e.with_detail(format!("schedule \"{}\" in {}", job.schedule, job.timezone));
        }
        Command::Delete { id, .. } | Command::Pause { id, .. } | Command::Resume { id, .. } => {
            e.job_id = Some(id.clone());
        }
        Command::Trigger { id, .. } => {
            e.job_id = Some(id.clone());
            if let Some(f) = field("fire_id").and_then(Value::as_str) {
                e = e.with_detail(format!("fired {f}"));
            }
        }
        Command::Cancel { fire_id, .. } => {
            e.job_id = fire_id.split_once('@').map(|(j, _)| j.to_string());
            e = e.with_detail(format!("cancelled {fire_id}"));
        }
        Command::Backfill {
            id,
            from,
            to,
            dry_run,
            ..
        } => {
            if *dry_run {
                return None;
            }
            e.job_id = Some(id.clone());
            let n = |k: &str| field(k).and_then(Value::as_u64).unwrap_or(0);
            e = e.with_detail(format!(
                "fired {} of {} occurrences in [{}, {})",
                n("fired"),
                n("occurrences"),
                rfc3339(*from),
                rfc3339(*to)
            ));
        }
        Command::Get { .. } | Command::List { .. } => return None,
    }
    Some(e)
}

/// The occurrences of `j` in `[from, to)` a backfill fires, as `overlap`
/// (the job's when `None`) allows: they would all run at once, so `forbid`
/// keeps the first and `replace` the last.
fn backfill(
    name: &str,
    j: &JobEntry,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    overlap: Option<crate::job::Overlap>,
    now: DateTime<Utc>,
) -> Decision {
    use crate::{job::Overlap, protocol::control::BACKFILL_MAX};
    let refuse = |field: &str, message: String| {
        Decision::Reply(Reply::error(
            Some(name),
            ReplyError {
                field: field.into(),
                message,
            },
        ))
    };
    if to <= from {
        return refuse("to", "must be after `from`".into());
    }
    if to > now {
        return refuse(
            "to",
            format!(
                "must not be in the future (now is {}): the schedule fires what is to come",
                rfc3339(now)
            ),
        );
    }
    let mut at = Vec::new();
    let mut t = from - chrono::Duration::milliseconds(1);
    while let Some(next) = j.next_after(t).filter(|n| *n < to) {
        if at.len() == BACKFILL_MAX {
            return refuse(
                "to",
                format!(
                    "the window holds more than {BACKFILL_MAX} occurrences: backfill it in parts"
                ),
            );
        }
        at.push(next);
        t = next;
    }
    let found = at.len();
    let overlap = overlap.unwrap_or(j.spec.overlap);
    match overlap {
        Overlap::Allow => {}
        Overlap::Forbid => at.truncate(1),
        Overlap::Replace => {
            let last = at.pop();
            at = last.into_iter().collect();
        }
    }
    let reply = Reply::ok(
        name,
        Some(json!({
            "id": j.spec.id,
            "occurrences": found,
            "fired": at.len(),
            "skipped": found - at.len(),
            "overlap": overlap,
            "first": at.first().map(|t| rfc3339(*t)),
            "last": at.last().map(|t| rfc3339(*t)),
        })),
    );
    if at.is_empty() {
        return Decision::Reply(reply);
    }
    Decision::Backfill {
        id: j.spec.id.clone(),
        at,
        reply,
    }
}
