//! The history endpoints, served from this process's history index:
//!
//! - `GET /api/v1/runs?since=&until=&outcome=&pool=&worker=&job=&label=&limit=&cursor=`
//! - `GET /api/v1/jobs/{id}/runs?limit=&cursor=&outcome=&since=&until=`
//! - `GET /api/v1/jobs/{id}/summary?since=`
//! - `GET /api/v1/runs/per-minute?since=`
//! - `GET /api/v1/runs/{fire_id}`: one fire's runs, and for a workflow
//!   occurrence every step's and shard's
//!
//! Runs come newest first, a page at a time; `next` is the cursor of the
//! following page.

use std::sync::Arc;

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sundial_core::history::{Cursor, Outcome, RunPage, RunQuery, Summary, MAX_PAGE};
use utoipa::IntoParams;

use super::{
    error::{Answer, ApiError, ApiResult},
    query::{all, first, number, Params, Query},
    schema::{
        body, ErrorBody, FailingList, FireRuns, Hour, Minute, PerHour, PerMinute, RecentList,
        Refusals,
    },
    Api,
};

/// Page size when a query gives none.
const DEFAULT_LIMIT: usize = 50;

/// `GET /api/v1/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsParams {
    /// A duration before now (`1h`) or an RFC 3339 instant.
    #[serde(default, deserialize_with = "first")]
    since: Option<String>,
    #[serde(default, deserialize_with = "first")]
    until: Option<String>,
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<Outcome>)]
    outcome: Option<String>,
    #[serde(default, deserialize_with = "first")]
    pool: Option<String>,
    /// A worker's id (exact).
    #[serde(default, deserialize_with = "first")]
    worker: Option<String>,
    /// A job id prefix.
    #[serde(default, deserialize_with = "first")]
    job: Option<String>,
    /// `key=value`.
    #[serde(default, deserialize_with = "first")]
    label: Option<String>,
    /// 1–1000, default 50.
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    #[serde(default, deserialize_with = "first")]
    cursor: Option<String>,
}

impl Params for RunsParams {
    const ALLOWED: &'static [&'static str] = &[
        "since", "until", "outcome", "pool", "worker", "job", "label", "limit", "cursor",
    ];
}

/// `GET /api/v1/jobs/{id}/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct JobRunsParams {
    /// 1–1000, default 50.
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    #[serde(default, deserialize_with = "first")]
    cursor: Option<String>,
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<Outcome>)]
    outcome: Option<String>,
    /// A duration before now (`1h`) or an RFC 3339 instant.
    #[serde(default, deserialize_with = "first")]
    since: Option<String>,
    #[serde(default, deserialize_with = "first")]
    until: Option<String>,
}

impl Params for JobRunsParams {
    const ALLOWED: &'static [&'static str] = &["limit", "cursor", "outcome", "since", "until"];
}

/// `?since=` alone (summary, per-minute).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SinceParams {
    /// A duration before now (`1h`) or an RFC 3339 instant.
    #[serde(default, deserialize_with = "first")]
    since: Option<String>,
}

impl Params for SinceParams {
    const ALLOWED: &'static [&'static str] = &["since"];
}

/// Runs of every job, newest first, one page at a time.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunsParams), responses(
        (status = 200, body = RunPage),
        Refusals,
        (status = 500, description = "the history index could not be read", body = ErrorBody),
        (status = 503, description = "this process keeps no history index", body = ErrorBody),
))]
pub(crate) async fn runs(State(api): State<Arc<Api>>, Query(p): Query<RunsParams>) -> ApiResult {
    let index = api.index()?;
    let mut q = page(p.limit, p.cursor, p.outcome, p.since, p.until)?;
    q.pool = p.pool;
    q.worker = p.worker;
    q.job_prefix = p.job;
    if let Some(v) = p.label {
        let (k, val) = v
            .split_once('=')
            .ok_or_else(|| ApiError::bad_request("label", "must be key=value"))?;
        q.label = Some((k.to_string(), val.to_string()));
    }
    let page = index.runs(q).await.map_err(internal)?;
    Ok(Answer(json!(page)))
}

/// One job's runs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/runs", tag = "runs", params(("id" = String, Path), JobRunsParams), responses(
        (status = 200, body = RunPage),
        Refusals,
        (status = 500, description = "the history index could not be read", body = ErrorBody),
        (status = 503, description = "this process keeps no history index", body = ErrorBody),
))]
pub(crate) async fn job_runs(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(p): Query<JobRunsParams>,
) -> ApiResult {
    let index = api.index()?;
    let mut q = page(p.limit, p.cursor, p.outcome, p.since, p.until)?;
    q.job = Some(id);
    let page = index.runs(q).await.map_err(internal)?;
    Ok(Answer(json!(page)))
}

