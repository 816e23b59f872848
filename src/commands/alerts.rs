//! `sundial alerts`: the alerts raised since `--since` (default 24h), read
//! from the history stream, each with whether a later `resolved` closed
//! it; `--open` keeps the open ones. Reads until it meets what was written
//! after it started (a busy stream is never quiet), or until the stream
//! has been quiet for a moment.

use std::{collections::BTreeMap, io::Write, time::Duration};

use chrono::{DateTime, Utc};
use sundial_amqp::history::{Reader, StreamStart};
use sundial_core::{
    alert::{AlertKind, AlertRow, Delivered, Raised},
    settings::Settings,
    FireId,
};

use super::CommandError;

/// The stream has nothing more once it stays quiet this long.
const QUIET: Duration = Duration::from_secs(2);
/// The most time spent reading, whatever the stream does.
const READ_FOR: Duration = Duration::from_secs(60);
/// Records this much newer than the start of the command mean the stream
/// was read up to then (clocks of other hosts differ a little).
const CAUGHT_UP: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

pub async fn run(
    settings: &Settings,
    since: DateTime<Utc>,
    open_only: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let conn = sundial_amqp::broker::connect_to(&settings.broker, "sundial alerts").await?;
    let mut reader = Reader::open(
        &conn,
        &settings.topology.history_stream(),
        StreamStart::Since(since),
        500,
    )
    .await?;
    // By id: a repeat (two owners for a moment) shows once.
    let mut alerts: BTreeMap<String, Raised> = BTreeMap::new();
    let mut deliveries: BTreeMap<String, Vec<Delivered>> = BTreeMap::new();
    let end = tokio::time::Instant::now() + READ_FOR;
    let started = Utc::now();
    loop {
        let quiet = tokio::time::Instant::now() + QUIET;
        let m = match tokio::time::timeout_at(quiet.min(end), reader.next()).await {
            Err(_) => break,
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => {
                return Err(CommandError::Failed(
                    "the history stream consumer ended early".into(),
                ))
            }
            Ok(Err(e)) => return Err(e.into()),
        };
        let Ok(batch) = m.batch else { continue };
        let newest = batch
            .records
            .iter()
            .map(|r| r.at)
            .chain(batch.alerts.iter().map(|a| a.at))
            .max();
        for a in batch.alerts {
            if a.at >= since {
                alerts.entry(a.alert.id.clone()).or_insert(a);
            }
        }
        for d in batch.deliveries {
            deliveries.entry(d.alert.clone()).or_default().push(d);
        }
        if newest.is_some_and(|t| t > started + CAUGHT_UP) {
            break;
        }
    }
    let _ = conn.close(200, "done".into()).await;
    // Which `resolved` closed each alert.
    let mut closed: BTreeMap<String, String> = BTreeMap::new();
    for a in alerts
        .values()
        .filter(|a| a.alert.kind == AlertKind::Resolved)
    {
        for r in &a.alert.resolves {
            closed.insert(r.clone(), a.alert.id.clone());
        }
    }
    let mut shown: Vec<AlertRow> = alerts
        .into_values()
        .map(|raised| {
            let id = raised.alert.id.clone();
            AlertRow::new(
                raised,
                closed.get(&id).cloned(),
                deliveries.remove(&id).unwrap_or_default(),
            )
        })
        .filter(|s| !open_only || s.open())
        .collect();
    shown.sort_by(|a, b| (a.at, &a.alert.id).cmp(&(b.at, &b.alert.id)));
    let io = CommandError::output;
    if json {
        return writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&shown)
                .map_err(|e| CommandError::Failed(e.to_string()))?
        )
        .map_err(io);
    }
    let mut rows = crate::table::Rows::new(
        &[
            "RAISED",
            "KIND",
            "JOB",
            "OCCURRENCE",
            "STATE",
            "SENT",
            "REASON",
        ],
        &[],
    );
    for s in &shown {
        let a = &s.alert;
        let state = match (&s.resolved_by, a.kind) {
            (_, AlertKind::Resolved) => format!("resolves {}", a.resolves.len()),
            (Some(_), _) => "resolved".to_string(),
            (None, _) => "open".to_string(),
        };
        rows.push([
            sundial_core::protocol::timestamp(s.at),
            a.kind.as_str().to_string(),
            a.job_id.clone(),
            FireId::parse(&a.fire_id).map_or_else(
                || a.fire_id.clone(),
                |(_, at)| sundial_core::protocol::timestamp(at),
            ),
            state,
            if s.deliveries.is_empty() {
                "-".to_string()
            } else {
                s.deliveries
                    .iter()
                    .map(|d| format!("{}:{}", d.route, d.outcome.as_str()))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            a.reason.clone(),
        ]);
    }
    write!(out, "{}", rows.render("")).map_err(io)?;
    writeln!(
        out,
        "{} alert{}{} since {}",
        shown.len(),
        if shown.len() == 1 { "" } else { "s" },
        if open_only { " open" } else { "" },
        sundial_core::protocol::timestamp(since)
    )
    .map_err(io)
}
