//! `sundial job …`: control commands from the command line. Each waits for
//! the scheduler's reply (bounded by `--timeout`) and exits non-zero with the
//! error on failure.

use std::{collections::BTreeMap, io::Write, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use lapin::Connection;
use serde_json::Value;
use sundial_core::{
    job::{parse_job_file, FileFormat},
    protocol::control::{Command, Reply},
    registry::JobEntry,
    settings::Settings,
    JobSpec,
};

use super::CommandError;
use crate::cli::JobCmd;

fn failed(e: impl ToString) -> CommandError {
    CommandError::Failed(e.to_string())
}

fn io(e: std::io::Error) -> CommandError {
    CommandError::output(e)
}

/// One connection, many calls.
struct Client<'a> {
    conn: Connection,
    settings: &'a Settings,
    timeout: Duration,
    /// `--reason` and who asks (`--as`, else $USER), stamped on writes.
    asked: (Option<String>, Option<String>),
}

impl Client<'_> {
    async fn call(&self, cmd: &Command) -> Result<Reply, CommandError> {
        let mut cmd = cmd.clone();
        cmd.stamp(self.asked.0.as_deref(), self.asked.1.as_deref());
        sundial_amqp::client::call_signed(
            &self.conn,
            &self.settings.topology,
            &cmd,
            self.timeout,
            self.settings.control.hmac_key.as_deref(),
        )
        .await
        .map_err(failed)
    }

    /// Every job with `labels`, page by page.
    async fn list_all(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Value>, CommandError> {
        sundial_amqp::client::list_all(
            &self.conn,
            &self.settings.topology,
            labels,
            self.timeout,
            self.settings.control.hmac_key.as_deref(),
        )
        .await
        .map_err(failed)
    }

    /// Calls and turns an error reply into a failure naming the field.
    async fn call_ok(&self, cmd: &Command) -> Result<Reply, CommandError> {
        let reply = self.call(cmd).await?;
        match &reply.error {
            Some(e) if !reply.ok => Err(failed(format!("{}: {}", e.field, e.message))),
            _ => Ok(reply),
        }
    }
}

pub async fn run(
    settings: &Settings,
    cmd: &JobCmd,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let client_args = match cmd {
        // Asks the HTTP API, not the control queue.
        JobCmd::History { id, count, history } => {
            return super::history::job_history(settings, id, *count, history, out).await;
        }
        JobCmd::Log { id, count, history } => {
            return super::history::job_log(settings, id, *count, history, out).await;
        }
        JobCmd::Apply { client, .. }
        | JobCmd::Next { client, .. }
        | JobCmd::List { client, .. }
        | JobCmd::Get { client, .. }
        | JobCmd::Delete { client, .. }
        | JobCmd::Pause { client, .. }
        | JobCmd::Resume { client, .. }
        | JobCmd::Trigger { client, .. }
        | JobCmd::Cancel { client, .. }
        | JobCmd::Backfill { client, .. } => client,
    };
    // Read the file before connecting: a bad file is a usage error (exit 2).
    let file_jobs = match cmd {
        JobCmd::Apply { file, .. } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let jobs = parse_job_file(&text, FileFormat::from_path(file))
                .map_err(|e| CommandError::Usage(format!("{}: {e}", file.display())))?;
            // Valid but not doing what it says: one warning line each (the
            // scheduler validates; --dry-run shows invalid jobs in its plan).
            for (i, job) in jobs.iter().enumerate() {
                let advice = job.advisories(
                    settings.worker.consumer_timeout,
                    &settings.topology.retry_tiers,
                );
                for a in advice {
                    // Not eprintln!: a closed stderr must not panic.
                    let _ = writeln!(
                        std::io::stderr(),
                        "warning: {}: jobs[{i}] (\"{}\"): {a}",
                        file.display(),
                        sundial_core::protocol::headers::bounded_to(&job.id, 80)
                    );
                }
            }
            Some(jobs)
        }
        _ => None,
    };
    // Who asks and why, stamped on every write (the audit trail).
    let asked = match cmd {
        JobCmd::Apply { asked, .. }
        | JobCmd::Delete { asked, .. }
        | JobCmd::Pause { asked, .. }
        | JobCmd::Resume { asked, .. }
        | JobCmd::Trigger { asked, .. }
        | JobCmd::Cancel { asked, .. }
        | JobCmd::Backfill { asked, .. } => (asked.reason.clone(), asked.by()),
        _ => (None, None),
    };
    let conn = sundial_amqp::broker::connect_to(&settings.broker, "sundial job").await?;
    let client = Client {
        conn,
        settings,
        timeout: client_args.timeout.into(),
        asked,
    };
    let json = client_args.json;
    let result = match (cmd, file_jobs) {
        (JobCmd::Apply { prune, dry_run, .. }, Some(jobs)) => {
            apply(&client, jobs, *prune, *dry_run, json, out).await
        }
        (JobCmd::Next { id, count, .. }, _) => next(&client, id, *count, out).await,
        // Every page, printed as one reply.
        (list @ JobCmd::List { .. }, _) => {
            let Command::List { labels, .. } = simple_command(list)? else {
                return Err(failed("not a list command"));
            };
            let jobs = client.list_all(&labels).await?;
            let reply = Reply::ok(
                "list",
                Some(serde_json::json!({"jobs": jobs, "next_after": null})),
            );
            print_reply(&reply, json, out).map_err(io)
        }
        (other, _) => {
            let command = simple_command(other)?;
            let reply = client.call(&command).await?;
            print_reply(&reply, json, out).map_err(io)?;
            match &reply.error {
                Some(e) if !reply.ok => Err(failed(format!("{}: {}", e.field, e.message))),
                _ => Ok(()),
            }
        }
    };
    let _ = client.conn.close(200, "done".into()).await;
    result
}

