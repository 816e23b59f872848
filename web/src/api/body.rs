//! [`Body`]: an optional request body of JSON, at most [`MAX_BODY`] bytes
//! (413 otherwise, before reading when `Content-Length` says so): `None`
//! when empty or whitespace, else the body as a `T`.

use axum::{
    body::to_bytes,
    extract::{FromRequest, Request},
    http::{header, StatusCode},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;

/// The largest request body (a job definition, a batch of fire ids).
pub const MAX_BODY: usize = 1024 * 1024;

/// The extractor.
#[derive(Debug)]
pub struct Body<T>(pub Option<T>);

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Some("body"),
        format!("larger than {MAX_BODY} bytes"),
    )
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let bytes = match to_bytes(req.into_body(), MAX_BODY).await {
            Ok(b) => b,
            Err(e) => {
                let e = e.into_inner();
                return Err(if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    ApiError::bad_request("body", format!("could not be read: {e}"))
                });
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(None));
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request("body", format!("not JSON: {e}")))?;
        serde_json::from_value(value)
            .map(|t| Body(Some(t)))
            .map_err(|e| ApiError::bad_request("body", e.to_string()))
    }
}
