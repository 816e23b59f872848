//! `sundial dlq …`: dead letters of a pool — list, show, replay, purge,
//! watch. Reads never consume: what is not replayed or purged stays.

use std::io::Write;

use chrono::{SecondsFormat, Utc};
use sundial_amqp::dlq::{Action, DeadLetter, Dlq};
use sundial_core::settings::Settings;
use tokio_util::sync::CancellationToken;

use super::CommandError;
use crate::cli::{DlqArgs, DlqCmd};

fn failed(e: impl ToString) -> CommandError {
    CommandError::Failed(e.to_string())
}

/// A progress bar over the queue's depth (every letter is read once).
async fn bar(dlq: &Dlq<'_>, what: &str) -> indicatif::ProgressBar {
    let depth = dlq.depth().await.ok().flatten().unwrap_or(0);
    crate::progress::bar(u64::from(depth), what)
}

fn io(e: std::io::Error) -> CommandError {
    CommandError::output(e)
}

pub async fn run(
    settings: &Settings,
    cmd: &DlqCmd,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let args = match cmd {
        DlqCmd::List { dlq, .. }
        | DlqCmd::Show { dlq, .. }
        | DlqCmd::Replay { dlq, .. }
        | DlqCmd::Purge { dlq, .. }
        | DlqCmd::Watch { dlq } => dlq,
    };
    let pool = args
        .pool
        .clone()
        .unwrap_or_else(|| settings.worker.pool.clone());
    sundial_core::job::check_pool("--pool", &pool)
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    // A usage error before anything is asked of the broker.
    let payload: Option<serde_json::Value> = match cmd {
        DlqCmd::Replay {
            payload: Some(p), ..
        } => Some(
            serde_json::from_str(p)
                .map_err(|e| CommandError::Usage(format!("--payload: not JSON: {e}")))?,
        ),
        _ => None,
    };
    let conn = sundial_amqp::broker::connect_to(&settings.broker, "sundial dlq").await?;
    let mut dlq = Dlq::new(&conn, &settings.topology, &pool);
    if let DlqCmd::Replay { asked, .. } | DlqCmd::Purge { asked, .. } = cmd {
        dlq = dlq.asked(sundial_amqp::dlq::Asked {
            by: asked.by(),
            reason: asked.reason.clone(),
            node: Some("sundial dlq".into()),
        });
    }
    if let Some(payload) = payload {
        let key = settings
            .control
            .hmac_key
            .as_deref()
            .map(std::sync::Arc::from);
        dlq = dlq.with_payload(payload, key);
    }
    let result = run_on(&dlq, cmd, args, out).await;
    // Bounded: the command's work is done either way.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.close(200, "done".into()),
    )
    .await;
    result
}

