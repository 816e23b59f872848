//! The OpenAPI 3.1 document of `/api/v1` (`GET /api/v1/openapi.json`),
//! generated from the handlers' `#[utoipa::path]` and the types they send
//! and take (core's `JobSpec`, `RunPage`, `Summary`, `JobsPage`,
//! `JobDetail`; amqp's `Status` and `DeadLetter`; this crate's
//! `api::schema`). docs/api.md says the same in prose, with examples a test
//! checks against these schemas.

use std::sync::OnceLock;

use serde_json::Value;
use utoipa::OpenApi;

use super::{alerts, audit, dead, error::Answer, jobs, runs, schema, status};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sundial HTTP API",
        description = "Jobs, runs, status and dead letters of a Sundial installation (docs/api.md).",
        license(name = "Apache-2.0")
    ),
    paths(
        status::status,
        jobs::list,
        jobs::one,
        jobs::upsert,
        jobs::delete,
        jobs::pause,
        jobs::resume,
        jobs::trigger,
        jobs::cancel,
        jobs::backfill,
        runs::runs,
        runs::job_runs,
        runs::summary,
        runs::per_minute,
        runs::per_hour,
        runs::recent,
        runs::failing,
        runs::fire,
        alerts::list,
        audit::list,
        dead::list,
        dead::replay,
        dead::purge,
    ),
    components(schemas(
        schema::ErrorBody,
        schema::CommandResult,
        schema::WriteAnswer,
        schema::PauseBody,
        schema::TriggerBody,
        schema::CancelBody,
        schema::BackfillBody,
        schema::AskedBody,
        schema::PerMinute,
        schema::PerHour,
        schema::RecentList,
        schema::FailingList,
        schema::AlertList,
        schema::AuditList,
        schema::FireRuns,
        schema::DeadPage,
        schema::SettleBody,
        schema::SettleResult,
        sundial_core::history::RunRow,
    )),
    security(("bearer" = [])),
    modifiers(&Bearer)
)]
struct ApiDoc;

/// `Authorization: Bearer TOKEN` (asked beyond loopback, or with
/// `http.require_tokens`).
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    }
}

/// `GET /api/v1/openapi.json`.
pub(super) async fn serve() -> Answer {
    Answer(document())
}

/// The document, built once.
pub fn document() -> Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null))
        .clone()
}
