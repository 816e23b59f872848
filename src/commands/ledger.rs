//! `sundial ledger --for DURATION`: watches run events for a window, then
//! compares the fire ids the schedules say were due in it with those seen:
//! each run of attempt 1 (counted by its `started` events, or by its
//! outcomes, `succeeded`/`failed`, where workers publish outcomes only), and
//! `skipped`: missing and duplicate fire ids. Exit 1 when any expected fire
//! id is missing.

use std::{collections::BTreeMap, io::Write, time::Duration};

use chrono::Utc;
use futures_util::StreamExt;
use serde_json::Value;
use sundial_actors::broker::{meta_of, subscribe};
use sundial_core::{
    codec::decode,
    fire_id::FireId,
    ledger::{expected, Ledger},
    protocol::run::{RunEvent, RunKind},
    registry::JobEntry,
    settings::Settings,
    JobSpec,
};

use super::CommandError;

/// After the window, how long late events of its fires may still arrive.
const GRACE: Duration = Duration::from_secs(5);

fn failed(e: impl ToString) -> CommandError {
    CommandError::Failed(e.to_string())
}

pub async fn run(
    settings: &Settings,
    window: Duration,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let conn = sundial_actors::broker::connect_to(&settings.broker, "sundial ledger").await?;
    let (_ch, mut events) = subscribe(
        &conn,
        &settings.topology.events_exchange(),
        &["#.started", "#.succeeded", "#.failed", "#.skipped"],
    )
    .await?;
    let from = Utc::now();
    let to = from + chrono::Duration::from_std(window).map_err(failed)?;
    // Per fire id: (started, outcomes, skipped) of attempt 1.
    let mut counts: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    let stop = tokio::time::sleep(window + GRACE);
    tokio::pin!(stop);
    loop {
        let d = tokio::select! {
            () = &mut stop => break,
            d = events.next() => d,
        };
        let Some(Ok(d)) = d else {
            return Err(failed("the event subscription ended early"));
        };
        let Ok(ev) = decode::<RunEvent>(&meta_of(&d.properties), &d.data) else {
            continue;
        };
        let in_window = FireId::parse(&ev.fire_id).is_some_and(|(_, at)| at > from && at <= to);
        if !in_window {
            continue;
        }
        let c = counts.entry(ev.fire_id).or_default();
        match ev.kind {
            RunKind::Started if ev.attempt == 1 => c.0 += 1,
            RunKind::Succeeded | RunKind::Failed if ev.attempt == 1 => c.1 += 1,
            RunKind::Skipped => c.2 += 1,
            _ => {}
        }
    }
    let jobs = jobs(settings, &conn).await?;
    let _ = conn.close(200, "done".into()).await;
    // A run shows as a `started` and an outcome, or as an outcome alone: count
    // the larger; an attempt abandoned and redelivered shows twice.
    let seen: Vec<&str> = counts
        .iter()
        .flat_map(|(id, (started, outcomes, skipped))| {
            std::iter::repeat_n(id.as_str(), (*started.max(outcomes) + skipped) as usize)
        })
        .collect();
    let ledger = Ledger::compare(&expected(&jobs, from, to), seen.iter().copied());
    let io = CommandError::output;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&ledger).map_err(failed)?
        )
        .map_err(io)?;
    } else {
        writeln!(
            out,
            "window {} .. {}: expected {}, observed {}, missing {}, duplicated {}, unexpected {}",
            sundial_core::protocol::timestamp(from),
            sundial_core::protocol::timestamp(to),
            ledger.expected,
            ledger.observed,
            ledger.missing.len(),
            ledger.duplicates.len(),
            ledger.unexpected.len()
        )
        .map_err(io)?;
        for m in &ledger.missing {
            writeln!(out, "missing    {m}").map_err(io)?;
        }
        for (d, n) in &ledger.duplicates {
            writeln!(out, "duplicate  {d} ×{n}").map_err(io)?;
        }
    }
    if ledger.missing.is_empty() {
        Ok(())
    } else {
        Err(failed(format!(
            "{} expected fire ids missing",
            ledger.missing.len()
        )))
    }
}

/// The scheduler's jobs, as entries whose schedules can be walked.
async fn jobs(
    settings: &Settings,
    conn: &lapin::Connection,
) -> Result<Vec<JobEntry>, CommandError> {
    let list = sundial_actors::client::list_all(
        conn,
        &settings.topology,
        &BTreeMap::new(),
        Duration::from_secs(30),
        settings.control.hmac_key.as_deref(),
    )
    .await
    .map_err(failed)?;
    let mut entries = Vec::with_capacity(list.len());
    for j in list {
        let mut spec = serde_json::json!({"executor": {"type": "noop"}});
        for k in ["id", "schedule", "timezone", "start_at", "end_at"] {
            if let Some(v) = j.get(k).filter(|v| !v.is_null()) {
                spec[k] = v.clone();
            }
        }
        let spec: JobSpec = serde_json::from_value(spec).map_err(failed)?;
        let created = j
            .get("created_at")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
        let mut entry = JobEntry::new(spec, created).map_err(failed)?;
        entry.paused = j.get("paused").and_then(Value::as_bool).unwrap_or(false);
        entries.push(entry);
    }
    Ok(entries)
}
