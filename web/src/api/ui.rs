//! The dashboard's files, embedded in the binary (no CDN, no build step):
//! one HTML page, one style sheet and one script, all written for Sundial
//! (ADR 0016). The script renders every page from `/api/v1`.

use http_body_util::Full;
use hyper::{body::Bytes, header, Method, Response, StatusCode};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// The file at `path`, or `None` when there is none.
pub(super) fn asset(path: &str, method: &Method) -> Option<Response<Full<Bytes>>> {
    let (body, content_type) = match path {
        "/" | "/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/assets/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/assets/app.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    if method != Method::GET && method != Method::HEAD {
        let mut r = Response::new(Full::new(Bytes::from_static(b"GET only\n")));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Some(r);
    }
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    // The page talks to its own origin only; nothing inline runs.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    Some(r)
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