/// One job's runs over a window (`since`, default 24h).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/summary", tag = "runs", params(("id" = String, Path), SinceParams), responses(
        (status = 200, body = Summary),
        Refusals,
        (status = 500, description = "the history index could not be read", body = ErrorBody),
        (status = 503, description = "this process keeps no history index", body = ErrorBody),
))]
pub(crate) async fn summary(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(p): Query<SinceParams>,
) -> ApiResult {
    let index = api.index()?;
    let since = instant(p.since.as_deref().unwrap_or("24h"), "since", Utc::now())?;
    let s = index.summary(id, since).await.map_err(internal)?;
    Ok(Answer(json!(s)))
}

/// Attempts started per minute, and those that failed (`since`, default 1h).
#[utoipa::path(get, path = "/api/v1/runs/per-minute", tag = "runs", params(SinceParams), responses(
        (status = 200, body = PerMinute),
        Refusals,
        (status = 500, description = "the history index could not be read", body = ErrorBody),
        (status = 503, description = "this process keeps no history index", body = ErrorBody),
))]
pub(crate) async fn per_minute(
    State(api): State<Arc<Api>>,
    Query(p): Query<SinceParams>,
) -> ApiResult {
    let index = api
        .cfg
        .history
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this process keeps no history index"))?;
    let since = instant(p.since.as_deref().unwrap_or("1h"), "since", Utc::now())?;
    let rows = index.per_minute(since).await.map_err(internal)?;
    let minutes = rows
        .into_iter()
        .map(|(m, runs, failed)| Minute {
            minute: DateTime::from_timestamp_millis(m)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            runs,
            failed,
        })
        .collect();
    Ok(Answer(body(PerMinute { minutes })))
}

/// Attempts started per hour, and those that failed (`since`, default 7d):
/// the Overview's trend.
#[utoipa::path(get, path = "/api/v1/runs/per-hour", tag = "runs", params(SinceParams), responses(
        (status = 200, body = PerHour),
        Refusals,
        (status = 500, description = "the history index could not be read", body = ErrorBody),
        (status = 503, description = "this process keeps no history index", body = ErrorBody),
))]
pub(crate) async fn per_hour(
    State(api): State<Arc<Api>>,
    Query(p): Query<SinceParams>,
) -> ApiResult {
    let index = api.index()?;
    let since = instant(p.since.as_deref().unwrap_or("7d"), "since", Utc::now())?;
    let rows = index.per_hour(since).await.map_err(internal)?;
    let hours = rows
        .into_iter()
        .map(|(h, runs, failed)| Hour {
            hour: DateTime::from_timestamp_millis(h)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            runs,
            failed,
        })
        .collect();
    Ok(Answer(body(PerHour { hours })))
}

/// `GET /api/v1/runs/recent`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecentParams {
    /// A job id; repeat for several (at most 100).
    #[serde(default, deserialize_with = "all")]
    job: Vec<String>,
    /// Runs per job, 1–20 (default 10).
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 20)]
    n: Option<String>,
    /// Failures counted since: a duration before now (default 24h) or an
    /// RFC 3339 instant.
    #[serde(default, deserialize_with = "first")]
    since: Option<String>,
}

impl Params for RecentParams {
    const ALLOWED: &'static [&'static str] = &["job", "n", "since"];
}

/// The most jobs one `recent` asks about (a page of the jobs list is 50).
const RECENT_JOBS: usize = 100;

/// Each named job's last runs (newest first, no output) and its failures
/// since `since`: the columns of the jobs list, for a page of jobs at once.
#[utoipa::path(get, path = "/api/v1/runs/recent", tag = "runs", params(RecentParams), responses(
        (status = 200, body = RecentList),
        Refusals,
        (status = 500, description = "the history index could not be read", body = ErrorBody),
        (status = 503, description = "this process keeps no history index", body = ErrorBody),
))]
pub(crate) async fn recent(
    State(api): State<Arc<Api>>,
    Query(p): Query<RecentParams>,
) -> ApiResult {
    let index = api.index()?;
    if p.job.is_empty() || p.job.len() > RECENT_JOBS {
        return Err(ApiError::bad_request(
            "job",
            format!("name 1 to {RECENT_JOBS} jobs (job=a&job=b)"),
        ));
    }
    for (i, j) in p.job.iter().enumerate() {
        sundial_core::job::check_job_id("job", j)
            .map_err(|e| ApiError::bad_request(&format!("job[{i}]"), e.message))?;
    }
    let n = number(p.n.as_deref(), "n", 10, 1..=20)?;
    let since = instant(p.since.as_deref().unwrap_or("24h"), "since", Utc::now())?;
    let jobs = index.recent(p.job, n, since).await.map_err(internal)?;
    Ok(Answer(body(RecentList { jobs })))
}

