//! The HTTP API (`/api/v1`, docs/api.md) and the dashboard (`/`), served by
//! schedulers and `sundial run` on `http.listen` beside `/metrics`.
//!
//! Reads come from this node's registry view (jobs), the status collector
//! (nodes, shards, pools), the history index (runs) and the dead-letter
//! queues (read without consuming). Writes go through the control queue as
//! signed commands (`control.hmac_key`), so validation, the error shape and
//! the order of changes are the ones every other client gets; dead-letter
//! replay and purge act on the queue, as `sundial dlq` does. Auth: see
//! [`Api::authorize`] and ADR 0016.

mod openapi;
pub mod runs;
mod ui;

use std::{
    sync::{Arc, OnceLock, RwLock},
    time::{Duration, Instant},
};

use chrono::Utc;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Bytes, header, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use sundial_core::{
    auth::{authenticate, TokenRole},
    protocol::control::{Command, Reply},
    registry::JobFilter,
    settings::{BrokerSettings, HttpSettings},
    topology::Topology,
};
use tracing::{info, warn};

use sundial_amqp::client::ClientError;
use sundial_core::registry_read::{self as jobs, JobsQuery, ReadErrorKind};
use sundial_store::Index;

/// An API answer: status and JSON body.
pub type Answer = (StatusCode, Value);

/// The largest request body (a job definition, a batch of fire ids).
pub const MAX_BODY: usize = 1024 * 1024;
/// How long a write waits for the control reply.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a status answer is reused (the dashboard polls it).
const STATUS_TTL: Duration = Duration::from_secs(2);
/// Most dead letters one list answer holds.
const DEAD_PAGE_MAX: usize = 1_000;