fn simple_command(cmd: &JobCmd) -> Result<Command, CommandError> {
    Ok(match cmd {
        JobCmd::List { labels, .. } => {
            let mut map = BTreeMap::new();
            for l in labels {
                let (k, v) = l.split_once('=').ok_or_else(|| {
                    CommandError::Usage(format!("--label must be key=value, got \"{l}\""))
                })?;
                map.insert(k.to_string(), v.to_string());
            }
            Command::List {
                labels: map,
                q: None,
                pool: None,
                paused: None,
                after: None,
                limit: None,
            }
        }
        JobCmd::Get { id, .. } => Command::Get { id: id.clone() },
        JobCmd::Delete { id, .. } => Command::Delete {
            id: id.clone(),
            reason: None,
            by: None,
        },
        JobCmd::Pause { id, .. } => Command::Pause {
            id: id.clone(),
            reason: None,
            by: None,
        },
        JobCmd::Backfill {
            id,
            from,
            to,
            overlap,
            dry_run,
            ..
        } => Command::Backfill {
            dry_run: *dry_run,
            reason: None,
            by: None,
            id: id.clone(),
            from: super::history::instant("--from", from)?,
            to: super::history::instant("--to", to)?,
            overlap: match overlap.as_deref() {
                None => None,
                Some("allow") => Some(sundial_core::job::Overlap::Allow),
                Some("forbid") => Some(sundial_core::job::Overlap::Forbid),
                Some("replace") => Some(sundial_core::job::Overlap::Replace),
                Some(other) => {
                    return Err(CommandError::Usage(format!(
                        "--overlap must be allow, forbid or replace, got \"{other}\""
                    )))
                }
            },
        },
        JobCmd::Resume { id, .. } => Command::Resume {
            id: id.clone(),
            reason: None,
            by: None,
        },
        JobCmd::Trigger {
            id, payload, asked, ..
        } => Command::Trigger {
            id: id.clone(),
            payload: payload
                .as_deref()
                .map(|p| {
                    serde_json::from_str(p)
                        .map_err(|e| CommandError::Usage(format!("--payload: not JSON: {e}")))
                })
                .transpose()?,
            reason: asked.reason.clone(),
            by: asked.by(),
        },
        JobCmd::Cancel { fire_id, asked, .. } => Command::Cancel {
            fire_id: fire_id.clone(),
            reason: asked.reason.clone(),
            by: asked.by(),
        },
        JobCmd::Apply { .. }
        | JobCmd::Next { .. }
        | JobCmd::History { .. }
        | JobCmd::Log { .. } => return Err(CommandError::Failed("not a single command".into())),
    })
}

