//! The bodies the API sends and takes that are its own (the rest are
//! core's and amqp's types): what `openapi` describes, and what the
//! handlers build.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sundial_amqp::dlq::DeadLetter;
use sundial_core::job::Overlap;
use utoipa::ToSchema;

/// Every refusal: `{"error": {"field", "message"}}`; a refused command may
/// add what its reply had (`result`, `results`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Value>,
}

/// Which input is at fault, and what is wrong with it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A query parameter, a body field's path (`job.schedule`), a header
    /// (`authorization`), or none.
    pub field: Option<String>,
    pub message: String,
}

/// What a write answers: the control reply's `result`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WriteAnswer {
    pub result: CommandResult,
}

/// A command's result: `id` always; what else depends on the command.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CommandResult {
    pub id: String,
    /// upsert, pause: whether anything changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// trigger: the fire's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fire_id: Option<String>,
    /// backfill: occurrences in the window, fired and skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrences: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    /// backfill: the first and last occurrence fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

/// `POST /api/v1/jobs/{id}/pause`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PauseBody {
    /// At most 500 characters, shown until the job is resumed.
    pub reason: Option<String>,
}

/// `POST /api/v1/jobs/{id}/backfill`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackfillBody {
    /// RFC 3339, or a duration before now (`6h`).
    pub from: String,
    /// At most now; RFC 3339 or a duration before now (`0s`: now).
    pub to: String,
    /// The job's own when absent.
    pub overlap: Option<Overlap>,
    /// Only count the occurrences (the answer is the same); fire nothing.
    pub dry_run: Option<bool>,
    /// Why, for the audit trail.
    pub reason: Option<String>,
}

/// `DELETE /api/v1/jobs/{id}`, `POST /api/v1/jobs/{id}/resume`: why, for
/// the audit trail (who is the token's name).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AskedBody {
    /// At most 500 characters.
    pub reason: Option<String>,
}

/// Alerts, newest first (`GET /api/v1/alerts`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<sundial_core::protocol::alert::AlertRow>,
}

/// Audit entries, newest first (`GET /api/v1/audit`); `next` is the
/// `cursor` of the following (older) page, null on the last.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<sundial_core::protocol::audit::AuditRow>,
    pub next: Option<String>,
}

/// Runs started per minute (`GET /api/v1/runs/per-minute`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PerMinute {
    pub minutes: Vec<Minute>,
}

/// One minute with runs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Minute {
    /// The minute, RFC 3339 UTC.
    pub minute: Option<String>,
    pub runs: u64,
    /// Failed or dead.
    pub failed: u64,
}

/// Runs started per hour (`GET /api/v1/runs/per-hour`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PerHour {
    pub hours: Vec<Hour>,
}

/// One hour with runs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Hour {
    /// The hour, RFC 3339 UTC.
    pub hour: Option<String>,
    pub runs: u64,
    /// Failed or dead.
    pub failed: u64,
}

/// The named jobs' last runs and failures (`GET /api/v1/runs/recent`), in
/// the order asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentList {
    pub jobs: Vec<sundial_core::history::JobRecent>,
}

/// Jobs with failures in the window (`GET /api/v1/runs/failing`), the
/// latest failure first.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailingList {
    pub jobs: Vec<sundial_core::history::Failing>,
}

/// A pool's dead letters (`GET /api/v1/pools/{pool}/dead`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadPage {
    pub pool: String,
    /// The queue's depth.
    pub total: u32,
    pub letters: Vec<DeadLetter>,
}

/// Which letters a replay or purge takes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SettleBody {
    pub fire_ids: Option<Vec<String>>,
    /// Every letter of the pool.
    pub all: Option<bool>,
    /// A replay's why (at most 500 characters), recorded in the history
    /// with each letter replayed.
    pub reason: Option<String>,
    /// Who replays (the open loopback API only; with tokens, the token's
    /// name).
    pub by: Option<String>,
}

/// What a replay or purge did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SettleResult {
    pub done: Vec<String>,
    pub skipped: Vec<SkippedLetter>,
    /// Named but not in the queue (then the answer is a 409 with this as
    /// its `result`).
    pub missing: Vec<String>,
    /// Replayed, but not recorded in the history (why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unrecorded: Option<String>,
}

/// A letter selected but left in the queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SkippedLetter {
    pub fire_id: String,
    pub reason: String,
}

/// `v` as a JSON value, its keys sorted as every answer's are.
pub(crate) fn body(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

// The answers several operations share, for their `#[utoipa::path]`
// (never built: the handlers answer `Answer` or `ApiError`).

/// What every `/api/v1` operation may refuse with.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Refusals {
    /// A bad parameter or body (`field` names it).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// A token is needed here, and none or an unknown one was sent.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A write with a read token; a non-loopback `Host`, another site's
    /// `Origin` or a job's fire headers on the open API.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// What a write (a command through the control queue) answers besides
/// [`Refusals`].
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum WriteResponses {
    /// The scheduler's reply.
    #[response(status = 200)]
    Done(WriteAnswer),
    /// No such job.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// A body over 1 MiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The command was refused.
    #[response(status = 422)]
    Refused(ErrorBody),
    /// The broker cannot be reached.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// No scheduler replied within 10 s.
    #[response(status = 504)]
    NoReply(ErrorBody),
}

/// `GET /api/v1/runs/{fire_id}`: a fire's runs, with its steps' for a
/// workflow occurrence, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FireRuns {
    pub fire_id: String,
    pub runs: Vec<sundial_core::history::RunRow>,
}

/// `POST /api/v1/runs/{fire_id}/cancel` (optional): why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// At most 500 characters, recorded in the history.
    pub reason: Option<String>,
    /// Who asks (the open loopback API only; with tokens, the token's name).
    pub by: Option<String>,
}

/// `POST /api/v1/jobs/{id}/trigger` (optional): another payload for this
/// occurrence, and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// Any JSON, at most 48 KiB; the job's payload when absent.
    pub payload: Option<Value>,
    /// At most 500 characters, recorded in the history.
    pub reason: Option<String>,
    /// Who asks (the open loopback API only; with tokens, the token's name).
    pub by: Option<String>,
}
