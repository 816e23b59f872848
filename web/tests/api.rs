//! The API in-process: the router built by `ops::app`, driven with
//! `tower::ServiceExt::oneshot`, no socket and no broker. What needs the
//! broker (writes reaching a scheduler, dead letters, status) is tested
//! end to end in `tests/it/api.rs`.

use std::{future::Future, pin::Pin, sync::Arc};

use axum::{
    body::{to_bytes, Body},
    http::{header, Request, StatusCode},
    Router,
};
use serde_json::{json, Value};
use sundial_core::{
    auth::{hash_token, parse_hash, ApiToken, TokenRole},
    registry_read::{JobsQuery, ReadAnswer, ReadError, ReadErrorKind},
    settings::{RawSettings, Settings},
};
use sundial_web::api::{Api, ApiConfig, JobsRead, JobsSource};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";

/// Answers every list with one job, `missing` with a 404, a broad search
/// with a 422.
struct Registry;

impl JobsSource for Registry {
    fn read(&self, q: JobsQuery) -> JobsRead<'_> {
        let answer: ReadAnswer = match q {
            JobsQuery::One { id, .. } if id == "missing" => Err(ReadError {
                kind: ReadErrorKind::NotFound,
                field: Some("id"),
                message: "no job \"missing\"".into(),
            }),
            JobsQuery::One { id, next } => Ok(json!({"id": id, "next": next})),
            JobsQuery::List { filter, .. } if filter.q.as_deref() == Some("everything") => {
                Err(ReadError {
                    kind: ReadErrorKind::TooBroad,
                    field: Some("sort"),
                    message: "too many".into(),
                })
            }
            JobsQuery::List { limit, filter, .. } => {
                Ok(json!({"jobs": [], "limit": limit, "labels": filter.labels}))
            }
        };
        let fut: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move { Ok(answer) });
        fut
    }
}

fn settings(tokens: bool, key: bool) -> Settings {
    let mut raw = RawSettings::default();
    if key {
        raw.control.hmac_key = Some("k".repeat(32));
    }
    let mut s = Settings::try_from(raw).expect("settings");
    if tokens {
        s.http.require_tokens = true;
        for (name, token, role) in [
            ("ops", ADMIN, TokenRole::Admin),
            ("viewer", READER, TokenRole::Read),
        ] {
            s.http.tokens.push(ApiToken {
                name: name.into(),
                role,
                sha256: parse_hash(&hash_token(token)).expect("hash"),
            });
        }
    }
    s
}

/// The app of a process with an API (`registry`: whether it answers job
/// reads), bound on loopback.
fn app(tokens: bool, key: bool, registry: bool) -> Router {
    let api = Api::new(ApiConfig::from_settings(
        &settings(tokens, key),
        "test",
        None,
    ));
    if registry {
        api.set_registry(Some(Arc::new(Registry)));
    }
    api.bound(std::net::SocketAddr::from(([127, 0, 0, 1], 9797)));
    sundial_web::ops::app(
        sundial_web::ops::detached_recorder(),
        sundial_runtime::Health::new(),
        Some(api),
    )
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A refusal: its status and the field it names (`""`: none).
    fn refused(&self, status: u16, field: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        let want = if field.is_empty() {
            Value::Null
        } else {
            json!(field)
        };
        assert_eq!(self.json()["error"]["field"], want, "{}", self.text);
        assert_eq!(self.header("content-type"), "application/json");
        assert_eq!(self.header("cache-control"), "no-store");
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header(header::HOST, "127.0.0.1:9797");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Body::from(body.to_vec())).expect("request");
    let res = tokio::time::timeout(std::time::Duration::from_secs(5), app.clone().oneshot(req))
        .await
        .expect("answered within 5 s")
        .expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = to_bytes(res.into_body(), 4 << 20).await.expect("body");
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    call(app, "GET", uri, &[], b"").await
}