async fn run_on(
    dlq: &Dlq<'_>,
    cmd: &DlqCmd,
    args: &DlqArgs,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    match cmd {
        DlqCmd::List { job, .. } => {
            let mut all = dlq.list().await?;
            all.retain(|d| job.is_none() || d.job_id == *job);
            if args.json {
                return json(&all, out);
            }
            let mut t = crate::table::Rows::new(
                &["FIRE ID", "JOB", "ATTEMPTS", "AGE", "LAST ERROR"],
                &[2, 3],
            );
            for d in &all {
                t.push([
                    d.fire_id.clone().unwrap_or_else(|| "-".into()),
                    d.job_id.clone().unwrap_or_else(|| "-".into()),
                    d.attempts.map_or_else(|| "-".into(), |a| a.to_string()),
                    age(d),
                    one_line(&d.error),
                ]);
            }
            write!(out, "{}", t.render("")).map_err(io)
        }
        DlqCmd::Show { fire_id, .. } => {
            let all = dlq.list().await?;
            let Some(d) = all
                .into_iter()
                .find(|d| d.fire_id.as_deref() == Some(fire_id))
            else {
                return Err(failed(format!(
                    "no dead letter with fire id \"{fire_id}\" in this pool"
                )));
            };
            if args.json {
                return json(&d, out);
            }
            writeln!(out, "fire id:  {fire_id}").map_err(io)?;
            writeln!(out, "error:    {}", d.error).map_err(io)?;
            writeln!(out, "headers:").map_err(io)?;
            for (k, v) in &d.headers {
                writeln!(out, "  {k}: {v}").map_err(io)?;
            }
            match (&d.fire, &d.undecodable) {
                (Some(f), _) => {
                    let text = serde_json::to_string_pretty(f).map_err(failed)?;
                    writeln!(out, "fire event:\n{text}").map_err(io)?;
                }
                (None, Some(why)) => writeln!(out, "body: undecodable ({why})").map_err(io)?,
                (None, None) => {}
            }
            Ok(())
        }
        DlqCmd::Replay { job, fire_ids, .. } => {
            let progress = bar(dlq, "reading dead letters").await;
            let settled = dlq
                .settle(
                    Action::Replay,
                    |d| selected(d, job.as_deref(), fire_ids),
                    || progress.inc(1),
                )
                .await?;
            progress.finish_and_clear();
            report("replayed", &settled, args.json, out)?;
            missing(fire_ids, &settled.done)
        }
        DlqCmd::Purge { job, yes, .. } => {
            if !yes {
                return Err(CommandError::Usage(
                    "purge deletes dead letters for good: add --yes to confirm".into(),
                ));
            }
            let progress = bar(dlq, "reading dead letters").await;
            let settled = dlq
                .settle(
                    Action::Purge,
                    |d| selected(d, job.as_deref(), &[]),
                    || progress.inc(1),
                )
                .await?;
            progress.finish_and_clear();
            report("purged", &settled, args.json, out)
        }
        DlqCmd::Watch { .. } => {
            let stop = CancellationToken::new();
            tokio::spawn(super::scheduler::cancel_on_signal(stop.clone()));
            let json_out = args.json;
            let mut write_err = None;
            dlq.watch(stop.clone(), |d| {
                let line = if json_out {
                    serde_json::to_string(&d).unwrap_or_default()
                } else {
                    format!(
                        "{} {} job={} attempts={} error={}",
                        Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
                        d.fire_id.as_deref().unwrap_or("-"),
                        d.job_id.as_deref().unwrap_or("-"),
                        d.attempts.map_or_else(|| "-".into(), |a| a.to_string()),
                        one_line(&d.error)
                    )
                };
                if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                    write_err = Some(e);
                    stop.cancel();
                }
            })
            .await?;
            write_err.map_or(Ok(()), |e| Err(io(e)))
        }
    }
}

fn selected(d: &DeadLetter, job: Option<&str>, fire_ids: &[String]) -> bool {
    let by_job = job.is_none_or(|j| d.job_id.as_deref() == Some(j));
    let by_id = fire_ids.is_empty()
        || d.fire_id
            .as_ref()
            .is_some_and(|id| fire_ids.iter().any(|f| f == id));
    by_job && by_id
}

fn report(
    verb: &str,
    settled: &sundial_amqp::dlq::Settled,
    as_json: bool,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    if as_json {
        return json(settled, out);
    }
    for id in &settled.done {
        writeln!(out, "{verb} {id}").map_err(io)?;
    }
    for (id, why) in &settled.skipped {
        writeln!(out, "skipped {id}: {why}").map_err(io)?;
    }
    writeln!(
        out,
        "{} {verb}, {} skipped",
        settled.done.len(),
        settled.skipped.len()
    )
    .map_err(io)?;
    if let Some(why) = &settled.unrecorded {
        writeln!(out, "warning: not recorded in the history: {why}").map_err(io)?;
    }
    Ok(())
}

/// Named fire ids that were not found fail the command.
fn missing(wanted: &[String], done: &[String]) -> Result<(), CommandError> {
    let absent: Vec<&str> = wanted
        .iter()
        .filter(|w| !done.contains(w))
        .map(String::as_str)
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(failed(format!(
            "not replayed (not found in the dead-letter queue, or skipped): {}",
            absent.join(", ")
        )))
    }
}

fn json(v: &impl serde::Serialize, out: &mut impl Write) -> Result<(), CommandError> {
    let text = serde_json::to_string_pretty(v).map_err(failed)?;
    writeln!(out, "{text}").map_err(io)
}

fn age(d: &DeadLetter) -> String {
    d.dead_at.map_or_else(
        || "-".into(),
        |t| {
            let secs = (Utc::now() - t).num_seconds().max(0);
            match secs {
                s if s < 120 => format!("{s}s"),
                s if s < 7200 => format!("{}m", s / 60),
                s if s < 172_800 => format!("{}h", s / 3600),
                s => format!("{}d", s / 86_400),
            }
        },
    )
}

fn one_line(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > 100 {
        format!("{}…", first.chars().take(100).collect::<String>())
    } else {
        first.to_string()
    }
}
