//! `sundial job …`: control commands from the command line. Each waits for
//! the scheduler's reply (bounded by `--timeout`) and exits non-zero with the
//! error on failure.

use std::{collections::BTreeMap, io::Write};

use serde_json::Value;
use sundial_core::{
    job::{parse_job_file, FileFormat},
    protocol::control::{Command, Reply},
    settings::Settings,
};

use super::CommandError;
use crate::cli::{ClientArgs, JobCmd};

fn client_and_command(cmd: &JobCmd) -> Result<(&ClientArgs, Command), CommandError> {
    Ok(match cmd {
        JobCmd::Apply { file, client } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let mut jobs = parse_job_file(&text, FileFormat::from_path(file))
                .map_err(|e| CommandError::Usage(format!("{}: {e}", file.display())))?;
            let command = if jobs.len() == 1 {
                Command::Upsert {
                    job: Box::new(jobs.remove(0)),
                }
            } else {
                Command::UpsertMany { jobs }
            };
            (client, command)
        }
        JobCmd::List { labels, client } => {
            let mut map = BTreeMap::new();
            for l in labels {
                let (k, v) = l.split_once('=').ok_or_else(|| {
                    CommandError::Usage(format!("--label must be key=value, got \"{l}\""))
                })?;
                map.insert(k.to_string(), v.to_string());
            }
            (client, Command::List { labels: map })
        }
        JobCmd::Get { id, client } => (client, Command::Get { id: id.clone() }),
        JobCmd::Delete { id, client } => (client, Command::Delete { id: id.clone() }),
        JobCmd::Pause { id, client } => (client, Command::Pause { id: id.clone() }),
        JobCmd::Resume { id, client } => (client, Command::Resume { id: id.clone() }),
        JobCmd::Trigger { id, client } => (client, Command::Trigger { id: id.clone() }),
    })
}

pub async fn run(
    settings: &Settings,
    cmd: &JobCmd,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let (client, command) = client_and_command(cmd)?;
    let failed = |e: String| CommandError::Failed(e);
    let conn = sundial_actors::broker::connect(&settings.broker.url, "sundial job")
        .await
        .map_err(|e| failed(e.to_string()))?;
    let reply =
        sundial_actors::client::call(&conn, &settings.topology, &command, client.timeout.into())
            .await;
    let _ = conn.close(200, "done".into()).await;
    let reply = reply.map_err(|e| failed(e.to_string()))?;
    print_reply(&reply, client.json, out)
        .map_err(|e| failed(format!("cannot write output: {e}")))?;
    match &reply.error {
        Some(e) if !reply.ok => Err(failed(format!("{}: {}", e.field, e.message))),
        _ => Ok(()),
    }
}

fn print_reply(reply: &Reply, json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if json {
        let text = serde_json::to_string_pretty(reply).unwrap_or_default();
        return writeln!(out, "{text}");
    }
    if let Some(results) = &reply.results {
        for r in results {
            match &r.error {
                None => writeln!(out, "{:<40} ok", r.id)?,
                Some(e) => writeln!(out, "{:<40} error {}: {}", r.id, e.field, e.message)?,
            }
        }
        return Ok(());
    }
    let Some(result) = &reply.result else {
        return Ok(());
    };
    if let Some(jobs) = result.get("jobs").and_then(Value::as_array) {
        writeln!(
            out,
            "{:<32} {:<20} {:<20} {:<10} {:<6} NEXT",
            "ID", "SCHEDULE", "TIMEZONE", "POOL", "PAUSED"
        )?;
        for j in jobs {
            let s = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
            let paused = j.get("paused").and_then(Value::as_bool).unwrap_or(false);
            writeln!(
                out,
                "{:<32} {:<20} {:<20} {:<10} {:<6} {}",
                s("id"),
                s("schedule"),
                s("timezone"),
                s("pool"),
                paused,
                s("next")
            )?;
        }
        return Ok(());
    }
    let changed = result.get("changed").and_then(Value::as_bool);
    match (reply.command.as_deref(), changed) {
        (Some("get"), _) => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(result).unwrap_or_default()
        ),
        (Some(c), Some(false)) => writeln!(
            out,
            "{c}: {} unchanged",
            result.get("id").and_then(Value::as_str).unwrap_or("")
        ),
        (Some(c), _) => writeln!(
            out,
            "{c}: {} ok",
            result.get("id").and_then(Value::as_str).unwrap_or("")
        ),
        (None, _) => writeln!(out, "ok"),
    }
}