pub(crate) fn error(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Answer {
    (
        status,
        json!({"error": {"field": field, "message": message.into()}}),
    )
}

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
    Box<dyn std::future::Future<Output = Result<jobs::ReadAnswer, Unavailable>> + Send + 'a>,
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

/// The API of one process.
pub struct Api {
    cfg: ApiConfig,
    /// This node's registry, while it has one (set by the scheduler on
    /// every (re)connection).
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

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    /// No token is asked for here (loopback without `http.require_tokens`).
    Open,
    /// A token of `http.tokens`: its role and name.
    Token(TokenRole, String),
}

impl Caller {
    fn may_write(&self) -> bool {
        matches!(self, Caller::Open | Caller::Token(TokenRole::Admin, _))
    }

    /// Who, for the log of writes.
    fn name(&self) -> &str {
        match self {
            Caller::Open => "(loopback)",
            Caller::Token(_, name) => name,
        }
    }
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
    pub(crate) fn bound(&self, addr: std::net::SocketAddr) {
        let required = self.cfg.http.tokens_required(addr);
        let _ = self.tokens_required.set(required);
        if required && self.cfg.http.tokens.is_empty() {
            warn!(listen = %addr, "the API and dashboard need a token here (not loopback, or http.require_tokens) and http.tokens is empty: every request is refused (401)");
        } else if required {
            info!(listen = %addr, tokens = self.cfg.http.tokens.len(), "the API asks for a bearer token");
        }
    }

    /// Serves `/`, `/assets/*` and `/api/v1/*`; `None` for other paths.
    pub async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
    ) -> Option<Response<Full<Bytes>>> {
        let path = req.uri().path().to_string();
        if !path.starts_with("/api/") {
            return ui::asset(&path, req.method());
        }
        let (status, body) = self.api(req, &path).await;
        let mut r = json_response(status, &body);
        if status == StatusCode::METHOD_NOT_ALLOWED {
            let seg: Vec<&str> = path
                .strip_prefix("/api/v1/")
                .unwrap_or_default()
                .split('/')
                .collect();
            r.headers_mut().insert(
                header::ALLOW,
                header::HeaderValue::from_static(allowed(&seg)),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"sundial\""),
            );
        }
        Some(r)
    }

    fn authorize(&self, req: &Request<hyper::body::Incoming>) -> Result<Caller, Answer> {
        if !self.tokens_required.get().copied().unwrap_or(true) {
            return Ok(Caller::Open);
        }
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                Some("authorization"),
                "this endpoint needs a token: send `Authorization: Bearer TOKEN` (http.tokens)",
            ));
        };
        // RFC 9110: the scheme is case-insensitive (`bearer`, `BEARER`).
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim());
        match authenticate(&self.cfg.http.tokens, presented) {
            Some(t) => Ok(Caller::Token(t.role, t.name.clone())),
            None => Err(error(
                StatusCode::UNAUTHORIZED,
                Some("authorization"),
                "unknown token (expected `Authorization: Bearer TOKEN` with a token of http.tokens)",
            )),
        }
    }

    async fn api(&self, req: Request<hyper::body::Incoming>, path: &str) -> Answer {
        let caller = match self.authorize(&req) {
            Ok(c) => c,
            Err(a) => return a,
        };
        if let Err(a) = same_origin(&req, &caller) {
            return a;
        }
        if let Err(a) = not_from_a_job(&req, &caller, self.cfg.hmac_key.is_some()) {
            return a;
        }
        let method = req.method().clone();
        let Some(rest) = path.strip_prefix("/api/v1/") else {
            return not_found(path);
        };
        let segments = path_segments(rest);
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let params = query_params(req.uri().query());
        if method != Method::GET && method != Method::HEAD {
            if !caller.may_write() {
                return error(
                    StatusCode::FORBIDDEN,
                    Some("authorization"),
                    "this token may read only (role read); writes need an admin token",
                );
            }
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(a) => return a,
            };
            let answer = self.write(&method, &seg, body).await;
            // Every write, with who sent it (the token's name) and how it
            // ended: the dashboard's audit trail.
            info!(caller = caller.name(), method = %method, path, status = answer.0.as_u16(), "api write");
            return answer;
        }
        match seg.as_slice() {
            ["openapi.json"] => (StatusCode::OK, openapi::document()),
            ["status"] => match only(&params, &[]) {
                Err(a) => a,
                Ok(()) => self.status().await,
            },
            ["jobs"] => self.list_jobs(&params).await,
            ["jobs", id] if !id.is_empty() => {
                let next = match only(&params, &["next"])
                    .and_then(|()| number(&params, "next", 10, 0..=jobs::MAX_NEXT))
                {
                    Ok(n) => n,
                    Err(a) => return a,
                };
                self.ask_registry(JobsQuery::One {
                    id: (*id).to_string(),
                    next,
                })
                .await
            }
            ["runs", "per-minute"] => self.per_minute(&params).await,
            ["pools", pool, "dead"] if !pool.is_empty() => self.dead_letters(pool, &params).await,
            _ => match runs::route(self.cfg.history.as_ref(), &seg, &params).await {
                Some(a) => a,
                None => not_found(path),
            },
        }
    }

    async fn list_jobs(&self, params: &[(String, String)]) -> Answer {
        let allowed = ["q", "pool", "label", "paused", "limit", "cursor", "sort"];
        if let Err(a) = only(params, &allowed) {
            return a;
        }
        let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
        let mut filter = JobFilter {
            q: get("q").filter(|q| !q.is_empty()).map(str::to_string),
            pool: get("pool").filter(|p| !p.is_empty()).map(str::to_string),
            ..JobFilter::default()
        };
        for (k, v) in params.iter().filter(|(k, _)| k == "label") {
            let Some((lk, lv)) = v.split_once('=') else {
                return error(StatusCode::BAD_REQUEST, Some(k), "must be key=value");
            };
            filter.labels.insert(lk.to_string(), lv.to_string());
        }
        filter.paused = match get("paused") {
            None | Some("") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some("paused"),
                    "must be true or false",
                )
            }
        };
        let sort_next = match get("sort") {
            None | Some("id") => false,
            Some("next") => true,
            Some(_) => return error(StatusCode::BAD_REQUEST, Some("sort"), "must be id or next"),
        };
        let limit = match number(params, "limit", jobs::DEFAULT_PAGE, 1..=jobs::MAX_PAGE) {
            Ok(n) => n,
            Err(a) => return a,
        };
        self.ask_registry(JobsQuery::List {
            filter,
            sort_next,
            cursor: get("cursor").map(str::to_string),
            limit,
        })
        .await
    }

    async fn ask_registry(&self, q: JobsQuery) -> Answer {
        let registry = self.registry.read().ok().and_then(|r| r.clone());
        let Some(registry) = registry else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "this process holds no registry right now (connecting to the broker, or not a scheduler): try again, or ask a scheduler",
            );
        };
        match registry.read(q).await {
            Ok(Ok(body)) => (StatusCode::OK, body),
            Ok(Err(e)) => {
                let status = match e.kind {
                    ReadErrorKind::NotFound => StatusCode::NOT_FOUND,
                    ReadErrorKind::TooBroad => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => StatusCode::BAD_REQUEST,
                };
                error(status, e.field, e.message)
            }
            Err(unavailable) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                unavailable.to_string(),
            ),
        }
    }

    /// The connection for writes, status and dead letters.
    async fn connection(&self) -> Result<Arc<lapin::Connection>, Answer> {
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
            Err(e) => Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("cannot reach the broker: {e}"),
            )),
        }
    }

    async fn status(&self) -> Answer {
        let mut cached = self.status.lock().await;
        if let Some((at, v)) = cached.as_ref() {
            if at.elapsed() < STATUS_TTL {
                return (StatusCode::OK, v.clone());
            }
        }
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(a) => return a,
        };
        let listen = self.cfg.heartbeat_interval + Duration::from_millis(250);
        let mut watch = self.watch.lock().await;
        let w = match watch.take().filter(sundial_amqp::status::Watch::alive) {
            Some(w) => w,
            // Silent past the heartbeat timeout: left out, as schedulers
            // count it gone (and a one-shot `sundial status` would not hear it).
            None => {
                let gone = self.cfg.heartbeat_timeout;
                match sundial_amqp::status::Watch::start(&conn, &self.cfg.topology, gone).await {
                    Ok(w) => w,
                    Err(e) => {
                        return error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            None,
                            format!("status could not be read: {e}"),
                        )
                    }
                }
            }
        };
        let w = watch.insert(w);
        match w
            .status(&conn, &self.probe, &self.cfg.topology, listen)
            .await
        {
            Ok(s) => {
                let v = json!(s);
                *cached = Some((Instant::now(), v.clone()));
                (StatusCode::OK, v)
            }
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("status could not be read: {e}"),
            ),
        }
    }

    async fn per_minute(&self, params: &[(String, String)]) -> Answer {
        if let Err(a) = only(params, &["since"]) {
            return a;
        }
        let Some(index) = &self.cfg.history else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "this process keeps no history index",
            );
        };
        let since = params
            .iter()
            .find(|(k, _)| k == "since")
            .map_or("1h", |(_, v)| v.as_str());
        let since = match runs::instant(since, "since", Utc::now()) {
            Ok(t) => t,
            Err(a) => return a,
        };
        match index.per_minute(since).await {
            Ok(rows) => {
                let minutes: Vec<Value> = rows
                    .into_iter()
                    .map(|(m, runs, failed)| {
                        json!({
                            "minute": chrono::DateTime::from_timestamp_millis(m)
                                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                            "runs": runs,
                            "failed": failed,
                        })
                    })
                    .collect();
                (StatusCode::OK, json!({ "minutes": minutes }))
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, None, e.to_string()),
        }
    }

    async fn dead_letters(&self, pool: &str, params: &[(String, String)]) -> Answer {
        if let Err(a) = only(params, &["limit"]) {
            return a;
        }
        let limit = match number(params, "limit", 100, 1..=DEAD_PAGE_MAX) {
            Ok(n) => n,
            Err(a) => return a,
        };
        let total = match self.dead_depth(pool).await {
            Ok(n) => n,
            Err(a) => return a,
        };
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(a) => return a,
        };
        let dlq = sundial_amqp::dlq::Dlq::new(&conn, &self.cfg.topology, pool);
        match dlq.first(limit).await {
            Ok(letters) => (
                StatusCode::OK,
                json!({"pool": pool, "total": total, "letters": letters}),
            ),
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("the dead-letter queue could not be read: {e}"),
            ),
        }
    }

    /// The depth of `pool`'s dead-letter queue, asked through the probe
    /// connection (the queue may be missing; on the API's own connection a
    /// 404 would spoil a channel id): a name that could be no pool, or one
    /// neither configured nor declared, is a 404; a configured pool whose
    /// queue is not declared, a 503 saying so. A name that could be no pool
    /// is never used in a queue name.
    async fn dead_depth(&self, pool: &str) -> Result<u32, Answer> {
        let unknown = || {
            error(
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
        let queue = self.cfg.topology.dead_queue(pool);
        match self.probe.passive_declare(&queue).await {
            Ok(Some((messages, _))) => Ok(messages),
            Ok(None) if self.cfg.topology.pools.iter().any(|p| p == pool) => Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("{queue} is not declared: run `sundial topology apply`"),
            )),
            Ok(None) => Err(unknown()),
            Err(e) => Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("the broker could not be asked about pool \"{pool}\": {e}"),
            )),
        }
    }

    async fn write(&self, method: &Method, seg: &[&str], body: Option<Value>) -> Answer {
        let cmd = match (method, seg) {
            (&Method::POST, ["jobs"]) => {
                let Some(job) = body else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        Some("body"),
                        "send the job definition as JSON (docs/protocol.md §4)",
                    );
                };
                json!({"command": "upsert", "job": job})
            }
            (&Method::DELETE, ["jobs", id]) => json!({"command": "delete", "id": id}),
            (&Method::POST, ["jobs", id, verb @ ("pause" | "resume" | "trigger" | "backfill")]) => {
                let mut cmd = match body {
                    None => json!({}),
                    Some(Value::Object(o)) => Value::Object(o),
                    Some(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            Some("body"),
                            "must be a JSON object",
                        )
                    }
                };
                cmd["command"] = json!(verb);
                cmd["id"] = json!(id);
                cmd
            }
            (&Method::POST, ["pools", pool, "dead", verb @ ("replay" | "purge")]) => {
                return self.settle(pool, verb, body).await;
            }
            _ if !is_endpoint(seg) => {
                return not_found(&format!("/api/v1/{}", seg.join("/")));
            }
            _ => {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    None,
                    format!("{method} is not served here (docs/api.md lists the endpoints)"),
                )
            }
        };
        // The command's own decoder: the same field paths as on the queue.
        let cmd = match <Command as sundial_core::protocol::Message>::from_json(cmd) {
            Ok(c) => c,
            Err(e) => return error(StatusCode::BAD_REQUEST, Some(&e.path), e.detail),
        };
        self.control(&cmd).await
    }

    /// Sends `cmd` through the control queue and turns its reply into an
    /// answer.
    async fn control(&self, cmd: &Command) -> Answer {
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(a) => return a,
        };
        let reply = sundial_amqp::client::call_signed(
            &conn,
            &self.cfg.topology,
            cmd,
            CONTROL_TIMEOUT,
            self.cfg.hmac_key.as_deref(),
        )
        .await;
        match reply {
            Ok(r) => reply_answer(r),
            Err(ClientError::Timeout(t)) => error(
                StatusCode::GATEWAY_TIMEOUT,
                None,
                format!("no reply from a scheduler within {t:?}"),
            ),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
        }
    }

    async fn settle(&self, pool: &str, verb: &str, body: Option<Value>) -> Answer {
        // {"fire_ids": [...]} selects letters; {"all": true} takes every one.
        let mut ids: Option<Vec<String>> = None;
        let mut all = false;
        match body {
            Some(Value::Object(o)) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("all", Value::Bool(b)) => all = b,
                        ("fire_ids", Value::Array(a)) => {
                            let mut v = Vec::with_capacity(a.len());
                            for (i, x) in a.into_iter().enumerate() {
                                match x {
                                    Value::String(s) => v.push(s),
                                    _ => {
                                        return error(
                                            StatusCode::BAD_REQUEST,
                                            Some(&format!("fire_ids[{i}]")),
                                            "must be a string",
                                        )
                                    }
                                }
                            }
                            ids = Some(v);
                        }
                        ("all" | "fire_ids", _) => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                Some(&k),
                                if k == "all" {
                                    "must be true or false"
                                } else {
                                    "must be an array of fire ids"
                                },
                            )
                        }
                        _ => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                Some(&k),
                                "unknown field; expected fire_ids or all",
                            )
                        }
                    }
                }
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some("body"),
                    "send {\"fire_ids\": [...]} or {\"all\": true}",
                )
            }
        }
        if ids.is_none() && !all {
            return error(
                StatusCode::BAD_REQUEST,
                Some("fire_ids"),
                "missing: name the fire ids, or send {\"all\": true}",
            );
        }
        if let Err(a) = self.dead_depth(pool).await {
            return a;
        }
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(a) => return a,
        };
        let dlq = sundial_amqp::dlq::Dlq::new(&conn, &self.cfg.topology, pool);
        let action = if verb == "replay" {
            sundial_amqp::dlq::Action::Replay
        } else {
            sundial_amqp::dlq::Action::Purge
        };
        let wanted = ids.clone();
        let settled = dlq
            .settle(
                action,
                |dl| match &wanted {
                    None => true,
                    Some(ids) => dl.fire_id.as_ref().is_some_and(|f| ids.contains(f)),
                },
                || {},
            )
            .await;
        match settled {
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
            Ok(s) => {
                let missing: Vec<&String> = ids
                    .iter()
                    .flatten()
                    .filter(|id| !s.done.contains(id) && !s.skipped.iter().any(|(d, _)| d == *id))
                    .collect();
                info!(
                    pool,
                    action = verb,
                    done = s.done.len(),
                    skipped = s.skipped.len(),
                    "dead letters settled from the API"
                );
                let body = json!({
                    "done": s.done,
                    "skipped": s.skipped.iter().map(|(id, why)| json!({"fire_id": id, "reason": why})).collect::<Vec<_>>(),
                    "missing": missing,
                });
                if missing.is_empty() {
                    (StatusCode::OK, body)
                } else {
                    // Some were not (any longer) in the queue.
                    let mut b = error(StatusCode::CONFLICT, Some("fire_ids"), format!("{} of the named letters are not in sundial.dead.{pool} (replayed or purged already?); the others were {verb}ed", missing.len())).1;
                    b["result"] = body;
                    (StatusCode::CONFLICT, b)
                }
            }
        }
    }
}

