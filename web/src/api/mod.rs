//! The HTTP API (`/api/v1`, docs/api.md) and the dashboard (`/`), served by
//! schedulers and `sundial run` on `http.listen` beside `/metrics`.
//!
//! Reads come from this node's registry view (jobs, through a
//! [`JobsSource`]), the status collector (nodes, shards, pools), the
//! history index (runs) and the dead-letter queues (read without
//! consuming). Writes go through the control queue as signed commands
//! (`control.hmac_key`), so validation, the error shape and the order of
//! changes are the ones every other client gets; dead-letter replay and
//! purge act on the queue, as `sundial dlq` does. Who may ask what:
//! [`auth`] and ADR 0016.
//!
//! # Layout
//!
//! | module      | routes |
//! |-------------|--------|
//! | [`router`]  | every route of `/api/v1` and the dashboard, in one `Router` |
//! | `jobs`      | `GET /jobs`, `GET /jobs/{id}`, `POST /jobs`, `DELETE /jobs/{id}`, `POST /jobs/{id}/{pause,resume,trigger,backfill}` |
//! | `runs`      | `GET /runs`, `GET /runs/per-minute`, `GET /runs/per-hour`, `GET /runs/recent`, `GET /runs/failing`, `GET /runs/{fire_id}`, `GET /jobs/{id}/runs`, `GET /jobs/{id}/summary` |
//! | `alerts`    | `GET /alerts` |
//! | `audit`     | `GET /audit` |
//! | `dead`      | `GET /pools/{pool}/dead`, `POST /pools/{pool}/dead/{replay,purge}` |
//! | `status`    | `GET /status` |
//! | `openapi`   | `GET /openapi.json` |
//! | `ui`        | `/`, `/assets/app.js`, `/assets/app.css` |
//! | `auth`      | the middleware in front of every route |
//! | `error`, `query`, `body` | `ApiError`/`Answer`, the `Query<T>` and `Body<T>` extractors |
//! | `schema`    | the API's own bodies (errors, write results, settle), for the handlers and the OpenAPI document |

mod alerts;
mod audit;
mod auth;
pub mod body;
mod dead;
pub mod error;
mod jobs;
pub mod openapi;
pub mod query;
mod runs;
pub mod schema;
mod status;
mod ui;

use std::{
    sync::{Arc, OnceLock, RwLock},
    time::{Duration, Instant},
};

use axum::{
    middleware,
    routing::{get, post},
    Router,
};
use serde_json::Value;
use sundial_core::{
    registry_read::{JobsQuery, ReadAnswer},
    settings::{BrokerSettings, HttpSettings},
    topology::Topology,
};
use sundial_store::Index;
use tracing::{info, warn};

pub use self::{
    auth::method_not_allowed,
    body::MAX_BODY,
    error::{Answer, ApiError, ApiResult},
};

/// What the history endpoints of a process without an index answer (503).
pub(crate) const NO_INDEX: &str = "this process keeps no history index (history.enabled = false, or its file is in use by another process): ask a scheduler or `sundial run` that keeps one";

/// Where the API's job reads are answered: a scheduler's registry, wired by
/// the binary (this crate does not know the scheduler). `Err` is why no
/// answer came (503, with its text).
pub trait JobsSource: Send + Sync {
    fn read(&self, q: JobsQuery) -> JobsRead<'_>;
}

/// Why a [`JobsSource`] gave no answer: shown in a 503.
pub type Unavailable = Box<dyn std::error::Error + Send + Sync>;

/// The future of a [`JobsSource::read`].
pub type JobsRead<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<ReadAnswer, Unavailable>> + Send + 'a>,
>;

/// What the API needs of its process.
pub struct ApiConfig {
    pub node: String,
    pub broker: BrokerSettings,
    pub topology: Topology,
    pub http: HttpSettings,
    /// Signs the commands the API sends (`control.hmac_key`).
    pub hmac_key: Option<Arc<[u8]>>,
    /// How long status listens for heartbeats (a heartbeat interval).
    pub heartbeat_interval: Duration,
    /// A process silent this long is left out of the status
    /// (`scheduler.heartbeat_timeout`, as schedulers judge each other).
    pub heartbeat_timeout: Duration,
    pub history: Option<Arc<Index>>,
}

impl ApiConfig {
    /// The API of node `node` as the settings describe it.
    pub fn from_settings(
        s: &sundial_core::settings::Settings,
        node: &str,
        history: Option<Arc<Index>>,
    ) -> Self {
        Self {
            node: node.to_string(),
            broker: s.broker.clone(),
            topology: s.topology.clone(),
            http: s.http.clone(),
            hmac_key: s.control.hmac_key.as_deref().map(Arc::from),
            heartbeat_interval: s.scheduler.heartbeat_interval,
            heartbeat_timeout: s.scheduler.heartbeat_timeout,
            history,
        }
    }
}

