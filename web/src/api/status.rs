//! `GET /api/v1/status`: what `sundial status` shows (schedulers, workers,
//! shards, pools), reused for [`STATUS_TTL`] (the dashboard polls it).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::extract::State;
use serde_json::json;
use sundial_amqp::status::Watch;

use super::schema::Refusals;
use super::{
    error::{Answer, ApiError, ApiResult},
    query::{NoParams, Query},
    Api,
};

/// How long a status answer is reused.
const STATUS_TTL: Duration = Duration::from_secs(2);

/// What `sundial status --json` prints: schedulers, workers, shards, pools.
#[utoipa::path(get, path = "/api/v1/status", tag = "status", responses(
        (status = 200, body = sundial_amqp::status::Status),
        Refusals,
        (status = 503, description = "the broker cannot be reached", body = super::schema::ErrorBody),
))]
pub(crate) async fn status(State(api): State<Arc<Api>>, _: Query<NoParams>) -> ApiResult {
    let mut cached = api.status.lock().await;
    if let Some((at, v)) = cached.as_ref() {
        if at.elapsed() < STATUS_TTL {
            return Ok(Answer(v.clone()));
        }
    }
    let conn = api.connection().await?;
    let listen = api.cfg.heartbeat_interval + Duration::from_millis(250);
    let unreadable =
        |e: sundial_amqp::Error| ApiError::unavailable(format!("status could not be read: {e}"));
    let mut watch = api.watch.lock().await;
    let w = match watch.take().filter(Watch::alive) {
        Some(w) => w,
        // Silent past the heartbeat timeout: left out, as schedulers
        // count it gone (and a one-shot `sundial status` would not hear it).
        None => Watch::start(&conn, &api.cfg.topology, api.cfg.heartbeat_timeout)
            .await
            .map_err(unreadable)?,
    };
    let w = watch.insert(w);
    let s = w
        .status(&conn, &api.probe, &api.cfg.topology, listen)
        .await
        .map_err(unreadable)?;
    let v = json!(s);
    *cached = Some((Instant::now(), v.clone()));
    Ok(Answer(v))
}