/// Refuses what a browser sends on another site's behalf. Open (loopback,
/// no token) the API would otherwise take a write from any page the
/// operator visits (a form posting to 127.0.0.1), or answer a page whose
/// host name was rebound to 127.0.0.1: so there the `Host` must be a
/// loopback name, and every write that carries an `Origin` (browsers send
/// it on cross-origin requests) must come from this very origin. curl and
/// other clients send no `Origin`; the dashboard's own requests match.
/// With tokens neither check applies.
fn same_origin(req: &Request<hyper::body::Incoming>, caller: &Caller) -> Result<(), Answer> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if *caller == Caller::Open && !loopback_host(host) {
        return Err(error(
            StatusCode::FORBIDDEN,
            Some("host"),
            format!("the open (loopback) API answers loopback host names only, not \"{host}\"; use 127.0.0.1 or localhost, or configure http.tokens"),
        ));
    }
    // With tokens the bearer header already is the proof (a browser never
    // adds it on its own), and a reverse proxy may rewrite `Host`.
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    let open = *caller == Caller::Open;
    if let (true, true, Some(origin)) = (open, write, req.headers().get(header::ORIGIN)) {
        let origin = origin.to_str().unwrap_or("");
        let own = ["http://", "https://"]
            .iter()
            .any(|scheme| origin.strip_prefix(scheme) == Some(host));
        if !own {
            return Err(error(
                StatusCode::FORBIDDEN,
                Some("origin"),
                format!("a write from another origin ({origin}) is refused"),
            ));
        }
    }
    Ok(())
}