/// The API of one process: the state every handler shares.
pub struct Api {
    cfg: ApiConfig,
    /// Where job reads go (the binary wires this node's scheduler).
    registry: RwLock<Option<Arc<dyn JobsSource>>>,
    /// The connection writes, status and dead letters use (opened on first
    /// use, again after a loss).
    conn: tokio::sync::Mutex<Option<Arc<lapin::Connection>>>,
    /// Queue probes (pools that may not exist) on a connection of their own.
    probe: sundial_amqp::broker::Probe,
    status: tokio::sync::Mutex<Option<(Instant, Value)>>,
    /// Heartbeats heard since the first status request (on `conn`), so a
    /// status answers without listening an interval each time.
    watch: tokio::sync::Mutex<Option<sundial_amqp::status::Watch>>,
    /// Whether requests need a token: known once the listener is bound.
    tokens_required: OnceLock<bool>,
}

impl Api {
    pub fn new(cfg: ApiConfig) -> Arc<Self> {
        let probe = sundial_amqp::broker::Probe::new(
            cfg.broker.clone(),
            format!("sundial api {} probes", cfg.node),
        );
        Arc::new(Self {
            cfg,
            registry: RwLock::new(None),
            conn: tokio::sync::Mutex::new(None),
            probe,
            status: tokio::sync::Mutex::new(None),
            watch: tokio::sync::Mutex::new(None),
            tokens_required: OnceLock::new(),
        })
    }

    /// Where the job reads are answered (a scheduler's registry; the
    /// binary wires it).
    pub fn set_registry(&self, r: Option<Arc<dyn JobsSource>>) {
        if let Ok(mut slot) = self.registry.write() {
            *slot = r;
        }
    }

    /// Called once the endpoint is bound: beyond loopback (or with
    /// `http.require_tokens`) every API request needs a token.
    pub fn bound(&self, addr: std::net::SocketAddr) {
        let required = self.cfg.http.tokens_required(addr);
        let _ = self.tokens_required.set(required);
        if required && self.cfg.http.tokens.is_empty() {
            warn!(listen = %addr, "the API and dashboard need a token here (not loopback, or http.require_tokens) and http.tokens is empty: every request is refused (401)");
        } else if required {
            info!(listen = %addr, tokens = self.cfg.http.tokens.len(), "the API asks for a bearer token");
        }
    }

    /// The connection for writes, status and dead letters.
    async fn connection(&self) -> Result<Arc<lapin::Connection>, ApiError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(c.clone());
        }
        match sundial_amqp::broker::connect_any(
            &self.cfg.broker,
            &format!("sundial api {}", self.cfg.node),
        )
        .await
        {
            Ok((c, _)) => {
                let c = Arc::new(c);
                *slot = Some(c.clone());
                Ok(c)
            }
            Err(e) => Err(ApiError::unavailable(format!(
                "cannot reach the broker: {e}"
            ))),
        }
    }

    /// The history index, or the 503 of a process that keeps none.
    fn index(&self) -> Result<&Arc<Index>, ApiError> {
        self.cfg
            .history
            .as_ref()
            .ok_or_else(|| ApiError::unavailable(NO_INDEX))
    }
}

/// Every route of `/api/v1` and the dashboard's files, behind the
/// [`auth::guard`] (the dashboard's files are public: they hold no data).
/// The router's 405s get the API's shape from [`method_not_allowed`],
/// applied around the whole app (where axum has set `Allow`).
pub fn router(api: Arc<Api>) -> Router {
    let v1 = Router::new()
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/jobs", get(jobs::list).post(jobs::upsert))
        .route("/api/v1/jobs/{id}", get(jobs::one).delete(jobs::delete))
        .route("/api/v1/jobs/{id}/pause", post(jobs::pause))
        .route("/api/v1/jobs/{id}/resume", post(jobs::resume))
        .route("/api/v1/jobs/{id}/trigger", post(jobs::trigger))
        .route("/api/v1/jobs/{id}/backfill", post(jobs::backfill))
        .route("/api/v1/jobs/{id}/runs", get(runs::job_runs))
        .route("/api/v1/jobs/{id}/summary", get(runs::summary))
        .route("/api/v1/runs", get(runs::runs))
        .route("/api/v1/runs/per-minute", get(runs::per_minute))
        .route("/api/v1/runs/per-hour", get(runs::per_hour))
        .route("/api/v1/runs/recent", get(runs::recent))
        .route("/api/v1/runs/failing", get(runs::failing))
        .route("/api/v1/runs/{fire_id}", get(runs::fire))
        .route("/api/v1/runs/{fire_id}/cancel", post(jobs::cancel))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/pools/{pool}/dead", get(dead::list))
        .route("/api/v1/pools/{pool}/dead/replay", post(dead::replay))
        .route("/api/v1/pools/{pool}/dead/purge", post(dead::purge))
        .route("/api/{*rest}", axum::routing::any(no_endpoint))
        .layer(middleware::from_fn_with_state(api.clone(), auth::guard))
        .with_state(api);
    v1.merge(ui::router())
}

async fn no_endpoint(uri: axum::http::Uri) -> ApiError {
    ApiError::no_endpoint(uri.path())
}