/// Ids of every job the scheduler has.
async fn existing_ids(client: &Client<'_>) -> Result<Vec<String>, CommandError> {
    Ok(client
        .list_all(&BTreeMap::new())
        .await?
        .iter()
        .filter_map(|j| j.get("id").and_then(Value::as_str).map(str::to_string))
        .collect())
}

/// Jobs per `upsert-many` command: keeps each command well under the
/// control queue's 1 MiB message limit.
const APPLY_BATCH: usize = 500;

/// Sends `jobs` as `upsert-many` commands of [`APPLY_BATCH`], in order, and
/// merges the replies into one (every job keeps its own result).
async fn upsert_in_batches(client: &Client<'_>, jobs: Vec<JobSpec>) -> Result<Reply, CommandError> {
    let total = jobs.len();
    let (mut changed, mut results) = (0u64, Vec::with_capacity(total));
    let progress = crate::progress::bar(total as u64, "applying jobs");
    for (n, batch) in jobs.chunks(APPLY_BATCH).enumerate() {
        progress.inc(batch.len() as u64);
        // Stopped part-way (the scheduler went away, Ctrl-C): say how far
        // it got; applying the file again is safe (upserts are idempotent).
        let applied = n * APPLY_BATCH;
        let stopped = |why: String| {
            progress.finish_and_clear();
            failed(format!(
                "{why}; {applied} of {total} jobs were applied (jobs[0..{applied}]), jobs[{applied}..{}] may or may not have been; apply the file again to finish (it is idempotent)",
                applied + batch.len()
            ))
        };
        let cmd = Command::UpsertMany {
            jobs: batch.to_vec(),
            reason: None,
            by: None,
        };
        let call = client.call(&cmd);
        let reply = tokio::select! {
            r = call => r.map_err(|e| stopped(e.to_string()))?,
            _ = tokio::signal::ctrl_c() => return Err(stopped("interrupted".into())),
        };
        changed += reply
            .result
            .as_ref()
            .and_then(|r| r.get("changed"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match reply.results {
            Some(r) => results.extend(r.into_iter().map(|mut item| {
                // Error paths count from the file, not from the batch.
                if let Some(e) = item.error.as_mut() {
                    e.field = renumber(&e.field, n * APPLY_BATCH);
                }
                item
            })),
            // Refused as a whole (not an item error): say so, stop.
            None => {
                progress.finish_and_clear();
                return Ok(reply);
            }
        }
    }
    progress.finish_and_clear();
    let rejected = results.iter().filter(|r| !r.ok).count();
    let counts = serde_json::json!({"accepted": total - rejected, "changed": changed});
    let mut reply = if rejected == 0 {
        Reply::ok("upsert-many", Some(counts.clone()))
    } else {
        Reply::error(
            Some("upsert-many"),
            sundial_core::protocol::control::ReplyError {
                field: "jobs".into(),
                message: format!("{rejected} of {total} jobs rejected; the others were applied"),
            },
        )
    };
    reply.result = Some(counts);
    reply.results = Some(results);
    Ok(reply)
}

/// `jobs[3].schedule` → `jobs[{3 + offset}].schedule`.
fn renumber(field: &str, offset: usize) -> String {
    let Some(rest) = field.strip_prefix("jobs[") else {
        return field.to_string();
    };
    match rest.split_once(']') {
        Some((i, tail)) => match i.parse::<usize>() {
            Ok(i) => format!("jobs[{}]{tail}", i + offset),
            Err(_) => field.to_string(),
        },
        None => field.to_string(),
    }
}

/// Declarative apply: upsert every job of the file; with `prune`, delete
/// the jobs the file does not mention; with `dry_run`, only report.
async fn apply(
    client: &Client<'_>,
    jobs: Vec<JobSpec>,
    prune: bool,
    dry_run: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let to_delete: Vec<String> = if prune {
        let keep: std::collections::HashSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        existing_ids(client)
            .await?
            .into_iter()
            .filter(|id| !keep.contains(id.as_str()))
            .collect()
    } else {
        Vec::new()
    };
    if dry_run {
        // The scheduler's own rules: an invalid job is in the plan as such
        // (and the dry run exits 2), never as "create".
        let now = Utc::now();
        let mut plan: Vec<(String, String)> = Vec::new();
        let mut invalid = 0;
        for (i, job) in jobs.iter().enumerate() {
            let shown = sundial_core::protocol::headers::bounded_to(&job.id, 80).into_owned();
            if let Err(e) = job.validate(now, now) {
                invalid += 1;
                plan.push((shown, format!("invalid jobs[{i}].{e}")));
                continue;
            }
            let reply = client.call(&Command::Get { id: job.id.clone() }).await?;
            let stored = reply.result.as_ref().and_then(|r| r.get("job"));
            let action = match stored {
                None => "create",
                Some(s) if serde_json::to_value(job).ok().as_ref() == Some(s) => "unchanged",
                Some(_) => "update",
            };
            plan.push((shown, action.to_string()));
        }
        plan.extend(
            to_delete
                .iter()
                .map(|id| (id.clone(), "delete".to_string())),
        );
        if json {
            let v: Vec<Value> = plan
                .iter()
                .map(|(id, a)| serde_json::json!({"id": id, "action": a}))
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            )
            .map_err(io)?;
        } else {
            let mut t = crate::table::Rows::new(&["ID", "ACTION"], &[]);
            for (id, action) in &plan {
                t.push([id.as_str(), action.as_str()]);
            }
            write!(out, "{}", t.render("")).map_err(io)?;
        }
        if invalid > 0 {
            return Err(CommandError::Usage(format!(
                "{invalid} of {} jobs are invalid (see the plan)",
                jobs.len()
            )));
        }
        return Ok(());
    }
    let reply = if jobs.len() == 1 {
        let job = jobs
            .into_iter()
            .next()
            .ok_or_else(|| failed("empty file"))?;
        client
            .call(&Command::Upsert {
                job: Box::new(job),
                reason: None,
                by: None,
            })
            .await?
    } else {
        upsert_in_batches(client, jobs).await?
    };
    print_reply(&reply, json, out).map_err(io)?;
    if let Some(e) = reply.error.as_ref().filter(|_| !reply.ok) {
        return Err(failed(format!("{}: {}", e.field, e.message)));
    }
    for id in to_delete {
        client
            .call_ok(&Command::Delete {
                id: id.clone(),
                reason: Some("not in the applied file (--prune)".into()),
                by: None,
            })
            .await?;
        if !json {
            writeln!(out, "{id:<40} deleted (not in the file)").map_err(io)?;
        }
    }
    Ok(())
}

/// The job's next `count` occurrences from now, in its zone.
async fn next(
    client: &Client<'_>,
    id: &str,
    count: usize,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let reply = client.call_ok(&Command::Get { id: id.to_string() }).await?;
    let result = reply.result.unwrap_or_default();
    let spec: JobSpec =
        serde_json::from_value(result.get("job").cloned().unwrap_or_default()).map_err(failed)?;
    let created_at = result
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    let entry = JobEntry::new(spec, created_at).map_err(failed)?;
    let tz = entry.schedule.timezone();
    let mut t = Utc::now();
    for _ in 0..count {
        let Some(at) = entry.next_after(t) else { break };
        writeln!(
            out,
            "{}",
            at.with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        )
        .map_err(io)?;
        t = at;
    }
    Ok(())
}

fn print_reply(reply: &Reply, json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if json {
        let text = serde_json::to_string_pretty(reply).unwrap_or_default();
        return writeln!(out, "{text}");
    }
    if let Some(results) = &reply.results {
        let mut t = crate::table::Rows::new(&["ID", "RESULT"], &[]);
        for r in results {
            match &r.error {
                None => t.push([r.id.as_str(), "ok"]),
                Some(e) => t.push([r.id.clone(), format!("error {}: {}", e.field, e.message)]),
            }
        }
        return write!(out, "{}", t.render(""));
    }
    let Some(result) = &reply.result else {
        return Ok(());
    };
    if let Some(jobs) = result.get("jobs").and_then(Value::as_array) {
        let mut t = crate::table::Rows::new(
            &[
                "ID", "SCHEDULE", "TIMEZONE", "POOL", "PAUSED", "NEXT", "REASON",
            ],
            &[],
        );
        for j in jobs {
            let s = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
            let paused = j.get("paused").and_then(Value::as_bool).unwrap_or(false);
            t.push([
                s("id"),
                s("schedule"),
                s("timezone"),
                s("pool"),
                paused.to_string(),
                s("next"),
                short(&s("paused_reason"), 60),
            ]);
        }
        return write!(out, "{}", t.render(""));
    }
    let id = result.get("id").and_then(Value::as_str).unwrap_or("");
    match (
        reply.command.as_deref(),
        result.get("changed").and_then(Value::as_bool),
    ) {
        (Some("get"), _) => {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(result).unwrap_or_default()
            )?;
            match result.get("steps").and_then(Value::as_array) {
                Some(steps) if !steps.is_empty() => write!(out, "{}", draw_steps(steps)),
                _ => Ok(()),
            }
        }
        (Some("trigger"), _) => writeln!(
            out,
            "trigger: {id} fired ({})",
            result.get("fire_id").and_then(Value::as_str).unwrap_or("-")
        ),
        (Some("cancel"), _) => writeln!(
            out,
            "cancel: {} cancelled",
            result.get("fire_id").and_then(Value::as_str).unwrap_or("-")
        ),
        (Some("backfill"), _) => {
            let n = |k: &str| result.get(k).and_then(Value::as_u64).unwrap_or(0);
            let t = |k: &str| result.get(k).and_then(Value::as_str).unwrap_or("-");
            writeln!(
                out,
                "backfill: {id}: {} of {} occurrences fired ({} left out by overlap {}), {} … {}",
                n("fired"),
                n("occurrences"),
                n("skipped"),
                t("overlap"),
                t("first"),
                t("last")
            )
        }
        (Some(c), Some(false)) => writeln!(out, "{c}: {id} unchanged"),
        (Some(c), _) => writeln!(out, "{c}: {id} ok"),
        (None, _) => writeln!(out, "ok"),
    }
}

