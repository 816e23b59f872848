//! Run events on `sundial.events` (routing key `{pool}.{job_id}.{kind}`): the
//! lifecycle of each attempt, consumed by the scheduler's RunTracker, the
//! ledger and your dashboards.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Format, Message};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// The timer published the fire (confirmed by the broker).
    Fired,
    Started,
    Succeeded,
    Failed,
    Retrying,
    Dead,
    /// Dropped as a duplicate fire id, or skipped by the overlap policy.
    Skipped,
    /// A workflow occurrence cancelled by a client (`cancel`): its steps
    /// not yet started never start, its running ones are asked to stop.
    Cancelled,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Fired => "fired",
            RunKind::Started => "started",
            RunKind::Succeeded => "succeeded",
            RunKind::Failed => "failed",
            RunKind::Retrying => "retrying",
            RunKind::Dead => "dead",
            RunKind::Skipped => "skipped",
            RunKind::Cancelled => "cancelled",
        }
    }
}

impl From<RunKind> for crate::job::workflow::Seen {
    /// What a record of `kind` says of a workflow step's fire.
    fn from(kind: RunKind) -> Self {
        use crate::job::workflow::Seen;
        match kind {
            RunKind::Fired => Seen::Published,
            RunKind::Started | RunKind::Failed | RunKind::Retrying => Seen::Running,
            RunKind::Succeeded => Seen::Succeeded,
            // Written for occurrences only; a fire cancelled is over
            // without success.
            RunKind::Dead | RunKind::Cancelled => Seen::Dead,
            RunKind::Skipped => Seen::Duplicate,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunEvent {
    pub kind: RunKind,
    pub fire_id: String,
    pub job_id: String,
    pub pool: String,
    pub attempt: u32,
    /// Worker (or scheduler node) id that emitted the event.
    pub worker: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Failure reason, or the skip reason (`duplicate`, `overlap-forbid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Last bytes of the run's output (shell executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// On `started`: when the worker will kill the attempt (its timeout).
    /// The RunTracker forgets a run it never heard the end of after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// The occurrence this attempt runs (the fire's `scheduled_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When the fire was replayed from its dead-letter queue (its
    /// `x-sundial-replay` header, carried by its retries): a replay runs
    /// attempt 1 again, and is another run than the one that died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<DateTime<Utc>>,
    /// A manual trigger's payload, when it gave one instead of the job's
    /// (on its `fired` record, and a workflow's opening record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// Who asked for it (a trigger's `by`: a token's name, an OS user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl RunEvent {
    /// The one way a run record starts: a record of `kind` about fire
    /// `fire_id` (of job `job_id` in `pool`), by the worker or scheduler
    /// node `by`, at `at`; attempt 1 and the occurrence read from the fire
    /// id. The caller sets what else it knows (`..RunEvent::new(..)`).
    pub fn new(
        kind: RunKind,
        fire_id: &str,
        job_id: &str,
        pool: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            kind,
            fire_id: fire_id.to_string(),
            job_id: job_id.to_string(),
            pool: pool.to_string(),
            attempt: 1,
            worker: by.to_string(),
            at,
            duration_ms: None,
            reason: None,
            output: None,
            deadline: None,
            scheduled_at: crate::FireId::parse(fire_id).map(|(_, t)| t),
            replay: None,
            payload: None,
            by: None,
        }
    }

    /// The record with `why` as its reason (a failure's, a skip's).
    pub fn because(self, why: impl Into<String>) -> Self {
        Self {
            reason: Some(why.into()),
            ..self
        }
    }
}

/// The `reason` of a worker's `skipped` record for a fire it saw already
/// (a duplicate delivery): any other `skipped` record is a scheduler's.
pub const DUPLICATE: &str = "duplicate";

/// Run records of one worker (or scheduler node), published together as
/// one message on the history stream `sundial.history`: each record is a
/// [`RunEvent`], in the order they happened. One message carries many runs,
/// so recording every attempt costs a fraction of a broker message per run
/// (ADR 0015).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBatch {
    pub records: Vec<RunEvent>,
    /// Alerts raised by the scheduler owning their job's shard (ADR 0021):
    /// in the stream of the records they judge, so a new owner rebuilds
    /// both from it and raises nothing twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<super::alert::Raised>,
    /// What became of alerts on their routes (ADR 0021).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<super::alert::Delivered>,
    /// Writes of people and tools (ADR 0023): the history index keeps
    /// them for `GET /api/v1/audit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<super::audit::AuditEntry>,
}

impl RunBatch {
    /// A batch of run records.
    pub fn of(records: Vec<RunEvent>) -> Self {
        Self {
            records,
            alerts: Vec::new(),
            deliveries: Vec::new(),
            audit: Vec::new(),
        }
    }
}

impl Message for RunBatch {
    const KIND: &'static str = "sundial.run-batch";
    const PRIMARY: Format = Format::Json;
    const FORMATS: &'static [Format] = &[Format::Json];
    /// A batch holds at most `history.batch_max` records of at most 64 KiB.
    const MAX_SIZE: usize = 16 * 1024 * 1024;
}

impl Message for RunEvent {
    const KIND: &'static str = "sundial.run";
    const PRIMARY: Format = Format::Json;
    const FORMATS: &'static [Format] = &[Format::Json];
    const MAX_SIZE: usize = 64 * 1024;
}

/// "Stop running `fire_id`": sent by the scheduler's RunTracker to the
/// worker running it (exchange `sundial.cancel`, routing key = worker id)
/// when a job with `overlap = "replace"` fires again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRun {
    pub fire_id: String,
    pub job_id: String,
    /// Why, for the run's `failed` event (`replaced by {fire_id}`).
    pub reason: String,
}

impl Message for CancelRun {
    const KIND: &'static str = "sundial.cancel";
    const PRIMARY: Format = Format::Json;
    const FORMATS: &'static [Format] = &[Format::Json];
    const MAX_SIZE: usize = 4096;
}
