//! The job endpoints: reads from the registry view (through the
//! [`JobsSource`](super::JobsSource)), writes as control commands.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{json, Value};
use sundial_amqp::client::ClientError;
use sundial_core::{
    protocol::control::{Command, Reply},
    registry::JobFilter,
    registry_read::{self as read, JobsQuery, ReadErrorKind},
};

use sundial_core::{
    registry_read::{JobDetail, JobsPage},
    JobSpec,
};
use utoipa::IntoParams;

use super::schema::{
    AskedBody, BackfillBody, CancelBody, ErrorBody, PauseBody, Refusals, TriggerBody,
    WriteResponses,
};
use super::{
    body::Body,
    error::{Answer, ApiError, ApiResult},
    query::{all, first, flag, number, Params, Query},
    Api,
};

/// How long a write waits for the control reply.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /api/v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    #[serde(default, deserialize_with = "first")]
    q: Option<String>,
    #[serde(default, deserialize_with = "first")]
    pool: Option<String>,
    /// `key=value`, repeatable: every one must match.
    #[serde(default, deserialize_with = "all")]
    label: Vec<String>,
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<bool>)]
    paused: Option<String>,
    /// 1–1000, default 50.
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    #[serde(default, deserialize_with = "first")]
    cursor: Option<String>,
    /// `id` (default) or `next`.
    #[serde(default, deserialize_with = "first")]
    #[param(pattern = "^(id|next)$")]
    sort: Option<String>,
}

impl Params for ListParams {
    const ALLOWED: &'static [&'static str] =
        &["q", "pool", "label", "paused", "limit", "cursor", "sort"];
}

/// `GET /api/v1/jobs/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OneParams {
    /// How many upcoming fires to list: 0–100, default 10.
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<u32>, minimum = 0, maximum = 100)]
    next: Option<String>,
}

impl Params for OneParams {
    const ALLOWED: &'static [&'static str] = &["next"];
}

/// One page of jobs, sorted by id (or by next fire).
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(ListParams), responses(
        (status = 200, body = JobsPage),
        Refusals,
        (status = 422, description = "`sort=next` over too many jobs", body = ErrorBody),
        (status = 503, description = "no registry right now", body = ErrorBody),
))]
pub(crate) async fn list(State(api): State<Arc<Api>>, Query(p): Query<ListParams>) -> ApiResult {
    let mut filter = JobFilter {
        q: p.q.filter(|q| !q.is_empty()),
        pool: p.pool.filter(|p| !p.is_empty()),
        ..JobFilter::default()
    };
    for v in &p.label {
        let (k, v) = v
            .split_once('=')
            .ok_or_else(|| ApiError::bad_request("label", "must be key=value"))?;
        filter.labels.insert(k.to_string(), v.to_string());
    }
    filter.paused = flag(p.paused.as_deref(), "paused")?;
    let sort_next = match p.sort.as_deref() {
        None | Some("id") => false,
        Some("next") => true,
        Some(_) => return Err(ApiError::bad_request("sort", "must be id or next")),
    };
    let limit = number(
        p.limit.as_deref(),
        "limit",
        read::DEFAULT_PAGE,
        1..=read::MAX_PAGE,
    )?;
    ask(
        &api,
        JobsQuery::List {
            filter,
            sort_next,
            cursor: p.cursor,
            limit,
        },
    )
    .await
}

/// One job, its definition and its next fires.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path), OneParams), responses(
        (status = 200, body = JobDetail),
        Refusals,
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 503, description = "no registry right now", body = ErrorBody),
))]
pub(crate) async fn one(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(p): Query<OneParams>,
) -> ApiResult {
    let next = number(p.next.as_deref(), "next", 10, 0..=read::MAX_NEXT)?;
    ask(&api, JobsQuery::One { id, next }).await
}

async fn ask(api: &Api, q: JobsQuery) -> ApiResult {
    let registry = api.registry.read().ok().and_then(|r| r.clone());
    let registry = registry.ok_or_else(|| {
        ApiError::unavailable("this process holds no registry right now (connecting to the broker, or not a scheduler): try again, or ask a scheduler")
    })?;
    match registry.read(q).await {
        Ok(Ok(body)) => Ok(Answer(body)),
        Ok(Err(e)) => {
            let status = match e.kind {
                ReadErrorKind::NotFound => StatusCode::NOT_FOUND,
                ReadErrorKind::TooBroad => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            Err(ApiError::new(status, e.field, e.message))
        }
        Err(unavailable) => Err(ApiError::unavailable(unavailable.to_string())),
    }
}

/// Creates or replaces a job (docs/protocol.md §4).
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = JobSpec, responses(WriteResponses, Refusals))]
pub(crate) async fn upsert(
    State(api): State<Arc<Api>>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    Body(job): Body<Value>,
) -> ApiResult {
    let job = job.ok_or_else(|| {
        ApiError::bad_request(
            "body",
            "send the job definition as JSON (docs/protocol.md §4)",
        )
    })?;
    command(
        &api,
        json!({"command": "upsert", "job": job, "by": caller.name()}),
    )
    .await
}

