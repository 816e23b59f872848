//! The OpenAPI 3 document of `/api/v1` (`GET /api/v1/openapi.json`),
//! written by hand beside docs/api.md.

use std::sync::OnceLock;

use serde_json::Value;

const DOCUMENT: &str = include_str!("openapi.json");

/// The document, parsed once.
pub(super) fn document() -> Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED
        .get_or_init(|| serde_json::from_str(DOCUMENT).unwrap_or(Value::Null))
        .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_parses_and_names_every_endpoint() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("valid JSON");
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/api/v1/status",
            "/api/v1/jobs",
            "/api/v1/jobs/{id}",
            "/api/v1/jobs/{id}/pause",
            "/api/v1/jobs/{id}/resume",
            "/api/v1/jobs/{id}/trigger",
            "/api/v1/jobs/{id}/backfill",
            "/api/v1/jobs/{id}/runs",
            "/api/v1/jobs/{id}/summary",
            "/api/v1/runs",
            "/api/v1/runs/per-minute",
            "/api/v1/pools/{pool}/dead",
            "/api/v1/pools/{pool}/dead/replay",
            "/api/v1/pools/{pool}/dead/purge",
        ] {
            assert!(paths.contains_key(p), "{p} is not in openapi.json");
        }
    }
}
