//! Reads of the registry view: what the API's job endpoints (`GET
//! /api/v1/jobs`, `GET /api/v1/jobs/{id}`) ask. The query is plain data;
//! whoever holds a view answers it ([`answer`]; a scheduler does so on its
//! registry actor's thread) with the JSON body or a [`ReadError`] whose
//! [`ReadErrorKind`] decides the HTTP status.

use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::registry::{JobEntry, JobFilter, RegistryView};

/// Most jobs one page of `/api/v1/jobs` holds.
pub const MAX_PAGE: usize = 1_000;
/// Jobs on a page when the query gives no `limit`.
pub const DEFAULT_PAGE: usize = 50;
/// `sort=next` computes every matching job's next fire: the search must
/// narrow to at most this many jobs.
pub const SORT_NEXT_MAX: usize = 50_000;
/// Most upcoming fires `GET /api/v1/jobs/{id}?next=N` lists.
pub const MAX_NEXT: usize = 100;

/// A read of the registry view.
#[derive(Debug, Clone)]
pub enum JobsQuery {
    List {
        filter: JobFilter,
        /// `sort=id` (default): the cursor is the last id; `sort=next`: an
        /// offset.
        sort_next: bool,
        cursor: Option<String>,
        limit: usize,
    },
    One {
        id: String,
        next: usize,
    },
}

/// Why a read has no answer: the kind decides the status, the field and
/// message are shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReadError {
    pub kind: ReadErrorKind,
    /// The query parameter or path part at fault.
    pub field: Option<&'static str>,
    pub message: String,
}

/// What kind of refusal a [`ReadError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadErrorKind {
    /// No such job (404).
    NotFound,
    /// The query is malformed (400).
    Invalid,
    /// The query is well formed but too broad to answer (422).
    TooBroad,
}

/// A read's answer: the JSON body, or why not.
pub type ReadAnswer = Result<Value, ReadError>;

/// One job as lists show it (the control protocol's `list`, `GET
/// /api/v1/jobs`). Instants are RFC 3339 in UTC with milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub id: String,
    pub schedule: String,
    pub timezone: String,
    pub pool: String,
    pub paused: bool,
    pub paused_reason: Option<String>,
    pub paused_at: Option<String>,
    /// Who paused it (an API token's name, the CLI's `--as` or OS user).
    pub paused_by: Option<String>,
    pub created_at: String,
    /// The next fire; none while paused or after the last one.
    pub next: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub start_at: Option<String>,
    pub end_at: Option<String>,
    /// A workflow's steps and their edges (none for a lone job).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepView>,
}

/// One step of a workflow as lists show it: its place in the graph, not
/// what it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepView {
    pub id: String,
    /// The steps it waits for.
    pub after: Vec<String>,
    pub when: crate::job::workflow::When,
    /// Its fires per occurrence (1, or N shards).
    pub shards: u32,
    /// One fire on every live worker of its pool.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub every_worker: bool,
    /// Its pool, where it is not the job's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

