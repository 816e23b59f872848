//! The operations endpoint every process serves (`http.listen`; unset, the
//! first free port of the role's range on 127.0.0.1, ADR 0012): `/metrics`
//! (Prometheus text format), `/healthz` (the process answers) and `/readyz`
//! (connected to the broker and doing its job: a scheduler has replayed the
//! registry, attached its control consumer and finished its first lease
//! round; a worker consumes every shard queue of its pool); with an
//! [`Api`], the API and the dashboard beside them. One axum `Router`
//! ([`app`]) served by hyper's HTTP/1 connection, one task per connection,
//! at most [`MAX_CONNECTIONS`] at once; the metrics recorder is
//! `metrics-exporter-prometheus` without its own listener.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::Request,
    http::{header, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, MethodRouter},
    Router,
};
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sundial_runtime::Health;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::{info, warn};

use crate::{
    api::{error::ApiError, Api},
    error::Error,
};

/// Histogram buckets for every `*_seconds` metric: 1 ms to 1 h, so both
/// fire lateness (milliseconds) and job durations (minutes) read well.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// How often the recorder's histogram samples are folded into their
/// buckets when nobody scrapes `/metrics`.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle), with its upkeep: the exporter keeps every histogram
/// sample until a scrape or an upkeep folds it into the buckets, so a
/// process nobody scrapes grew by 16 bytes a run (a worker at 20,000 runs/s:
/// ~1 GiB an hour). A thread of its own does it, whatever runtime the
/// process has.
pub fn install_recorder() -> Result<PrometheusHandle, Error> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .map_err(|e| Error::Upkeep(e.to_string()))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// A Prometheus handle whose recorder is not installed: for a process
/// (a benchmark) that installs a recorder of its own and still serves the
/// endpoint.
pub fn detached_recorder() -> PrometheusHandle {
    PrometheusBuilder::new().build_recorder().handle()
}

/// Where the endpoint listens: an address the user set (it must be free),
/// or the first free port of a range on 127.0.0.1 (the role's default).
#[derive(Debug, Clone)]
pub enum Listen {
    Exactly(SocketAddr),
    FirstFree(std::ops::RangeInclusive<u16>),
}

/// Binds per `listen` (failing at once, naming the address or range, when
/// none is free), logs where it serves in one line, and serves until
/// `shutdown`. Returns the bound address and the server task.
pub async fn serve(
    listen: Listen,
    metrics: PrometheusHandle,
    health: Arc<Health>,
    api: Option<Arc<Api>>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let listener = bind(&listen).await?;
    let addr = listener.local_addr().map_err(|e| Error::Listen {
        addr: format!("{listen:?}"),
        why: e.to_string(),
    })?;
    if let Some(api) = &api {
        api.bound(addr);
        info!(listen = %addr, "serving /metrics /healthz /readyz /api/v1 and the dashboard on http://{addr}");
    } else {
        info!(listen = %addr, "serving /metrics /healthz /readyz on http://{addr}");
    }
    let app = app(metrics, health, api);
    let task = tokio::spawn(accept_loop(listener, app, shutdown));
    Ok((addr, task))
}

