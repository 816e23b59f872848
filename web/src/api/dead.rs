//! The dead-letter endpoints: list a pool's letters without consuming
//! them, replay or purge named ones (or all), as `sundial dlq` does.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::Value;
use sundial_amqp::dlq::{Action, Asked, Dlq};
use tracing::info;
use utoipa::IntoParams;

use super::{
    body::Body,
    error::{Answer, ApiError, ApiResult},
    query::{first, number, Params, Query},
    schema::{body, DeadPage, ErrorBody, Refusals, SettleBody, SettleResult, SkippedLetter},
    Api,
};

/// Most dead letters one list answer holds.
const DEAD_PAGE_MAX: usize = 1_000;

/// `GET /api/v1/pools/{pool}/dead`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// 1–1000, default 100.
    #[serde(default, deserialize_with = "first")]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

impl Params for ListParams {
    const ALLOWED: &'static [&'static str] = &["limit"];
}

/// A pool's dead letters in queue order, read without consuming them.
#[utoipa::path(get, path = "/api/v1/pools/{pool}/dead", tag = "dead letters", params(("pool" = String, Path), ListParams), responses(
        (status = 200, body = DeadPage),
        Refusals,
        (status = 404, description = "no such pool", body = ErrorBody),
        (status = 503, description = "the broker cannot be asked, or the queue is not declared", body = ErrorBody),
))]
pub(crate) async fn list(
    State(api): State<Arc<Api>>,
    Path(pool): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult {
    let limit = number(p.limit.as_deref(), "limit", 100, 1..=DEAD_PAGE_MAX)?;
    let total = depth(&api, &pool).await?;
    let conn = api.connection().await?;
    let dlq = Dlq::new(&conn, &api.cfg.topology, &pool);
    match dlq.first(limit).await {
        Ok(letters) => Ok(Answer(body(DeadPage {
            pool,
            total,
            letters,
        }))),
        Err(e) => Err(ApiError::unavailable(format!(
            "the dead-letter queue could not be read: {e}"
        ))),
    }
}

/// Republishes the named dead letters (or all) as attempt 1.
#[utoipa::path(post, path = "/api/v1/pools/{pool}/dead/replay", tag = "dead letters", params(("pool" = String, Path)), request_body = SettleBody, responses(
        (status = 200, body = SettleResult),
        Refusals,
        (status = 404, description = "no such pool", body = ErrorBody),
        (status = 503, description = "the broker cannot be asked, or the queue is not declared", body = ErrorBody),
        (status = 409, description = "some named letters are not in the queue (`result` says which)", body = ErrorBody),
))]
pub(crate) async fn replay(
    State(api): State<Arc<Api>>,
    Path(pool): Path<String>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    settle(&api, &pool, Action::Replay, body, &caller).await
}

/// Deletes the named dead letters (or all).
#[utoipa::path(post, path = "/api/v1/pools/{pool}/dead/purge", tag = "dead letters", params(("pool" = String, Path)), request_body = SettleBody, responses(
        (status = 200, body = SettleResult),
        Refusals,
        (status = 404, description = "no such pool", body = ErrorBody),
        (status = 503, description = "the broker cannot be asked, or the queue is not declared", body = ErrorBody),
        (status = 409, description = "some named letters are not in the queue (`result` says which)", body = ErrorBody),
))]
pub(crate) async fn purge(
    State(api): State<Arc<Api>>,
    Path(pool): Path<String>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    settle(&api, &pool, Action::Purge, body, &caller).await
}

/// The depth of `pool`'s dead-letter queue, asked through the probe
/// connection (the queue may be missing; on the API's own connection a
/// 404 would spoil a channel id): a name that could be no pool, or one
/// neither configured nor declared, is a 404; a configured pool whose
/// queue is not declared, a 503 saying so. A name that could be no pool
/// is never used in a queue name.
async fn depth(api: &Api, pool: &str) -> Result<u32, ApiError> {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Some("pool"),
            format!(
                "no pool \"{}\"",
                sundial_core::protocol::headers::bounded_to(pool, 80)
            ),
        )
    };
    if sundial_core::job::check_pool("pool", pool).is_err() {
        return Err(unknown());
    }
    let queue = api.cfg.topology.dead_queue(pool);
    match api.probe.passive_declare(&queue).await {
        Ok(Some((messages, _))) => Ok(messages),
        Ok(None) if api.cfg.topology.pools.iter().any(|p| p == pool) => Err(ApiError::unavailable(
            format!("{queue} is not declared: run `sundial topology apply`"),
        )),
        Ok(None) => Err(unknown()),
        Err(e) => Err(ApiError::unavailable(format!(
            "the broker could not be asked about pool \"{pool}\": {e}"
        ))),
    }
}

