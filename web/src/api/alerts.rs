//! `GET /api/v1/alerts?since=&job=&open=&limit=`: the alerts raised
//! (issue 25, ADR 0021), newest first, each with the `resolved` alert that
//! closed it and what each route did with it; served from this process's
//! history index, which keeps them as it reads the history stream.

use std::sync::Arc;

use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;
use sundial_core::protocol::alert::AlertQuery;
use utoipa::IntoParams;

use super::{
    error::{Answer, ApiError, ApiResult},
    query::{first, number, Params, Query},
    schema::{body, AlertList, ErrorBody, Refusals},
    Api,
};

/// Alerts a list holds at most, and when the query names no `limit`.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// `GET /api/v1/alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertsParams {
    /// A duration before now (`24h`, the default) or an RFC 3339 instant.
    #[serde(default, deserialize_with = "first")]
    since: Option<String>,
    /// A job id (exact).
    #[serde(default, deserialize_with = "first")]
    job: Option<String>,
    /// `true`: only alerts no `resolved` closed (and no `resolved` ones).
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<bool>)]
    open: Option<String>,
    /// 1–1000, default 100.
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

impl Params for AlertsParams {
    const ALLOWED: &'static [&'static str] = &["since", "job", "open", "limit"];
}

/// Alerts raised since `since`, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsParams), responses(
        (status = 200, body = AlertList),
        Refusals,
        (status = 500, description = "the history index could not be read", body = ErrorBody),
        (status = 503, description = "this process keeps no history index", body = ErrorBody),
))]
pub(crate) async fn list(State(api): State<Arc<Api>>, Query(p): Query<AlertsParams>) -> ApiResult {
    let index = api.index()?;
    let since = sundial_core::history::instant(p.since.as_deref().unwrap_or("24h"), Utc::now())
        .map_err(|e| ApiError::bad_request("since", e))?;
    let open = match p.open.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "open",
                format!("must be true or false, got {other:?}"),
            ))
        }
    };
    let limit = number(p.limit.as_deref(), "limit", DEFAULT_LIMIT, 1..=MAX_LIMIT)?;
    if let Some(job) = &p.job {
        sundial_core::job::check_job_id("job", job)
            .map_err(|e| ApiError::bad_request("job", e.message))?;
    }
    let alerts = index
        .alerts(AlertQuery {
            since,
            job: p.job,
            open,
            limit,
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Answer(body(AlertList { alerts })))
}