#[tokio::test]
async fn job_reads_go_to_the_registry_with_checked_parameters() {
    let app = app(false, false, true);
    let r = get(&app, "/api/v1/jobs?limit=5&label=team=a&label=tier=1").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"jobs": [], "limit": 5, "labels": {"team": "a", "tier": "1"}})
    );
    assert_eq!(
        get(&app, "/api/v1/jobs/a%2Fb?next=3").await.json(),
        json!({"id": "a/b", "next": 3})
    );
    get(&app, "/api/v1/jobs?limit=5&colour=red")
        .await
        .refused(400, "colour");
    get(&app, "/api/v1/jobs?limit=0")
        .await
        .refused(400, "limit");
    get(&app, "/api/v1/jobs?paused=maybe")
        .await
        .refused(400, "paused");
    get(&app, "/api/v1/jobs?sort=colour")
        .await
        .refused(400, "sort");
    get(&app, "/api/v1/jobs?label=nokey")
        .await
        .refused(400, "label");
    get(&app, "/api/v1/jobs/x?next=101")
        .await
        .refused(400, "next");
    get(&app, "/api/v1/jobs/missing").await.refused(404, "id");
    get(&app, "/api/v1/jobs?q=everything")
        .await
        .refused(422, "sort");
    let r = get(&app, "/api/v1/status?x=1").await;
    r.refused(400, "x");
    assert!(r.text.contains("this endpoint takes none"), "{}", r.text);
}

#[tokio::test]
async fn a_process_without_its_registry_or_index_says_so() {
    let app = app(false, false, false);
    let r = get(&app, "/api/v1/jobs").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("holds no registry"), "{}", r.text);
    let r = get(&app, "/api/v1/runs").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("keeps no history index"), "{}", r.text);
    assert_eq!(get(&app, "/api/v1/runs/per-minute").await.status, 503);
    assert_eq!(get(&app, "/api/v1/jobs/x/summary").await.status, 503);
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let app = app(false, false, true);
    let r = get(&app, "/api/v1/nothing-here").await;
    r.refused(404, "");
    assert!(
        r.text.contains("no such endpoint: /api/v1/nothing-here"),
        "{}",
        r.text
    );
    get(&app, "/api/v1/jobs/").await.refused(404, "");
    call(&app, "POST", "/api/v1/nothing-here", &[], b"{}")
        .await
        .refused(404, "");
    let r = call(&app, "PUT", "/api/v1/jobs", &[], b"{}").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "GET, HEAD, POST");
    assert!(r.text.contains("PUT is not served here"), "{}", r.text);
    let r = call(&app, "POST", "/api/v1/jobs/x", &[], b"").await;
    assert_eq!(
        (r.status.as_u16(), r.header("allow")),
        (405, "GET, HEAD, DELETE")
    );
    let r = call(&app, "GET", "/api/v1/jobs/x/pause", &[], b"").await;
    assert_eq!((r.status.as_u16(), r.header("allow")), (405, "POST"));
    let r = get(&app, "/nowhere").await;
    assert_eq!(r.status, 404);
    assert!(r.text.starts_with("not found: try /"), "{}", r.text);
}

#[tokio::test]
async fn bodies_are_bounded_json() {
    let app = app(false, false, true);
    call(&app, "POST", "/api/v1/jobs", &[], b"{not json")
        .await
        .refused(400, "body");
    call(&app, "POST", "/api/v1/jobs", &[], b"  \n")
        .await
        .refused(400, "body");
    let big = vec![b' '; 2 * 1024 * 1024];
    call(&app, "POST", "/api/v1/jobs", &[], &big)
        .await
        .refused(413, "body");
    call(&app, "POST", "/api/v1/jobs/x/pause", &[], b"[1]")
        .await
        .refused(400, "body");
    // The command's own decoder names the field, before any broker.
    call(
        &app,
        "POST",
        "/api/v1/jobs/x/pause",
        &[],
        br#"{"reason": 5}"#,
    )
    .await
    .refused(400, "reason");
    call(
        &app,
        "POST",
        "/api/v1/pools/default/dead/replay",
        &[],
        br#"{"fire_ids": [1]}"#,
    )
    .await
    .refused(400, "fire_ids[0]");
    call(
        &app,
        "POST",
        "/api/v1/pools/default/dead/purge",
        &[],
        br#"{"every": true}"#,
    )
    .await
    .refused(400, "every");
    call(&app, "POST", "/api/v1/pools/default/dead/purge", &[], b"{}")
        .await
        .refused(400, "fire_ids");
    // A name that could be no pool is refused before any queue name.
    get(&app, &format!("/api/v1/pools/{}/dead", "p".repeat(300)))
        .await
        .refused(404, "pool");
}