/// `GET /api/v1/runs/failing`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FailingParams {
    /// A duration before now (default 24h) or an RFC 3339 instant.
    #[serde(default, deserialize_with = "first")]
    since: Option<String>,
    /// 1–1000, default 100.
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

impl Params for FailingParams {
    const ALLOWED: &'static [&'static str] = &["since", "limit"];
}

/// Jobs with failed or dead attempts since `since`, the latest failure
/// first, with how many and their newest run's outcome (the jobs list's
/// "failing" filter).
#[utoipa::path(get, path = "/api/v1/runs/failing", tag = "runs", params(FailingParams), responses(
        (status = 200, body = FailingList),
        Refusals,
        (status = 500, description = "the history index could not be read", body = ErrorBody),
        (status = 503, description = "this process keeps no history index", body = ErrorBody),
))]
pub(crate) async fn failing(
    State(api): State<Arc<Api>>,
    Query(p): Query<FailingParams>,
) -> ApiResult {
    let index = api.index()?;
    let since = instant(p.since.as_deref().unwrap_or("24h"), "since", Utc::now())?;
    let limit = number(p.limit.as_deref(), "limit", 100, 1..=1000)?;
    let jobs = index.failing(since, limit).await.map_err(internal)?;
    Ok(Answer(body(FailingList { jobs })))
}

/// One fire's runs (every attempt and replay) and, for a workflow
/// occurrence, its steps' and shards' (ids `{fire_id}/…`), oldest first.
#[utoipa::path(get, path = "/api/v1/runs/{fire_id}", tag = "runs", params(("fire_id" = String, Path, description = "a fire id; a step's holds a `/`, written `%2F`")), responses(
        (status = 200, body = FireRuns),
        Refusals,
        (status = 404, description = "no run of this fire id in the history", body = ErrorBody),
        (status = 500, description = "the history index could not be read", body = ErrorBody),
        (status = 503, description = "this process keeps no history index", body = ErrorBody),
))]
pub(crate) async fn fire(State(api): State<Arc<Api>>, Path(fire_id): Path<String>) -> ApiResult {
    if fire_id.is_empty() || fire_id.len() > 255 {
        return Err(ApiError::bad_request(
            "fire_id",
            format!("must be 1-255 bytes, got {}", fire_id.len()),
        ));
    }
    let index = api.index()?;
    let runs = index.fire(fire_id.clone()).await.map_err(internal)?;
    if runs.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            Some("fire_id"),
            format!("no run of {fire_id} in the history (older than its retention, or never run)"),
        ));
    }
    Ok(Answer(body(FireRuns { fire_id, runs })))
}

/// The paging and filtering parameters runs lists share.
fn page(
    limit: Option<String>,
    cursor: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
) -> Result<RunQuery, ApiError> {
    let now = Utc::now();
    let mut q = RunQuery {
        limit: DEFAULT_LIMIT,
        ..RunQuery::default()
    };
    if let Some(v) = since {
        q.since = Some(instant(&v, "since", now)?);
    }
    if let Some(v) = until {
        q.until = Some(instant(&v, "until", now)?);
    }
    if let Some(v) = outcome {
        q.outcome = Some(
            v.parse::<Outcome>()
                .map_err(|e| ApiError::bad_request("outcome", e))?,
        );
    }
    if let Some(v) = limit {
        q.limit = v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::bad_request("limit", format!("must be 1..={MAX_PAGE}")))?;
    }
    if let Some(v) = cursor {
        q.after = Some(
            v.parse::<Cursor>()
                .map_err(|e| ApiError::bad_request("cursor", e))?,
        );
    }
    Ok(q)
}

fn internal(e: sundial_store::Error) -> ApiError {
    ApiError::internal(e.to_string())
}

/// `field` as an instant ([`sundial_core::history::instant`]); a 400 naming
/// it otherwise.
fn instant(v: &str, field: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    sundial_core::history::instant(v, now).map_err(|e| ApiError::bad_request(field, e))
}