/// With `control.hmac_key` set, the open API does not write for a job: a
/// request that carries the headers a job's http executor adds
/// (`X-Sundial-Fire-Id`, `X-Sundial-Job-Id`) is refused. The open API signs
/// what it forwards with the key, so a job that could write through it
/// would turn an http fire into signed commands (docs/semantics.md,
/// "Signing"); a job that must write gets a token (`http.tokens`).
fn not_from_a_job(
    req: &Request<hyper::body::Incoming>,
    caller: &Caller,
    signing: bool,
) -> Result<(), Answer> {
    use sundial_core::protocol::run_context::{HEADER_FIRE_ID, HEADER_JOB_ID};
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    if !(signing && write && *caller == Caller::Open) {
        return Ok(());
    }
    match [HEADER_FIRE_ID, HEADER_JOB_ID]
        .into_iter()
        .find(|h| req.headers().contains_key(*h))
    {
        Some(h) => Err(error(
            StatusCode::FORBIDDEN,
            Some(&h.to_ascii_lowercase()),
            "a job's http request cannot write through the open API while control.hmac_key is set (it would sign what the job sends); give the job a token of http.tokens",
        )),
        None => Ok(()),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The status a control reply deserves.
fn reply_answer(r: Reply) -> Answer {
    if r.ok {
        return (StatusCode::OK, json!({"result": r.result}));
    }
    let Some(e) = r.error else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, None, "refused");
    };
    let status = match e.field.as_str() {
        "id" if e.message.starts_with("no job") => StatusCode::NOT_FOUND,
        "registry" => StatusCode::SERVICE_UNAVAILABLE,
        "body" => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let mut body = json!({"error": {"field": e.field, "message": e.message}});
    if let Some(results) = r.results {
        body["results"] = json!(results);
    }
    if let Some(result) = r.result {
        body["result"] = result;
    }
    (status, body)
}

/// The percent-decoded segments of a path below `/api/v1/`.
pub(crate) fn path_segments(rest: &str) -> Vec<String> {
    rest.split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// Whether `/api/v1/{seg}` is an endpoint for some method: another method
/// on it is a 405, anything else a 404.
fn is_endpoint(seg: &[&str]) -> bool {
    matches!(
        seg,
        ["openapi.json" | "status" | "jobs" | "runs"]
            | ["runs", "per-minute"]
            | ["jobs", _]
            | [
                "jobs",
                _,
                "runs" | "summary" | "pause" | "resume" | "trigger" | "backfill"
            ]
            | ["pools", _, "dead"]
            | ["pools", _, "dead", "replay" | "purge"]
    )
}

/// The `Allow` header of an endpoint (for its 405 answers).
fn allowed(seg: &[&str]) -> &'static str {
    match seg {
        ["jobs"] => "GET, HEAD, POST",
        ["jobs", _] => "GET, HEAD, DELETE",
        ["jobs", _, "pause" | "resume" | "trigger" | "backfill"]
        | ["pools", _, "dead", "replay" | "purge"] => "POST",
        _ => "GET, HEAD",
    }
}

fn not_found(path: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        None,
        format!("no such endpoint: {path} (GET /api/v1/openapi.json lists them)"),
    )
}

