//! The operations endpoint every process serves (`http.listen`; unset, the
//! first free port of the role's range on 127.0.0.1, ADR 0012): `/metrics`
//! (Prometheus text format), `/healthz` (the process answers) and `/readyz`
//! (connected to the broker and doing its job: a scheduler has replayed the
//! registry, attached its control consumer and finished its first lease
//! round; a worker consumes every shard queue of its pool). hyper's HTTP/1
//! server, one task per connection; the metrics recorder is
//! `metrics-exporter-prometheus` without its own listener.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sundial_runtime::Health;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::Error;

/// Histogram buckets for every `*_seconds` metric: 1 ms to 1 h, so both
/// fire lateness (milliseconds) and job durations (minutes) read well.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle).
pub fn install_recorder() -> Result<PrometheusHandle, Error> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .install_recorder()?;
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
    history: Option<Arc<sundial_store::Index>>,
    api: Option<Arc<crate::api::Api>>,
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
        info!(listen = %addr, "serving /metrics /healthz /readyz /api/v1 on http://{addr}");
    }
    let state = Arc::new(State {
        metrics,
        health,
        history,
        api,
    });
    let task = tokio::spawn(accept_loop(listener, state, shutdown));
    Ok((addr, task))
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

/// What the endpoint answers from.
struct State {
    metrics: PrometheusHandle,
    health: Arc<Health>,
    history: Option<Arc<sundial_store::Index>>,
    /// The API and dashboard (schedulers and `sundial run`).
    api: Option<Arc<crate::api::Api>>,
}

/// Connections served at once; one more is closed at accept. Each holds a
/// file handle, which the process shares with its broker connections: 300
/// idle clients under `ulimit -n 256` once took `/readyz` and then the
/// broker reconnects down (`Too many open files`).
const MAX_CONNECTIONS: usize = 128;

/// A client must send a request's headers within this (the first request,
/// and each next one on a kept-alive connection): an idle or slow client
/// does not hold a connection slot for long.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
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
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(req, &state).await) }
            });
            let _ = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(sock), service)
                .await;
            drop(slot);
        });
    }
}

/// [`route`], with a panic (a bug) answered as a 500 naming it instead of a
/// dropped connection.
async fn answer(req: Request<hyper::body::Incoming>, state: &State) -> Response<Full<Bytes>> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(route(req, state))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(panic) => {
            let what = sundial_runtime::panic::panic_text(&*panic);
            tracing::error!(panic = %what, "http request panicked (a bug; please report it)");
            let (status, body) = crate::api::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                format!("internal error: {what}"),
            );
            crate::api::json_response(status, &body)
        }
    }
}

async fn route(req: Request<hyper::body::Incoming>, state: &State) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, ct: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = ct.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    let ops = matches!(req.uri().path(), "/metrics" | "/healthz" | "/readyz");
    if let (Some(api), false) = (&state.api, ops) {
        if let Some(r) = api.handle(req).await {
            return r;
        }
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /, /api/v1/openapi.json, /metrics, /healthz or /readyz\n".into(),
            PLAIN,
        );
    }
    if req.method() != hyper::Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into(), PLAIN);
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET"),
        );
        return r;
    }
    let path = req.uri().path();
    if path.starts_with("/api/") {
        let segments = path
            .strip_prefix("/api/v1/")
            .map(crate::api::path_segments)
            .unwrap_or_default();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let params = crate::api::query_params(req.uri().query());
        let found = if seg.is_empty() {
            None
        } else {
            crate::api::runs::route(state.history.as_ref(), &seg, &params).await
        };
        let (status, body) = match found {
            Some(a) => a,
            None => (
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": {"field": null, "message": format!("no such endpoint: {path} (docs/api.md lists them)")}}),
            ),
        };
        return text(status, body.to_string(), "application/json");
    }
    match path {
        "/metrics" => text(
            StatusCode::OK,
            state.metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/healthz" => text(StatusCode::OK, "ok\n".into(), PLAIN),
        "/readyz" => match state.health.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n".into(), PLAIN),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
                PLAIN,
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
            PLAIN,
        ),
    }
}