/// Which letters a replay or purge takes (`{"fire_ids": [...]}` or
/// `{"all": true}`), and the `reason` and `by` (who asks).
fn selection(body: Option<Value>) -> Result<(Option<Vec<String>>, Asked), ApiError> {
    let Some(Value::Object(o)) = body else {
        return Err(ApiError::bad_request(
            "body",
            "send {\"fire_ids\": [...]} or {\"all\": true}",
        ));
    };
    let mut ids: Option<Vec<String>> = None;
    let mut all = false;
    let mut asked = Asked::default();
    for (k, v) in o {
        match (k.as_str(), v) {
            ("all", Value::Bool(b)) => all = b,
            ("reason", Value::String(s)) => asked.reason = Some(s),
            ("by", Value::String(s)) => asked.by = Some(s),
            ("reason" | "by", _) => return Err(ApiError::bad_request(&k, "must be a string")),
            ("fire_ids", Value::Array(a)) => {
                let mut v = Vec::with_capacity(a.len());
                for (i, x) in a.into_iter().enumerate() {
                    match x {
                        Value::String(s) => v.push(s),
                        _ => {
                            return Err(ApiError::bad_request(
                                &format!("fire_ids[{i}]"),
                                "must be a string",
                            ))
                        }
                    }
                }
                ids = Some(v);
            }
            ("all", _) => return Err(ApiError::bad_request(&k, "must be true or false")),
            ("fire_ids", _) => {
                return Err(ApiError::bad_request(&k, "must be an array of fire ids"))
            }
            _ => {
                return Err(ApiError::bad_request(
                    &k,
                    "unknown field; expected fire_ids or all (and reason, by)",
                ))
            }
        }
    }
    if ids.is_none() && !all {
        return Err(ApiError::bad_request(
            "fire_ids",
            "missing: name the fire ids, or send {\"all\": true}",
        ));
    }
    // The same bounds as a trigger's (`cancel`, `trigger`).
    let (reason, by) = sundial_core::protocol::control::asked(asked.reason, asked.by)
        .map_err(|e| ApiError::bad_request(&e.path, e.detail))?;
    Ok((
        ids,
        Asked {
            reason,
            by,
            node: None,
        },
    ))
}

/// `caller` is who replays or purges (`Caller::who`): recorded in the
/// history with each letter replayed, and in the audit trail.
async fn settle(
    api: &Api,
    pool: &str,
    action: Action,
    request: Option<Value>,
    caller: &super::auth::Caller,
) -> ApiResult {
    let verb = match action {
        Action::Replay => "replay",
        _ => "purge",
    };
    let (ids, mut asked) = selection(request)?;
    asked.by = Some(caller.who(asked.by.as_deref()));
    depth(api, pool).await?;
    let conn = api.connection().await?;
    asked.node = Some(api.cfg.node.clone());
    let dlq = Dlq::new(&conn, &api.cfg.topology, pool).asked(asked);
    let wanted = ids.clone();
    let s = dlq
        .settle(
            action,
            |dl| match &wanted {
                None => true,
                Some(ids) => dl.fire_id.as_ref().is_some_and(|f| ids.contains(f)),
            },
            || {},
        )
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let missing_ids: Vec<String> = ids
        .iter()
        .flatten()
        .filter(|id| !s.done.contains(id) && !s.skipped.iter().any(|(d, _)| d == *id))
        .cloned()
        .collect();
    info!(
        pool,
        action = verb,
        done = s.done.len(),
        skipped = s.skipped.len(),
        missing = missing_ids.len(),
        "dead letters settled from the API"
    );
    let missing = missing_ids.len();
    let result = body(SettleResult {
        done: s.done,
        skipped: s
            .skipped
            .into_iter()
            .map(|(fire_id, reason)| SkippedLetter { fire_id, reason })
            .collect(),
        missing: missing_ids,
        unrecorded: s.unrecorded,
    });
    if missing == 0 {
        return Ok(Answer(result));
    }
    // Some were not (any longer) in the queue.
    Err(ApiError::new(
        StatusCode::CONFLICT,
        Some("fire_ids"),
        format!(
            "{missing} of the named letters are not in sundial.dead.{pool} (replayed or purged already?); the others were {verb}ed",
        ),
    )
    .with("result", result))
}
