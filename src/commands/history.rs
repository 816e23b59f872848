//! `sundial job history ID` and `sundial runs`: the run history, asked of
//! the HTTP API of a process that keeps a history index (a scheduler or
//! `sundial run`, `http.api`; docs/api.md). Tables for people, oldest run
//! first; `--json` prints the API's page as it is.

use std::{io::Write, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sundial_core::{
    history::{RunPage, RunRow, Summary},
    settings::Settings,
};

use super::CommandError;
use crate::{
    cli::{HistoryArgs, RunsArgs, RunsCmd},
    table::Rows,
};

/// How long the API may take to answer.
const TIMEOUT: Duration = Duration::from_secs(15);

/// `--from 2h`, `--to 2026-12-01T10:00:00Z`: a duration before now or an
/// RFC 3339 instant; a usage error naming `flag` otherwise.
pub fn instant(flag: &str, v: &str) -> Result<DateTime<Utc>, CommandError> {
    sundial_core::history::instant(v, Utc::now())
        .map_err(|e| CommandError::Usage(format!("{flag}: {e}")))
}

pub async fn job_history(
    settings: &Settings,
    id: &str,
    count: usize,
    args: &HistoryArgs,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let api = base(settings, args);
    let job = percent_encode(id);
    let page = get(&api, &format!("/api/v1/jobs/{job}/runs?limit={count}")).await?;
    let io = CommandError::output;
    if args.json {
        return writeln!(out, "{page}").map_err(io);
    }
    let page: RunPage = parse(&api, page)?;
    let summary: Summary = parse(
        &api,
        get(&api, &format!("/api/v1/jobs/{job}/summary?since=7d")).await?,
    )?;
    if page.runs.is_empty() {
        writeln!(out, "no runs of {id} in the history").map_err(io)?;
    } else {
        print_runs(&page.runs, args.output, out)?;
    }
    let when = |t: Option<DateTime<Utc>>| t.map_or("never".to_string(), time);
    let pct = summary
        .success_rate
        .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
    let ms = |v: Option<u64>| v.map_or("-".to_string(), duration);
    writeln!(
        out,
        "last 7 days: {} runs, {} succeeded ({pct}), p50 {}, p95 {}; last success {}, last failure {}",
        summary.runs,
        summary.succeeded,
        ms(summary.p50_ms),
        ms(summary.p95_ms),
        when(summary.last_success),
        when(summary.last_failure)
    )
    .map_err(io)
}

/// `sundial job log ID`: the job's audit trail, oldest of the newest
/// `count` first.
pub async fn job_log(
    settings: &Settings,
    id: &str,
    count: usize,
    args: &HistoryArgs,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    #[derive(serde::Deserialize)]
    struct Page {
        entries: Vec<sundial_core::protocol::audit::AuditRow>,
    }
    if !(1..=1000).contains(&count) {
        return Err(CommandError::Usage("-n: must be 1 to 1000".into()));
    }
    let api = base(settings, args);
    let page = get(
        &api,
        &format!("/api/v1/audit?job={}&limit={count}", percent_encode(id)),
    )
    .await?;
    let io = CommandError::output;
    if args.json {
        return writeln!(out, "{page}").map_err(io);
    }
    let page: Page = parse(&api, page)?;
    if page.entries.is_empty() {
        return writeln!(out, "no audit entries for {id}").map_err(io);
    }
    let mut t = Rows::new(&["AT", "ACTION", "BY", "REASON", "DETAIL"], &[]);
    for row in page.entries.iter().rev() {
        let e = &row.entry;
        t.push([
            time(e.at),
            e.action.clone(),
            e.by.clone().unwrap_or_else(|| "-".into()),
            e.reason.clone().unwrap_or_else(|| "-".into()),
            e.detail.clone().unwrap_or_default(),
        ]);
    }
    write!(out, "{}", t.render("")).map_err(io)
}

pub async fn runs(
    settings: &Settings,
    args: &RunsArgs,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    if let Some(RunsCmd::Show { fire_id, history }) = &args.cmd {
        return show(settings, fire_id, history, out).await;
    }
    // Checked here, so a typo is a usage error before anything is asked.
    instant("--since", &args.since)?;
    if let Some(u) = &args.until {
        instant("--until", u)?;
    }
    if let Some(o) = &args.outcome {
        o.parse::<sundial_core::history::Outcome>()
            .map_err(|e| CommandError::Usage(format!("--outcome: {e}")))?;
    }
    if args.label.as_deref().is_some_and(|l| !l.contains('=')) {
        return Err(CommandError::Usage("--label: must be KEY=VALUE".into()));
    }
    let api = base(settings, &args.history);
    let mut query = vec![
        ("since", args.since.clone()),
        ("limit", args.count.to_string()),
    ];
    let optional = [
        ("until", &args.until),
        ("outcome", &args.outcome),
        ("job", &args.job),
        ("pool", &args.pool),
        ("worker", &args.worker),
        ("label", &args.label),
        ("cursor", &args.cursor),
    ];
    query.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.clone()))),
    );
    let qs = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let page = get(&api, &format!("/api/v1/runs?{qs}")).await?;
    let io = CommandError::output;
    if args.history.json {
        return writeln!(out, "{page}").map_err(io);
    }
    let page: RunPage = parse(&api, page)?;
    if page.runs.is_empty() {
        return writeln!(out, "no runs match").map_err(io);
    }
    print_runs(&page.runs, args.history.output, out)?;
    if page.next.is_some() {
        writeln!(
            out,
            "(the newest {} shown; -n or --json with --cursor for more)",
            page.runs.len()
        )
        .map_err(io)?;
    }
    Ok(())
}