impl JobView {
    /// `j` at `now`.
    pub fn of(j: &JobEntry, now: DateTime<Utc>) -> Self {
        Self {
            id: j.spec.id.clone(),
            schedule: j.spec.schedule.clone(),
            timezone: j.spec.timezone.clone(),
            pool: j.spec.pool.clone(),
            paused: j.paused,
            paused_reason: j.paused_reason().map(str::to_string),
            paused_at: j.paused_at().map(rfc3339),
            paused_by: j.paused_by().map(str::to_string),
            created_at: rfc3339(j.created_at),
            next: if j.paused {
                None
            } else {
                j.next_after(now).map(rfc3339)
            },
            labels: j.spec.labels.clone(),
            start_at: j.spec.start_at.map(rfc3339),
            end_at: j.spec.end_at.map(rfc3339),
            steps: j
                .spec
                .workflow()
                .map(|steps| {
                    steps
                        .iter()
                        .map(|s| StepView {
                            id: s.id.clone(),
                            after: s.after.clone(),
                            when: s.when,
                            shards: s.fanout.and_then(|f| f.shards()).unwrap_or(1),
                            every_worker: s.every_worker(),
                            pool: s.pool.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// A page of jobs: `next` is the cursor of the following page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobsPage {
    pub jobs: Vec<JobView>,
    pub next: Option<String>,
    /// How many jobs match.
    pub total: usize,
}

/// One job with its definition and its next fires (`GET
/// /api/v1/jobs/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDetail {
    #[serde(flatten)]
    pub view: JobView,
    /// The whole definition.
    pub job: crate::JobSpec,
    pub upcoming: Vec<Upcoming>,
}

/// One upcoming fire, with its DST note (as `sundial schedule next`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Upcoming {
    /// UTC.
    pub at: String,
    /// In the job's zone, with its offset.
    pub local: String,
    /// A gap moved it, or it is the first or second of a repeated hour.
    pub note: Option<&'static str>,
}

/// `v` as a JSON value; its keys sorted, as every answer's are.
pub(crate) fn body(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn refuse(kind: ReadErrorKind, field: &'static str, message: impl Into<String>) -> ReadAnswer {
    Err(ReadError {
        kind,
        field: Some(field),
        message: message.into(),
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Answers `q` from `view` at `now`.
pub fn answer(view: &RegistryView, q: &JobsQuery, now: DateTime<Utc>) -> ReadAnswer {
    match q {
        JobsQuery::One { id, next } => match view.get(id) {
            None => refuse(ReadErrorKind::NotFound, "id", format!("no job \"{id}\"")),
            Some(j) => Ok(body(JobDetail {
                view: JobView::of(&j, now),
                job: j.spec.clone(),
                upcoming: upcoming(&j, now, *next),
            })),
        },
        JobsQuery::List {
            filter,
            sort_next: false,
            cursor,
            limit,
        } => {
            let (page, more) = view.list(filter, cursor.as_deref(), *limit);
            let next = more
                .then(|| page.last().map(|j| j.spec.id.clone()))
                .flatten();
            // A first page that holds every match needs no second walk.
            let total = if cursor.is_none() && !more {
                page.len()
            } else {
                view.count(filter)
            };
            let jobs = page.into_iter().map(|j| JobView::of(&j, now)).collect();
            Ok(body(JobsPage { jobs, next, total }))
        }
        JobsQuery::List {
            filter,
            sort_next: true,
            cursor,
            limit,
        } => {
            let offset = match cursor.as_deref().map(str::parse::<usize>) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    return refuse(
                        ReadErrorKind::Invalid,
                        "cursor",
                        "not a cursor of a sort=next page",
                    )
                }
            };
            // One walk, stopped past the bound; the count only on refusal.
            let (all, more) = view.list(filter, None, SORT_NEXT_MAX);
            if more {
                let total = view.count(filter);
                return refuse(
                    ReadErrorKind::TooBroad,
                    "sort",
                    format!(
                        "{total} jobs match: narrow the search (q, pool, label, paused) to at most {SORT_NEXT_MAX} to sort them by next fire"
                    ),
                );
            }
            let total = all.len();
            // Paused and finished jobs (no next fire) sort last, by id.
            let mut keyed: Vec<(Option<DateTime<Utc>>, std::sync::Arc<JobEntry>)> = all
                .into_iter()
                .map(|j| ((!j.paused).then(|| j.next_after(now)).flatten(), j))
                .collect();
            keyed.sort_by(|(a, ja), (b, jb)| match (a, b) {
                (Some(a), Some(b)) => a.cmp(b).then_with(|| ja.spec.id.cmp(&jb.spec.id)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => ja.spec.id.cmp(&jb.spec.id),
            });
            let end = offset.saturating_add(*limit).min(keyed.len());
            let jobs = keyed
                .get(offset.min(end)..end)
                .unwrap_or_default()
                .iter()
                .map(|(_, j)| JobView::of(j, now))
                .collect();
            let next = (end < keyed.len()).then(|| end.to_string());
            Ok(body(JobsPage { jobs, next, total }))
        }
    }
}

/// The next `n` fires of `j` after `now` with their DST notes (as
/// `sundial schedule next` prints them), in the job's zone and in UTC. A
/// paused job lists the fires it would have once resumed.
fn upcoming(j: &JobEntry, now: DateTime<Utc>, n: usize) -> Vec<Upcoming> {
    let tz = j.schedule.timezone();
    let mut out = Vec::new();
    let mut t = now;
    while out.len() < n {
        let Some(at) = j.next_after(t) else { break };
        // The note belongs to the occurrence the schedule itself reports.
        let note = j
            .schedule
            .next_after(at - chrono::Duration::milliseconds(1))
            .filter(|o| o.at == at)
            .and_then(|o| o.note.map(|n| n.as_str()));
        out.push(Upcoming {
            at: rfc3339(at),
            local: at
                .with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
            note,
        });
        t = at;
    }
    out
}