/// Every route a process serves: the operations endpoint and, with `api`,
/// the API and the dashboard. A panic in a handler (a bug) is answered as
/// a 500 naming it instead of a dropped connection.
pub fn app(metrics: PrometheusHandle, health: Arc<Health>, api: Option<Arc<Api>>) -> Router {
    let with_api = api.is_some();
    let ops = Router::new()
        .route(
            "/metrics",
            get_only(move || {
                let body = metrics.render();
                async move {
                    text(
                        StatusCode::OK,
                        body,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get_only(|| async { text(StatusCode::OK, "ok\n".into(), PLAIN) }),
        )
        .route(
            "/readyz",
            get_only(move || {
                let ready = health.ready();
                async move {
                    match ready {
                        Ok(()) => text(StatusCode::OK, "ready\n".into(), PLAIN),
                        Err(why) => text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                            PLAIN,
                        ),
                    }
                }
            }),
        );
    let app = match api {
        Some(api) => ops.merge(crate::api::router(api)),
        None => ops,
    };
    let app = app.fallback(move |req: Request| async move { not_found(&req, with_api) });
    // Around the whole app (a layer on a router wraps each route, inside
    // the code that sets `Allow`).
    Router::new()
        .fallback_service(app)
        .layer(axum::middleware::from_fn(crate::api::method_not_allowed))
        .layer(CatchPanicLayer::custom(panicked))
}

const PLAIN: &str = "text/plain; charset=utf-8";

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// GET, and a 405 naming it for any other method (HEAD too).
fn get_only<H, T>(handler: H) -> MethodRouter
where
    H: axum::handler::Handler<T, ()>,
    T: 'static,
{
    let refuse = || async {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into(), PLAIN);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        r
    };
    get(handler).head(refuse).fallback(refuse)
}

/// A path no route serves.
fn not_found(req: &Request, with_api: bool) -> Response {
    let path = req.uri().path();
    if with_api {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /, /api/v1/openapi.json, /metrics, /healthz or /readyz\n".into(),
            PLAIN,
        );
    }
    if req.method() != Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into(), PLAIN);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let seg: Vec<&str> = path
        .strip_prefix("/api/v1/")
        .unwrap_or("")
        .split('/')
        .collect();
    if let ["runs"] | ["jobs", _, "runs" | "summary"] = seg.as_slice() {
        if !seg.contains(&"") {
            // A process that serves no API keeps no history index either.
            return ApiError::unavailable(crate::api::NO_INDEX).into_response();
        }
    }
    if path.starts_with("/api/") {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no such endpoint: {path} (docs/api.md lists them)"),
        )
        .into_response();
    }
    text(
        StatusCode::NOT_FOUND,
        "not found: try /metrics, /healthz or /readyz\n".into(),
        PLAIN,
    )
}

/// The answer to a handler's panic.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = sundial_runtime::panic::panic_text(&*panic);
    tracing::error!(panic = %what, "http request panicked (a bug; please report it)");
    ApiError::internal(format!("internal error: {what}")).into_response()
}

async fn bind(listen: &Listen) -> Result<tokio::net::TcpListener, Error> {
    match listen {
        Listen::Exactly(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Listen {
                addr: addr.to_string(),
                why: format!(
                    "{e}; http.listen was set to it (flag --http, SUNDIAL__HTTP__LISTEN or the settings file): pick a free address"
                ),
            }),
        Listen::FirstFree(ports) => {
            for port in ports.clone() {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
                    return Ok(l);
                }
            }
            Err(Error::Listen {
                addr: format!(
                    "127.0.0.1:{}-{}",
                    ports.start(),
                    ports.end()
                ),
                why: "every port of this role's default range is taken; set http.listen (--http ADDR) or http.enabled = false".into(),
            })
        }
    }
}

/// Connections served at once; one more is closed at accept. Each holds a
/// file handle, which the process shares with its broker connections: 300
/// idle clients under `ulimit -n 256` once took `/readyz` and then the
/// broker reconnects down (`Too many open files`).
pub const MAX_CONNECTIONS: usize = 128;

/// A client must send a request's headers within this (the first request,
/// and each next one on a kept-alive connection): an idle or slow client
/// does not hold a connection slot for long.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn accept_loop(listener: tokio::net::TcpListener, app: Router, shutdown: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused = sundial_runtime::ratelimit::Every::new(std::time::Duration::from_secs(60));
    loop {
        let (sock, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: do not spin on it.
                    warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(held_back) = refused.allow(std::time::Instant::now()) {
                warn!(
                    max = MAX_CONNECTIONS,
                    held_back, "http: too many connections; closing new ones until some end"
                );
            }
            drop(sock);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(sock), service)
                .await;
            drop(slot);
        });
    }
}