/// Refuses parameters outside `allowed`, naming the first.
pub(crate) fn only(params: &[(String, String)], allowed: &[&str]) -> Result<(), Answer> {
    match params.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some((k, _)) => Err(error(
            StatusCode::BAD_REQUEST,
            Some(k),
            if allowed.is_empty() {
                "unknown query parameter; this endpoint takes none".to_string()
            } else {
                format!(
                    "unknown query parameter; this endpoint takes {}",
                    allowed.join(", ")
                )
            },
        )),
    }
}

fn number(
    params: &[(String, String)],
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, Answer> {
    match params.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => v
            .parse::<usize>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    Some(key),
                    format!("must be a number in {}..={}", range.start(), range.end()),
                )
            }),
    }
}

/// The decoded `key=value` pairs of a query string.
pub(crate) fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes; `None` when empty.
async fn read_body(req: Request<hyper::body::Incoming>) -> Result<Option<Value>, Answer> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("body"),
            format!("larger than {MAX_BODY} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                Some("body"),
                format!("could not be read: {e}"),
            ))
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            Some("body"),
            format!("not JSON: {e}"),
        )
    })
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("node", &self.cfg.node)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_host_names() {
        for h in [
            "127.0.0.1:9797",
            "localhost",
            "LOCALHOST:80",
            "[::1]:9797",
            "127.1.2.3",
        ] {
            assert!(super::loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:9797",
            "10.0.0.1:9797",
            "",
            "[::2]:1",
            "localhost.evil.example",
        ] {
            assert!(!super::loopback_host(h), "{h}");
        }
    }
}
