//! `sundial ledger`: compares the fire ids the schedules say were due in a
//! window with the runs recorded in the history stream: each run of
//! attempt 1 (its `started` record, or its outcome) and each `skipped`
//! record. `--for 60s` watches the next window as it happens; `--from T1
//! --to T2` reads a past one from the stream (as far back as its
//! retention, `history.max_age`). Reports missing, duplicated and
//! unexpected fire ids; exit 1 when any expected one is missing. For a
//! workflow occurrence, also every step fire that should have run given
//! the outcomes recorded (`ledger::steps`), and which did not.

use std::{collections::BTreeMap, io::Write, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sundial_amqp::history::{Reader, StreamStart};
use sundial_core::{
    fire_id::FireId,
    ledger::{expected, Ledger},
    protocol::run::RunKind,
    registry::{Fired, JobEntry},
    settings::Settings,
    JobSpec,
};

use super::CommandError;

/// After the window, how long late records of its fires may still arrive.
const GRACE: Duration = Duration::from_secs(5);
/// Reading a past window: the stream has nothing more once it stays quiet
/// this long.
const QUIET: Duration = Duration::from_secs(2);
/// Reading a past window: records are looked for from this long before it
/// (stream chunks are found by time to the second; clocks differ a little).
const LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Which window.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// From now, this long, watched live.
    Next(Duration),
    /// A past window, read from the history stream.
    Past {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

fn failed(e: impl ToString) -> CommandError {
    CommandError::Failed(e.to_string())
}

pub async fn run(
    settings: &Settings,
    window: Window,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let (from, to, start) = match window {
        Window::Next(d) => {
            let from = Utc::now();
            (
                from,
                from + chrono::Duration::from_std(d).map_err(failed)?,
                StreamStart::Next,
            )
        }
        Window::Past { from, to } => {
            if to <= from {
                return Err(CommandError::Usage("--to must be after --from".into()));
            }
            if to > Utc::now() {
                return Err(CommandError::Usage(
                    "--to is in the future: watch a coming window with --for".into(),
                ));
            }
            (from, to, StreamStart::Since(from - LOOKBACK))
        }
    };
    let conn = sundial_amqp::broker::connect_to(&settings.broker, "sundial ledger").await?;
    let mut records = Reader::open(&conn, &settings.topology.history_stream(), start, 500).await?;
    // Per fire id: (started, outcomes, skipped) of attempt 1.
    let mut counts: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    // Per workflow occurrence: the records of its step fires.
    let mut steps: BTreeMap<String, Vec<(String, RunKind)>> = BTreeMap::new();
    let live_end = tokio::time::Instant::now()
        + match window {
            Window::Next(d) => d + GRACE,
            Window::Past { .. } => Duration::ZERO,
        };
    loop {
        let wait = match window {
            Window::Next(_) => tokio::time::timeout_at(live_end, records.next()).await,
            Window::Past { .. } => tokio::time::timeout(QUIET, records.next()).await,
        };
        let m = match wait {
            Err(_) => break,
            Ok(Ok(Some(m))) => m,
            Ok(_) => return Err(failed("the history stream consumer ended early")),
        };
        let Ok(batch) = m.batch else {
            continue;
        };
        // A past window is done once the stream has moved past it.
        let past_it = matches!(window, Window::Past { .. })
            && batch.records.iter().any(|ev| ev.at > to + GRACE);
        for ev in batch.records {
            let in_window = FireId::parse(&ev.fire_id).is_some_and(|(_, at)| at > from && at <= to);
            if !in_window {
                continue;
            }
            if let Some(step) = FireId::split_step(&ev.fire_id) {
                let occurrence = step.occurrence.to_string();
                steps
                    .entry(occurrence)
                    .or_default()
                    .push((ev.fire_id, ev.kind));
                continue;
            }
            if ev.kind == RunKind::Cancelled {
                // A cancelled workflow occurrence expects no more steps.
                steps
                    .entry(ev.fire_id.clone())
                    .or_default()
                    .push((ev.fire_id.clone(), ev.kind));
            }
            let c = counts.entry(ev.fire_id).or_default();
            match ev.kind {
                RunKind::Started if ev.attempt == 1 => c.0 += 1,
                RunKind::Succeeded | RunKind::Failed if ev.attempt == 1 => c.1 += 1,
                RunKind::Skipped => c.2 += 1,
                _ => {}
            }
        }
        if past_it {
            break;
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
    let fired = jobs
        .iter()
        .map(Fired::from_entry)
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    let mut ledger = Ledger::compare(&expected(&fired, from, to), seen.iter().copied());
    // Workflows: every step that should have run given the outcomes, for
    // every occurrence that was observed (an unobserved one is missing as
    // a whole already).
    let workflows: BTreeMap<&str, std::borrow::Cow<'_, [sundial_core::workflow::StepSpec]>> = jobs
        .iter()
        .filter_map(|j| j.spec.workflow().map(|w| (j.spec.id.as_str(), w)))
        .collect();
    for id in counts.keys() {
        let Some(w) = FireId::parse(id).and_then(|(job, _)| workflows.get(job)) else {
            continue;
        };
        let records = steps.get(id).map(Vec::as_slice).unwrap_or_default();
        let l =
            sundial_core::ledger::steps(w, id, records.iter().map(|(f, kind)| (f.as_str(), *kind)));
        ledger.steps_expected += l.expected.len();
        ledger.steps_missing.extend(l.missing);
    }
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
        if ledger.steps_expected > 0 {
            writeln!(
                out,
                "workflow steps: expected {}, missing {}",
                ledger.steps_expected,
                ledger.steps_missing.len()
            )
            .map_err(io)?;
            for m in &ledger.steps_missing {
                writeln!(out, "missing    {m}").map_err(io)?;
            }
        }
    }
    if ledger.missing.is_empty() && ledger.steps_missing.is_empty() {
        Ok(())
    } else {
        Err(failed(format!(
            "{} expected fire ids missing, {} workflow step fires missing",
            ledger.missing.len(),
            ledger.steps_missing.len()
        )))
    }
}

/// The scheduler's jobs, as entries whose schedules can be walked.
async fn jobs(
    settings: &Settings,
    conn: &lapin::Connection,
) -> Result<Vec<JobEntry>, CommandError> {
    let list = sundial_amqp::client::list_all(
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
        // A workflow's graph (what it runs does not matter here).
        if let Some(list) = j.get("steps").and_then(Value::as_array) {
            let steps: Vec<Value> = list
                .iter()
                .map(|s| {
                    let shards = s.get("shards").and_then(Value::as_u64).unwrap_or(1);
                    let every = s.get("every_worker").and_then(Value::as_bool) == Some(true);
                    let fanout = if every {
                        Some(serde_json::json!("every-worker"))
                    } else {
                        (shards > 1).then(|| serde_json::json!({"shards": shards}))
                    };
                    serde_json::json!({
                        "id": s.get("id"), "after": s.get("after"), "when": s.get("when"),
                        "executor": {"type": "noop"}, "fanout": fanout,
                    })
                })
                .collect();
            spec["steps"] = Value::Array(steps);
            if let Some(o) = spec.as_object_mut() {
                o.remove("executor");
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
        entry.set_pause(sundial_core::registry::PauseNote {
            at: j
                .get("paused_at")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            ..Default::default()
        });
        entries.push(entry);
    }
    Ok(entries)
}
