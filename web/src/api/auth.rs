//! Who may ask what (ADR 0016), as one middleware in front of every
//! `/api/v1` route ([`guard`]): a token when one is required, loopback
//! host names and same-origin writes for the open API, no writes on a
//! job's behalf while commands are signed, admin tokens for writes. Every
//! write is logged with who sent it and how it ended (the audit trail).
//! [`method_not_allowed`] gives a 405 the API's JSON shape.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sundial_core::auth::{authenticate, TokenRole};
use tracing::info;

use super::{error::ApiError, Api};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No token is asked for here (loopback without `http.require_tokens`).
    Open,
    /// A token of `http.tokens`: its role and name.
    Token(TokenRole, String),
}

impl Caller {
    fn may_write(&self) -> bool {
        matches!(self, Caller::Open | Caller::Token(TokenRole::Admin, _))
    }

    /// Who, for the log of writes and a trigger's `by`.
    pub(crate) fn name(&self) -> &str {
        match self {
            Caller::Open => "(loopback)",
            Caller::Token(_, name) => name,
        }
    }

    /// Who asks, for a write's `by` (the audit trail): a token's name; on
    /// the open loopback API the `by` the request gave, else `(loopback)`.
    pub(crate) fn who(&self, given: Option<&str>) -> String {
        match (self, given) {
            (Caller::Open, Some(given)) => given.to_string(),
            _ => self.name().to_string(),
        }
    }
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// The middleware: refuses what the caller may not do, runs the rest, and
/// logs every write.
pub(crate) async fn guard(State(api): State<Arc<Api>>, mut req: Request, next: Next) -> Response {
    let caller = match check(&api, req.method(), req.headers()) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    // Handlers that record who asked read it.
    req.extensions_mut().insert(caller.clone());
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let response = next.run(req).await;
    if is_write(&method) {
        info!(caller = caller.name(), method = %method, path, status = response.status().as_u16(), "api write");
    }
    response
}

fn check(api: &Api, method: &Method, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let caller = authorize(api, headers)?;
    same_origin(method, headers, &caller)?;
    not_from_a_job(method, headers, &caller, api.cfg.hmac_key.is_some())?;
    if is_write(method) && !caller.may_write() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            Some("authorization"),
            "this token may read only (role read); writes need an admin token",
        ));
    }
    Ok(caller)
}

fn authorize(api: &Api, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if !api.tokens_required.get().copied().unwrap_or(true) {
        return Ok(Caller::Open);
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
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
    match authenticate(&api.cfg.http.tokens, presented) {
        Some(t) => Ok(Caller::Token(t.role, t.name.clone())),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            Some("authorization"),
            "unknown token (expected `Authorization: Bearer TOKEN` with a token of http.tokens)",
        )),
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
fn same_origin(method: &Method, headers: &HeaderMap, caller: &Caller) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if *caller == Caller::Open && !loopback_host(host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            Some("host"),
            format!("the open (loopback) API answers loopback host names only, not \"{host}\"; use 127.0.0.1 or localhost, or configure http.tokens"),
        ));
    }
    // With tokens the bearer header already is the proof (a browser never
    // adds it on its own), and a reverse proxy may rewrite `Host`.
    let open = *caller == Caller::Open;
    if let (true, true, Some(origin)) = (open, is_write(method), headers.get(header::ORIGIN)) {
        let origin = origin.to_str().unwrap_or("");
        let own = ["http://", "https://"]
            .iter()
            .any(|scheme| origin.strip_prefix(scheme) == Some(host));
        if !own {
            return Err(ApiError::new(
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
    method: &Method,
    headers: &HeaderMap,
    caller: &Caller,
    signing: bool,
) -> Result<(), ApiError> {
    use sundial_core::protocol::run_context::{HEADER_FIRE_ID, HEADER_JOB_ID};
    if !(signing && is_write(method) && *caller == Caller::Open) {
        return Ok(());
    }
    match [HEADER_FIRE_ID, HEADER_JOB_ID]
        .into_iter()
        .find(|h| headers.contains_key(*h))
    {
        Some(h) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            Some(&h.to_ascii_lowercase()),
            "a job's http request cannot write through the open API while control.hmac_key is set (it would sign what the job sends); give the job a token of http.tokens",
        )),
        None => Ok(()),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub(crate) fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A 405 of the router under `/api/`, in the API's shape: the JSON error
/// and the `Allow` header written `GET, HEAD, POST`.
pub async fn method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let api = req.uri().path().starts_with("/api/");
    let response = next.run(req).await;
    if !api || response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        format!("{method} is not served here (docs/api.md lists the endpoints)"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
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