/// A workflow's steps as a table in the order they can run: each step's
/// stage (1 + the latest stage it waits for), its fan-out, its `when` and
/// the steps it waits for (its edges).
fn draw_steps(steps: &[Value]) -> String {
    let text = |s: &Value, k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let after = |s: &Value| -> Vec<String> {
        s.get("after")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    // Stages by relaxation: the graph is acyclic (checked at upsert), so
    // at most one pass per step settles them.
    let ids: Vec<String> = steps.iter().map(|s| text(s, "id")).collect();
    let mut stage = vec![1usize; steps.len()];
    for _ in 0..steps.len() {
        for (i, s) in steps.iter().enumerate() {
            let deepest = after(s)
                .iter()
                .filter_map(|a| ids.iter().position(|x| x == a))
                .map(|j| stage[j] + 1)
                .max()
                .unwrap_or(1);
            stage[i] = stage[i].max(deepest);
        }
    }
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|&i| (stage[i], i));
    let mut t = crate::table::Rows::new(&["STAGE", "STEP", "FAN-OUT", "WHEN", "AFTER"], &[]);
    for i in order {
        let s = &steps[i];
        let fan = if s.get("every_worker").and_then(Value::as_bool) == Some(true) {
            "every worker".to_string()
        } else {
            match s.get("shards").and_then(Value::as_u64).unwrap_or(1) {
                1 => "-".to_string(),
                n => format!("{n} shards"),
            }
        };
        let a = after(s);
        t.push([
            stage[i].to_string(),
            ids[i].clone(),
            fan,
            text(s, "when"),
            if a.is_empty() {
                "(starts with the occurrence)".to_string()
            } else {
                a.join(", ")
            },
        ]);
    }
    format!("steps:\n{}", t.render("  "))
}

/// `text` cut to `max` characters (an ellipsis says so): a long pause
/// reason must not push the table off the screen (`get` shows it whole).
fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
