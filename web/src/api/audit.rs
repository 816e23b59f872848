//! `GET /api/v1/audit?job=&by=&action=&since=&limit=&cursor=`: who did
//! what (ADR 0023), newest first, from this process's history index, which
//! keeps the audit entries it reads from the history stream.

use std::sync::Arc;

use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;
use sundial_core::protocol::audit::{AuditQuery, ACTIONS};
use utoipa::IntoParams;

use super::{
    error::{Answer, ApiError, ApiResult},
    query::{first, number, Params, Query},
    schema::{body, AuditList, ErrorBody, Refusals},
    Api,
};

/// Entries a page holds at most, and when the query names no `limit`.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// `GET /api/v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// A job id (exact).
    #[serde(default, deserialize_with = "first")]
    job: Option<String>,
    /// Who (exact): a token's name, `(loopback)`, a CLI user.
    #[serde(default, deserialize_with = "first")]
    by: Option<String>,
    /// upsert, upsert-many, delete, pause, resume, trigger, cancel,
    /// backfill, replay or purge.
    #[serde(default, deserialize_with = "first")]
    action: Option<String>,
    /// A duration before now (`7d`) or an RFC 3339 instant; default: as
    /// far back as the index keeps (`history.retention`).
    #[serde(default, deserialize_with = "first")]
    since: Option<String>,
    /// 1–1000, default 100.
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// A previous page's `next`: the entries older than it.
    #[serde(default, deserialize_with = "first")]
    cursor: Option<String>,
}

impl Params for AuditParams {
    const ALLOWED: &'static [&'static str] = &["job", "by", "action", "since", "limit", "cursor"];
}

/// Audit entries, newest first; `next` continues when there are more.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams), responses(
        (status = 200, body = AuditList),
        Refusals,
        (status = 500, description = "the history index could not be read", body = ErrorBody),
        (status = 503, description = "this process keeps no history index", body = ErrorBody),
))]
pub(crate) async fn list(State(api): State<Arc<Api>>, Query(p): Query<AuditParams>) -> ApiResult {
    let index = api.index()?;
    let since = p
        .since
        .as_deref()
        .map(|s| sundial_core::history::instant(s, Utc::now()))
        .transpose()
        .map_err(|e| ApiError::bad_request("since", e))?;
    let limit = number(p.limit.as_deref(), "limit", DEFAULT_LIMIT, 1..=MAX_LIMIT)?;
    let before = p
        .cursor
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::bad_request("cursor", "not a cursor of this endpoint"))
        })
        .transpose()?;
    if let Some(job) = &p.job {
        sundial_core::job::check_job_id("job", job)
            .map_err(|e| ApiError::bad_request("job", e.message))?;
    }
    if let Some(a) = p.action.as_deref().filter(|a| !ACTIONS.contains(a)) {
        return Err(ApiError::bad_request(
            "action",
            format!(
                "unknown action {a:?}; expected one of {}",
                ACTIONS.join(", ")
            ),
        ));
    }
    if p.by
        .as_ref()
        .is_some_and(|b| b.chars().count() > sundial_core::protocol::control::BY_MAX)
    {
        return Err(ApiError::bad_request("by", "too long to be anyone's name"));
    }
    let mut entries = index
        .audit(AuditQuery {
            job: p.job,
            by: p.by,
            action: p.action,
            since,
            before,
            limit: limit + 1,
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next = more
        .then(|| entries.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(Answer(body(AuditList { entries, next })))
}
