//! The history part of the HTTP API (`/api/v1`, docs/api.md), served by a
//! process that keeps a history index:
//!
//! - `GET /api/v1/runs?since=&until=&outcome=&pool=&job=&label=&limit=&cursor=`
//! - `GET /api/v1/jobs/{id}/runs?limit=&cursor=`
//! - `GET /api/v1/jobs/{id}/summary?since=`
//!
//! Runs come newest first, a page at a time; `next` is the cursor of the
//! following page. Errors are `{"error": {"field", "message"}}`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hyper::StatusCode;
use serde_json::json;
use sundial_core::history::{Cursor, Outcome, RunQuery};

use sundial_store::Index;

use crate::api::{error, only, Answer};

/// Page size when a query gives none.
pub const DEFAULT_LIMIT: usize = 50;

/// Answers the path below `/api/v1/` (its decoded segments `seg`) with the
/// query's `params`, or `None` when the path is not one of history's.
pub async fn route(
    index: Option<&Arc<Index>>,
    seg: &[&str],
    params: &[(String, String)],
) -> Option<Answer> {
    let kind = match seg {
        ["runs"] => Kind::Runs,
        ["jobs", id, "runs"] if !id.is_empty() => Kind::JobRuns((*id).to_string()),
        ["jobs", id, "summary"] if !id.is_empty() => Kind::Summary((*id).to_string()),
        _ => return None,
    };
    let Some(index) = index else {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "this process keeps no history index (history.enabled = false, or its file is in use by another process): ask a scheduler or `sundial run` that keeps one",
        ));
    };
    Some(match answer(index, kind, params, Utc::now()).await {
        Ok(a) => a,
        Err(a) => a,
    })
}

enum Kind {
    Runs,
    JobRuns(String),
    Summary(String),
}

async fn answer(
    index: &Index,
    kind: Kind,
    params: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<Answer, Answer> {
    let allowed: &[&str] = match kind {
        Kind::Runs => &[
            "since", "until", "outcome", "pool", "job", "label", "limit", "cursor",
        ],
        Kind::JobRuns(_) => &["limit", "cursor", "outcome", "since", "until"],
        Kind::Summary(_) => &["since"],
    };
    only(params, allowed)?;
    let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
    let internal =
        |e: sundial_store::Error| error(StatusCode::INTERNAL_SERVER_ERROR, None, e.to_string());
    match kind {
        Kind::Summary(job) => {
            let since = instant(get("since").unwrap_or("24h"), "since", now)?;
            let s = index.summary(job, since).await.map_err(internal)?;
            Ok((StatusCode::OK, json!(s)))
        }
        Kind::Runs | Kind::JobRuns(_) => {
            let mut q = RunQuery {
                limit: DEFAULT_LIMIT,
                ..RunQuery::default()
            };
            if let Kind::JobRuns(job) = kind {
                q.job = Some(job);
            }
            if let Some(v) = get("since") {
                q.since = Some(instant(v, "since", now)?);
            }
            if let Some(v) = get("until") {
                q.until = Some(instant(v, "until", now)?);
            }
            if let Some(v) = get("outcome") {
                q.outcome = Some(
                    v.parse::<Outcome>()
                        .map_err(|e| error(StatusCode::BAD_REQUEST, Some("outcome"), e))?,
                );
            }
            q.pool = get("pool").map(str::to_string);
            q.job_prefix = get("job").map(str::to_string);
            if let Some(v) = get("label") {
                let (k, val) = v.split_once('=').ok_or_else(|| {
                    error(StatusCode::BAD_REQUEST, Some("label"), "must be key=value")
                })?;
                q.label = Some((k.to_string(), val.to_string()));
            }
            if let Some(v) = get("limit") {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=sundial_core::history::MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        error(
                            StatusCode::BAD_REQUEST,
                            Some("limit"),
                            format!("must be 1..={}", sundial_core::history::MAX_PAGE),
                        )
                    })?;
            }
            if let Some(v) = get("cursor") {
                q.after = Some(
                    v.parse::<Cursor>()
                        .map_err(|e| error(StatusCode::BAD_REQUEST, Some("cursor"), e))?,
                );
            }
            let page = index.runs(q).await.map_err(internal)?;
            Ok((StatusCode::OK, json!(page)))
        }
    }
}

/// `field` as an instant ([`sundial_core::history::instant`]); a 400 naming
/// it otherwise.
pub(crate) fn instant(v: &str, field: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Answer> {
    sundial_core::history::instant(v, now)
        .map_err(|e| error(StatusCode::BAD_REQUEST, Some(field), e))
}
