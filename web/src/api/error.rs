//! What the API answers: [`Answer`] (200 with a JSON body) or [`ApiError`]
//! (`{"error": {"field", "message"}}`, docs/api.md), both JSON and never
//! cached. The status of an error is chosen where it is raised, from a
//! coded cause (a `ReadErrorKind`, a reply's field), never from its text.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{json, Map, Value};

/// A refusal: its status, the field at fault and a message, plus what a
/// control reply or a partial settle adds (`result`, `results`).
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
    extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status,
            field: field.map(str::to_string),
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// 400 naming `field`.
    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(field), message)
    }

    /// 503: the broker, the registry or the index cannot answer now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, None, message)
    }

    /// 500: the history index failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, message)
    }

    /// 404 for a path that is no endpoint.
    pub fn no_endpoint(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no such endpoint: {path} (GET /api/v1/openapi.json lists them)"),
        )
    }

    /// Adds `key` beside `error` in the body.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = json!({"error": {"field": self.field, "message": self.message}});
        if let Value::Object(o) = &mut body {
            o.extend(self.extra.clone());
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json_response(self.status, &self.body());
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sundial\""),
            );
        }
        r
    }
}

/// A 200 answer with a JSON body.
#[derive(Debug, Clone)]
pub struct Answer(pub Value);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, &self.0)
    }
}

/// What a handler returns.
pub type ApiResult = Result<Answer, ApiError>;

/// `body` as JSON with `status`, never cached.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