#[tokio::test]
async fn tokens_roles_and_origins() {
    let app = app(true, false, true);
    let r = get(&app, "/api/v1/jobs").await;
    r.refused(401, "authorization");
    assert_eq!(r.header("www-authenticate"), "Bearer realm=\"sundial\"");
    let bearer = |t: &str| format!("bearer {t}");
    let r = call(
        &app,
        "GET",
        "/api/v1/jobs",
        &[("authorization", &bearer(READER))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    call(
        &app,
        "POST",
        "/api/v1/jobs/x/pause",
        &[("authorization", &bearer(READER))],
        b"",
    )
    .await
    .refused(403, "authorization");
    call(
        &app,
        "GET",
        "/api/v1/jobs",
        &[("authorization", "Bearer wrong")],
        b"",
    )
    .await
    .refused(401, "authorization");
    // The dashboard's files and the operations endpoint need no token.
    assert_eq!(get(&app, "/").await.status, 200);
    assert_eq!(get(&app, "/healthz").await.text, "ok\n");

    let open = self::app(false, true, true);
    call(
        &open,
        "GET",
        "/api/v1/jobs",
        &[("host", "evil.example")],
        b"",
    )
    .await
    .refused(403, "host");
    call(
        &open,
        "POST",
        "/api/v1/jobs/x/pause",
        &[("origin", "http://evil.example")],
        b"",
    )
    .await
    .refused(403, "origin");
    call(
        &open,
        "POST",
        "/api/v1/jobs/x/pause",
        &[("x-sundial-fire-id", "j@t")],
        b"",
    )
    .await
    .refused(403, "x-sundial-fire-id");
}

#[tokio::test]
async fn the_dashboard_and_the_operations_endpoint() {
    let app = app(false, false, true);
    let r = get(&app, "/").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-security-policy")
        .contains("default-src 'self'"));
    assert!(r.text.contains("/assets/app.js"));
    let r = call(&app, "POST", "/assets/app.js", &[], b"").await;
    assert_eq!((r.status.as_u16(), r.header("allow")), (405, "GET, HEAD"));
    let r = call(&app, "POST", "/metrics", &[], b"").await;
    assert_eq!(
        (r.status.as_u16(), r.header("allow"), r.text.as_str()),
        (405, "GET", "GET only\n")
    );
    let r = get(&app, "/readyz").await;
    assert_eq!(
        (r.status.as_u16(), r.text.as_str()),
        (503, "not ready: starting\n")
    );
    let r = get(&app, "/api/v1/openapi.json").await;
    assert_eq!(r.status, 200);
    assert!(r.json()["paths"]["/api/v1/jobs"].is_object());

    // A process without an API (a worker).
    let worker = sundial_web::ops::app(
        sundial_web::ops::detached_recorder(),
        sundial_runtime::Health::new(),
        None,
    );
    let r = get(&worker, "/api/v1/jobs").await;
    r.refused(404, "");
    assert!(r.text.contains("docs/api.md lists them"), "{}", r.text);
    let r = get(&worker, "/api/v1/jobs/x/runs").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("keeps no history index"), "{}", r.text);
    let r = call(&worker, "POST", "/anything", &[], b"").await;
    assert_eq!((r.status.as_u16(), r.header("allow")), (405, "GET"));
}