/// `sundial runs show FIRE_ID`: the fire's runs and, for a workflow
/// occurrence, its steps' and shards', oldest first.
async fn show(
    settings: &Settings,
    fire_id: &str,
    args: &HistoryArgs,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let api = base(settings, args);
    let answer = get(&api, &format!("/api/v1/runs/{}", percent_encode(fire_id))).await?;
    let io = CommandError::output;
    if args.json {
        return writeln!(out, "{answer}").map_err(io);
    }
    let runs: Vec<RunRow> = parse(&api, answer.get("runs").cloned().unwrap_or_default())?;
    let mut rows = Rows::new(
        &[
            "STEP", "ATTEMPT", "OUTCOME", "STARTED", "DURATION", "WORKER", "REASON",
        ],
        &[1, 4],
    );
    for r in &runs {
        let step = r
            .fire_id
            .strip_prefix(fire_id)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or("(occurrence)");
        let outcome = if r.retried {
            format!("{} (retried)", r.outcome)
        } else {
            r.outcome.to_string()
        };
        rows.push([
            step.to_string(),
            r.attempt.to_string(),
            outcome,
            r.started_at.or(r.finished_at).map_or("-".into(), time),
            r.duration_ms.map_or("-".into(), duration),
            r.worker.clone(),
            r.reason.clone().unwrap_or_default(),
        ]);
    }
    write!(out, "{}", rows.render("")).map_err(io)?;
    if args.output {
        for r in runs.iter().filter(|r| r.output.is_some()) {
            writeln!(out, "{}  attempt {}", r.fire_id, r.attempt).map_err(io)?;
            for line in r.output.as_deref().unwrap_or("").lines() {
                writeln!(out, "    {line}").map_err(io)?;
            }
        }
    }
    Ok(())
}

/// Rows oldest first (the API pages newest first).
fn print_runs(runs: &[RunRow], output: bool, out: &mut impl Write) -> Result<(), CommandError> {
    let io = CommandError::output;
    let mut rows = Rows::new(
        &[
            "STARTED", "JOB", "FIRE ID", "ATTEMPT", "OUTCOME", "DURATION", "WORKER", "REASON",
        ],
        &[3, 5],
    );
    for r in runs.iter().rev() {
        let outcome = if r.retried {
            format!("{} (retried)", r.outcome)
        } else {
            r.outcome.to_string()
        };
        rows.push([
            r.started_at.or(r.finished_at).map_or("-".into(), time),
            r.job_id.clone(),
            r.fire_id.clone(),
            r.attempt.to_string(),
            outcome,
            r.duration_ms.map_or("-".into(), duration),
            r.worker.clone(),
            r.reason.clone().unwrap_or_default(),
        ]);
    }
    if !output {
        return write!(out, "{}", rows.render("")).map_err(io);
    }
    for r in runs.iter().rev() {
        writeln!(
            out,
            "{}  attempt {}  {}{}",
            r.fire_id,
            r.attempt,
            r.outcome,
            r.duration_ms
                .map_or(String::new(), |d| format!("  {}", duration(d)))
        )
        .map_err(io)?;
        for line in r.output.as_deref().unwrap_or("").lines() {
            writeln!(out, "    {line}").map_err(io)?;
        }
    }
    Ok(())
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn duration(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms}ms")
    } else {
        sundial_core::HumanDuration(Duration::from_secs(ms / 1000)).to_string()
    }
}

fn base(settings: &Settings, args: &HistoryArgs) -> String {
    args.api
        .as_deref()
        .unwrap_or(&settings.http.api)
        .trim_end_matches('/')
        .to_string()
}

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// GETs `path` of `api`; an error answer is reported as the API words it.
async fn get(api: &str, path: &str) -> Result<Value, CommandError> {
    let client = sundial_runtime::http_client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| CommandError::Failed(format!("http client: {e}")))?;
    let url = format!("{api}{path}");
    let unreachable = |e: reqwest::Error| {
        CommandError::Failed(format!(
            "cannot reach the history API at {api} ({}): it is served by `sundial scheduler` and `sundial run` on their http.listen; point --api (http.api) at one",
            root_cause(&e)
        ))
    };
    let resp = client.get(&url).send().await.map_err(unreachable)?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| {
        CommandError::Failed(format!(
            "{api} answered {status} without JSON ({}); is it a Sundial endpoint?",
            root_cause(&e)
        ))
    })?;
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("no reason given");
    Err(match body["error"]["field"].as_str() {
        Some(field) if status == reqwest::StatusCode::BAD_REQUEST => {
            CommandError::Usage(format!("{field}: {message}"))
        }
        Some(field) => CommandError::Failed(format!("{api}: {status}: {field}: {message}")),
        None => CommandError::Failed(format!("{api}: {status}: {message}")),
    })
}

fn parse<T: serde::de::DeserializeOwned>(api: &str, v: Value) -> Result<T, CommandError> {
    serde_json::from_value(v)
        .map_err(|e| CommandError::Failed(format!("{api} answered something else: {e}")))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
