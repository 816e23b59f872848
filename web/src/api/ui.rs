//! The dashboard's files, embedded in the binary (no CDN, no build step):
//! one HTML page, one style sheet and one script, all written for Sundial
//! (ADR 0016). The script renders every page from `/api/v1`.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, MethodRouter},
    Router,
};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// `/`, `/index.html`, `/assets/app.js`, `/assets/app.css`: GET and HEAD.
pub(super) fn router() -> Router {
    Router::new()
        .route("/", file(INDEX, "text/html; charset=utf-8"))
        .route("/index.html", file(INDEX, "text/html; charset=utf-8"))
        .route(
            "/assets/app.js",
            file(SCRIPT, "text/javascript; charset=utf-8"),
        )
        .route("/assets/app.css", file(STYLE, "text/css; charset=utf-8"))
}

fn file(body: &'static str, content_type: &'static str) -> MethodRouter {
    get(move || async move { asset(body, content_type) }).fallback(get_only)
}

/// Any other method on a file.
async fn get_only() -> Response {
    let mut r = (StatusCode::METHOD_NOT_ALLOWED, "GET only\n").into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page talks to its own origin only; nothing inline runs.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_page_stays_light() {
        // The dashboard's pages are these three files plus API answers.
        let total = super::INDEX.len() + super::SCRIPT.len() + super::STYLE.len();
        assert!(total < 200 * 1024, "dashboard files weigh {total} bytes");
        assert!(super::INDEX.contains("/assets/app.js"));
    }
}
