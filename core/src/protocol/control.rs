//! Control commands (clients → `sundial.control`) and their replies (→ the
//! command's `reply_to`, same `correlation_id`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{field_in_message, Format, JsonError, Message, MIB};
use crate::{error::ValidationError, job::JobSpec};

/// A control command. JSON: `{"command": "<name>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    /// Create or replace; an identical spec is a no-op that still replies ok.
    Upsert {
        job: Box<JobSpec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Many upserts; each job gets its own result in the reply.
    UpsertMany {
        jobs: Vec<JobSpec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    Delete {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Stop firing until `resume`. `reason` and `by` are stored and shown
    /// by `get`, `list` and the dashboard (who paused it and why).
    Pause {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    Resume {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Fire now, outside the schedule, with its own fire id; with
    /// `payload`, instead of the job's (at most [`TRIGGER_PAYLOAD_MAX`]
    /// bytes of JSON: it is recorded in the history with `reason` and
    /// `by`, who asked).
    Trigger {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Cancel a running workflow occurrence (`{job}@{instant}`): its steps
    /// not yet started never start (recorded `skipped`, "occurrence
    /// cancelled"), its running step fires are asked to stop, and it ends
    /// `cancelled` with `reason` and `by` (who asked) in the history.
    Cancel {
        fire_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Fire every occurrence of the job in `[from, to)` (a past window),
    /// each with its own fire id (`{id}@backfill:{occurrence}`), as the
    /// `overlap` policy (the job's when absent) allows: `allow` fires all,
    /// `forbid` the first only, `replace` the last only. With `dry_run`,
    /// only counts them (the reply is the same; nothing fires).
    Backfill {
        id: String,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overlap: Option<crate::job::Overlap>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dry_run: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    Get {
        id: String,
    },
    /// Jobs whose labels include every given pair (and, when given, whose
    /// id contains `q`, of `pool`, paused or not), sorted by id, one page
    /// at a time: ids greater than `after`, at most `limit`
    /// ([`LIST_DEFAULT_LIMIT`] when absent, at most [`LIST_MAX_LIMIT`]).
    List {
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        q: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pool: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        paused: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
}

/// Jobs in a `list` reply when the command gives no `limit`.
pub const LIST_DEFAULT_LIMIT: usize = 1_000;
/// The largest `limit` of a `list` command (a page of ~2 MB of JSON).
pub const LIST_MAX_LIMIT: usize = 10_000;
/// The longest pause reason, in characters.
pub const PAUSE_REASON_MAX: usize = 500;
/// The largest payload a `trigger` may give, as JSON text: it travels in
/// the history stream's records (64 KiB each).
pub const TRIGGER_PAYLOAD_MAX: usize = 48 * 1024;
/// The longest fire id a `cancel` names, in bytes.
pub const FIRE_ID_MAX: usize = 255;
/// The longest `by` of a command (who asked), in characters.
pub const BY_MAX: usize = 128;
/// The most occurrences one `backfill` may fire.
pub const BACKFILL_MAX: usize = 10_000;

impl Command {
    /// Names accepted in the `command` field.
    pub const NAMES: &'static [&'static str] = &[
        "upsert",
        "upsert-many",
        "delete",
        "pause",
        "resume",
        "trigger",
        "cancel",
        "backfill",
        "get",
        "list",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Command::Upsert { .. } => "upsert",
            Command::UpsertMany { .. } => "upsert-many",
            Command::Delete { .. } => "delete",
            Command::Pause { .. } => "pause",
            Command::Resume { .. } => "resume",
            Command::Trigger { .. } => "trigger",
            Command::Cancel { .. } => "cancel",
            Command::Backfill { .. } => "backfill",
            Command::Get { .. } => "get",
            Command::List { .. } => "list",
        }
    }

    /// Sets a write's `reason` and `by` where the command has none (a
    /// client stamps who asks); a read is left as it is.
    pub fn stamp(&mut self, reason: Option<&str>, by: Option<&str>) {
        match self {
            Command::Upsert {
                reason: r, by: b, ..
            }
            | Command::UpsertMany {
                reason: r, by: b, ..
            }
            | Command::Delete {
                reason: r, by: b, ..
            }
            | Command::Pause {
                reason: r, by: b, ..
            }
            | Command::Resume {
                reason: r, by: b, ..
            }
            | Command::Trigger {
                reason: r, by: b, ..
            }
            | Command::Cancel {
                reason: r, by: b, ..
            }
            | Command::Backfill {
                reason: r, by: b, ..
            } => {
                if r.is_none() {
                    *r = reason.map(str::to_string);
                }
                if b.is_none() {
                    *b = by.map(str::to_string);
                }
            }
            Command::Get { .. } | Command::List { .. } => {}
        }
    }

    /// A write's `reason` and `by` (who asked), for the audit trail;
    /// `None` for a read.
    pub fn asked(&self) -> Option<(Option<&str>, Option<&str>)> {
        match self {
            Command::Upsert { reason, by, .. }
            | Command::UpsertMany { reason, by, .. }
            | Command::Delete { reason, by, .. }
            | Command::Pause { reason, by, .. }
            | Command::Resume { reason, by, .. }
            | Command::Trigger { reason, by, .. }
            | Command::Cancel { reason, by, .. }
            | Command::Backfill { reason, by, .. } => Some((reason.as_deref(), by.as_deref())),
            Command::Get { .. } | Command::List { .. } => None,
        }
    }
}

impl Message for Command {
    const KIND: &'static str = "sundial.command";
    const PRIMARY: Format = Format::Json;
    const FORMATS: &'static [Format] = &[Format::Json];
    const MAX_SIZE: usize = MIB;
    const TAG: Option<&'static str> = Some("command");

    fn from_json_slice(_: &[u8]) -> Option<Self> {
        None
    }

    /// Reads the `command` tag first, then the named command's fields, so
    /// every error names its field (`command`, `id`, `job.retry.max_attempts`).
    fn from_json(value: serde_json::Value) -> Result<Self, JsonError> {
        let serde_json::Value::Object(mut obj) = value else {
            return Err(JsonError::new("body", "must be a JSON object"));
        };
        let name = match obj.remove("command") {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(JsonError::new("command", "must be a string")),
            None => {
                return Err(JsonError::new(
                    "command",
                    format!("missing; expected one of {}", Self::NAMES.join(", ")),
                ))
            }
        };
        let rest = serde_json::Value::Object(obj);
        Ok(match name.as_str() {
            "upsert" => {
                let b = decode_field::<UpsertBody>(rest)?;
                let (reason, by) = asked(b.reason, b.by)?;
                Command::Upsert {
                    job: Box::new(b.job),
                    reason,
                    by,
                }
            }
            "upsert-many" => {
                let b = decode_field::<UpsertManyBody>(rest)?;
                let (reason, by) = asked(b.reason, b.by)?;
                Command::UpsertMany {
                    jobs: b.jobs,
                    reason,
                    by,
                }
            }
            "delete" | "pause" | "resume" => {
                let b = decode_field::<IdBody>(rest)?;
                let (reason, by) = asked(b.reason, b.by)?;
                let id = b.id;
                match name.as_str() {
                    "delete" => Command::Delete { id, reason, by },
                    "pause" => Command::Pause { id, reason, by },
                    _ => Command::Resume { id, reason, by },
                }
            }
            "backfill" => {
                let b = decode_field::<BackfillBody>(rest)?;
                if b.to <= b.from {
                    return Err(JsonError::new("to", "must be after `from`"));
                }
                let (reason, by) = asked(b.reason, b.by)?;
                Command::Backfill {
                    id: b.id,
                    from: b.from,
                    to: b.to,
                    overlap: b.overlap,
                    dry_run: b.dry_run,
                    reason,
                    by,
                }
            }
            "trigger" => {
                let b = decode_field::<TriggerBody>(rest)?;
                if let Some(p) = &b.payload {
                    let size = serde_json::to_vec(p).map_or(usize::MAX, |v| v.len());
                    if size > TRIGGER_PAYLOAD_MAX {
                        return Err(JsonError::new(
                            "payload",
                            format!("{size} bytes of JSON: at most {TRIGGER_PAYLOAD_MAX}"),
                        ));
                    }
                }
                let (reason, by) = asked(b.reason, b.by)?;
                Command::Trigger {
                    id: b.id,
                    payload: b.payload.filter(|p| !p.is_null()),
                    reason,
                    by,
                }
            }
            "cancel" => {
                let b = decode_field::<CancelBody>(rest)?;
                let of_a_job = b.fire_id.split_once('@').is_some_and(|(job, rest)| {
                    crate::job::check_job_id("fire_id", job).is_ok()
                        && !rest.is_empty()
                        && !rest.contains('/')
                        && b.fire_id.len() <= FIRE_ID_MAX
                });
                if !of_a_job {
                    return Err(JsonError::new(
                        "fire_id",
                        format!(
                            "must be an occurrence's fire id, JOB@INSTANT (not a step's), got \"{}\"",
                            crate::wire::headers::bounded_to(&b.fire_id, 80)
                        ),
                    ));
                }
                let (reason, by) = asked(b.reason, b.by)?;
                Command::Cancel {
                    fire_id: b.fire_id,
                    reason,
                    by,
                }
            }
            "get" => Command::Get {
                id: decode_field::<GetBody>(rest)?.id,
            },
            "list" => {
                let body = decode_field::<ListBody>(rest)?;
                if let Some(n) = body.limit.filter(|n| !(1..=LIST_MAX_LIMIT).contains(n)) {
                    return Err(JsonError::new(
                        "limit",
                        format!("must be 1 to {LIST_MAX_LIMIT}, got {n}"),
                    ));
                }
                Command::List {
                    labels: body.labels,
                    q: body.q.filter(|q| !q.is_empty()),
                    pool: body.pool,
                    paused: body.paused,
                    after: body.after,
                    limit: body.limit,
                }
            }
            other => {
                return Err(JsonError::new(
                    "command",
                    format!(
                        "unknown command \"{other}\"; expected one of {}",
                        Self::NAMES.join(", ")
                    ),
                ))
            }
        })
    }
}

/// A command's `reason` and `by` (who asked), checked for length; blank
/// ones are none (also what the API asks of a dead-letter replay).
#[allow(clippy::type_complexity)]
pub fn asked(
    reason: Option<String>,
    by: Option<String>,
) -> Result<(Option<String>, Option<String>), JsonError> {
    for (field, v, max) in [("reason", &reason, PAUSE_REASON_MAX), ("by", &by, BY_MAX)] {
        if v.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(JsonError::new(field, format!("at most {max} characters")));
        }
    }
    let text = |v: Option<String>| v.filter(|t| !t.trim().is_empty());
    Ok((text(reason), text(by)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertBody {
    job: JobSpec,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertManyBody {
    jobs: Vec<JobSpec>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetBody {
    id: String,
}

/// `delete`, `pause`, `resume`: a job, and why and who.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdBody {
    id: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    id: String,
    #[serde(default)]
    payload: Option<serde_json::Value>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    fire_id: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    id: String,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    overlap: Option<crate::job::Overlap>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListBody {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    pool: Option<String>,
    #[serde(default)]
    paused: Option<bool>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// serde's unknown/missing field errors name the field in their message
/// only, at the path of the object that lacks it; lift it into the path.
fn decode_field<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, JsonError> {
    JsonError::decode(v, "").map_err(|mut e| {
        // "missing field `schedule`" at `job` names `job.schedule`.
        // (An unknown field's path already ends with it.)
        if let Some(f) = field_in_message(&e.detail) {
            if e.path == "." {
                e.path = f;
            } else if e.path.rsplit('.').next() != Some(f.as_str()) {
                e.path = format!("{}.{f}", e.path);
            }
        }
        e
    })
}

/// The error part of a failed reply: which input field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyError {
    pub field: String,
    pub message: String,
}

/// How the refusal of a command on a job that does not exist begins.
const NO_JOB: &str = "no job";

impl ReplyError {
    /// The refusal of a command on job `id`, which does not exist
    /// (`{"field": "id", "message": "no job \"ID\""}`).
    pub fn no_job(id: &str) -> Self {
        Self {
            field: "id".into(),
            message: format!("{NO_JOB} \"{id}\""),
        }
    }

    /// Whether this is [`ReplyError::no_job`]'s refusal (the API answers
    /// it with a 404): the one place that knows its shape.
    pub fn is_no_job(&self) -> bool {
        self.field == "id" && self.message.starts_with(NO_JOB)
    }
}

impl From<ValidationError> for ReplyError {
    fn from(e: ValidationError) -> Self {
        Self {
            field: e.field,
            message: e.message,
        }
    }
}

/// A reply: `{"ok": true, "result": ...}` or `{"ok": false, "error": {...}}`.
/// `upsert-many` replies carry one [`ItemResult`] per job in `results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub ok: bool,
    /// The command this answers (absent when the command could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<ItemResult>>,
}

/// One job's outcome inside an `upsert-many` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemResult {
    pub id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
}

impl Reply {
    pub fn ok(command: &str, result: Option<serde_json::Value>) -> Self {
        Self {
            ok: true,
            command: Some(command.to_string()),
            result,
            error: None,
            results: None,
        }
    }

    pub fn error(command: Option<&str>, error: impl Into<ReplyError>) -> Self {
        Self {
            ok: false,
            command: command.map(str::to_string),
            result: None,
            error: Some(error.into()),
            results: None,
        }
    }
}

impl Message for Reply {
    const KIND: &'static str = "sundial.reply";
    const PRIMARY: Format = Format::Json;
    const FORMATS: &'static [Format] = &[Format::Json];
    const MAX_SIZE: usize = 64 * MIB;
}