/// Deletes a job (its history stays); the body may give a `reason`.
#[utoipa::path(delete, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)), request_body(content = Option<AskedBody>), responses(WriteResponses, Refusals))]
pub(crate) async fn delete(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    verb(&api, id, asked_by(body, &caller)?, "delete").await
}

/// Pauses a job, with an optional reason.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/pause", tag = "jobs", params(("id" = String, Path)), request_body(content = Option<PauseBody>), responses(WriteResponses, Refusals))]
pub(crate) async fn pause(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    verb(&api, id, asked_by(body, &caller)?, "pause").await
}

/// Resumes a job (its misfire policy decides about the missed fires); the
/// body may give a `reason`.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/resume", tag = "jobs", params(("id" = String, Path)), request_body(content = Option<AskedBody>), responses(WriteResponses, Refusals))]
pub(crate) async fn resume(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    verb(&api, id, asked_by(body, &caller)?, "resume").await
}

/// Fires a job now, with another payload if the body gives one, and
/// records why and who asked (a token's name; on the open loopback API the
/// body's `by`, else `(loopback)`).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/trigger", tag = "jobs", params(("id" = String, Path)), request_body(content = Option<TriggerBody>), responses(WriteResponses, Refusals))]
pub(crate) async fn trigger(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    verb(&api, id, asked_by(body, &caller)?, "trigger").await
}

/// `body` (an object, or none) with `by` set to who asks: a token's name;
/// on the open loopback API the body's own `by`, else `(loopback)`.
fn asked_by(body: Option<Value>, caller: &super::auth::Caller) -> Result<Value, ApiError> {
    let mut body = match body {
        None => json!({}),
        Some(Value::Object(o)) => Value::Object(o),
        Some(_) => return Err(ApiError::bad_request("body", "must be a JSON object")),
    };
    body["by"] = json!(caller.who(body.get("by").and_then(Value::as_str)));
    Ok(body)
}

/// Cancels a running workflow occurrence: what has not started never does,
/// the running steps are asked to stop; the history records why and who
/// asked (as for a trigger).
#[utoipa::path(post, path = "/api/v1/runs/{fire_id}/cancel", tag = "runs", params(("fire_id" = String, Path, description = "a workflow occurrence's fire id, JOB@INSTANT")), request_body(content = Option<CancelBody>), responses(WriteResponses, Refusals))]
pub(crate) async fn cancel(
    State(api): State<Arc<Api>>,
    Path(fire_id): Path<String>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    let mut cmd = asked_by(body, &caller)?;
    cmd["command"] = json!("cancel");
    cmd["fire_id"] = json!(fire_id);
    command(&api, cmd).await
}

/// Fires every occurrence of a past window (with `dry_run`, only counts
/// them).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/backfill", tag = "jobs", params(("id" = String, Path)), request_body = BackfillBody, responses(WriteResponses, Refusals))]
pub(crate) async fn backfill(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    let mut body = asked_by(body, &caller)?;
    // `6h`, `0s`: a duration before now, as the CLI takes them.
    let now = chrono::Utc::now();
    for field in ["from", "to"] {
        if let Some(Value::String(v)) = body.get(field) {
            let at = sundial_core::history::instant(v, now)
                .map_err(|e| ApiError::bad_request(field, e))?;
            body[field] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
    }
    verb(&api, id, body, "backfill").await
}

/// The command `verb` on job `id`; `cmd` (an object, from [`asked_by`])
/// holds the command's other fields.
async fn verb(api: &Api, id: String, mut cmd: Value, verb: &str) -> ApiResult {
    cmd["command"] = json!(verb);
    cmd["id"] = json!(id);
    command(api, cmd).await
}

/// Decodes `cmd` with the command's own decoder (the same field paths as
/// on the queue), sends it through the control queue and turns its reply
/// into an answer.
async fn command(api: &Api, cmd: Value) -> ApiResult {
    let cmd = <Command as sundial_core::protocol::Message>::from_json(cmd)
        .map_err(|e| ApiError::bad_request(&e.path, e.detail))?;
    let conn = api.connection().await?;
    let reply = sundial_amqp::client::call_signed(
        &conn,
        &api.cfg.topology,
        &cmd,
        CONTROL_TIMEOUT,
        api.cfg.hmac_key.as_deref(),
    )
    .await;
    match reply {
        Ok(r) => reply_answer(r),
        Err(ClientError::Timeout(t)) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            None,
            format!("no reply from a scheduler within {t:?}"),
        )),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

/// The status a control reply deserves, by the field it names (a coded
/// part of the protocol) and core's `ReplyError::is_no_job`.
fn reply_answer(r: Reply) -> ApiResult {
    if r.ok {
        return Ok(Answer(json!({"result": r.result})));
    }
    let Some(e) = r.error else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            "refused",
        ));
    };
    let status = match e.field.as_str() {
        _ if e.is_no_job() => StatusCode::NOT_FOUND,
        "registry" => StatusCode::SERVICE_UNAVAILABLE,
        "body" => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let mut err = ApiError::new(status, Some(&e.field), e.message);
    if let Some(results) = r.results {
        err = err.with("results", json!(results));
    }
    if let Some(result) = r.result {
        err = err.with("result", result);
    }
    Err(err)
}
