//! `sundial schedule next`: preview occurrences of an expression.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sundial_core::{schedule::parse_zone, Schedule};

use super::CommandError;
use crate::cli::ScheduleNext;

#[derive(Serialize)]
struct Row {
    at: String,
    utc: String,
    note: Option<&'static str>,
}

/// Prints the next `n` occurrences to `out`: one RFC 3339 instant per line
/// with the zone's offset, or a JSON array with `--json`.
pub fn run(
    args: &ScheduleNext,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let tz = parse_zone(&args.tz).map_err(|e| CommandError::Usage(e.to_string()))?;
    let after = match &args.after {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| {
                CommandError::Usage(format!(
                    "invalid --after \"{s}\": expected RFC 3339 such as 2026-03-29T00:00:00Z ({e})"
                ))
            })?
            .with_timezone(&Utc),
        None => now,
    };
    if args.count == 0 {
        return Err(CommandError::Usage("-n must be at least 1".into()));
    }
    let schedule = Schedule::parse_for_submit(&args.expr, tz, after, after)
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    let rows: Vec<Row> = schedule
        .iter_after(after)
        .take(args.count)
        .map(|o| Row {
            at: o
                .at
                .with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
            utc: o.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            note: o.note.map(|n| n.as_str()),
        })
        .collect();
    let io = CommandError::output;
    if args.json {
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| CommandError::Failed(e.to_string()))?;
        writeln!(out, "{text}").map_err(io)?;
    } else {
        for r in &rows {
            writeln!(out, "{}", r.at).map_err(io)?;
        }
    }
    Ok(())
}
