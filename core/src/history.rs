//! Run history's model (ADR 0015): the row kept per attempt, built from the
//! run records of the history stream, and the queries over those rows. The
//! store itself is `sundial_store::Index`; this is what it keeps
//! and answers, free of I/O.

use std::{collections::BTreeMap, fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::protocol::run::{RunEvent, RunKind};

/// How an attempt ended, or that it has not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Started; no outcome recorded yet.
    Running,
    Succeeded,
    /// Failed; `retried` says whether another attempt was scheduled.
    Failed,
    /// Failed for the last time: dead-lettered.
    Dead,
    /// Not run: a duplicate delivery, or skipped by `overlap = "forbid"`.
    Skipped,
    /// A workflow occurrence a client cancelled.
    Cancelled,
}

impl Outcome {
    /// Failed (retried or not) or dead.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::Dead)
    }

    pub const ALL: [Outcome; 6] = [
        Outcome::Running,
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Dead,
        Outcome::Skipped,
        Outcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Dead => "dead",
            Outcome::Skipped => "skipped",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// Whether the attempt is over.
    pub fn is_final(self) -> bool {
        self != Outcome::Running
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "must be one of running, succeeded, failed, dead, skipped, cancelled; got \"{s}\""
                )
            })
    }
}

/// One attempt of one fire, as the history index keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunRow {
    pub fire_id: String,
    pub job_id: String,
    pub pool: String,
    /// The job's labels when the record was indexed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempt: u32,
    pub outcome: Outcome,
    /// A failed attempt after which another was scheduled.
    #[serde(default)]
    pub retried: bool,
    pub duration_ms: Option<u64>,
    /// The worker (or scheduler node, for a skip) that recorded it.
    pub worker: String,
    pub reason: Option<String>,
    /// Last bytes of the attempt's output.
    pub output: Option<String>,
    /// When the fire was replayed from the dead letters, for the runs of a
    /// replay (attempt numbers start again at 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<DateTime<Utc>>,
}

impl RunRow {
    /// The row a first record of an attempt starts; `None` for records that
    /// are not about an attempt (`fired`).
    pub fn from_record(r: &RunEvent) -> Option<Self> {
        if r.kind == RunKind::Fired {
            return None;
        }
        let scheduled_at = r
            .scheduled_at
            .or_else(|| crate::fire_id::FireId::parse(&r.fire_id).map(|(_, at)| at));
        let mut row = RunRow {
            fire_id: r.fire_id.clone(),
            job_id: r.job_id.clone(),
            pool: r.pool.clone(),
            labels: BTreeMap::new(),
            scheduled_at,
            started_at: None,
            finished_at: None,
            attempt: r.attempt,
            outcome: Outcome::Running,
            retried: false,
            duration_ms: None,
            worker: r.worker.clone(),
            reason: None,
            output: None,
            replay: r.replay,
        };
        if r.kind == RunKind::Skipped {
            row.outcome = Outcome::Skipped;
            row.finished_at = Some(r.at);
            row.reason = r.reason.clone();
            return Some(row);
        }
        row.apply(r);
        Some(row)
    }

    /// Merges a later record of the same attempt. Records of one attempt
    /// can come from two workers (a redelivery) in any order: a final
    /// outcome is never undone by a `started`, and a `skipped` duplicate
    /// never overwrites the attempt that ran.
    pub fn apply(&mut self, r: &RunEvent) {
        match r.kind {
            RunKind::Fired | RunKind::Skipped => {}
            RunKind::Started => {
                if self.started_at.is_none() || !self.outcome.is_final() {
                    self.started_at = Some(r.at);
                    self.worker = r.worker.clone();
                }
            }
            RunKind::Succeeded | RunKind::Failed => {
                if self.outcome != Outcome::Dead {
                    self.outcome = if r.kind == RunKind::Succeeded {
                        Outcome::Succeeded
                    } else {
                        Outcome::Failed
                    };
                }
                self.finished_at = Some(r.at);
                self.duration_ms = r.duration_ms.or(self.duration_ms);
                self.worker = r.worker.clone();
                if r.reason.is_some() {
                    self.reason = r.reason.clone();
                }
                if r.output.is_some() {
                    self.output = r.output.clone();
                }
            }
            RunKind::Retrying => {
                self.retried = true;
                if !self.outcome.is_final() {
                    self.outcome = Outcome::Failed;
                }
            }
            RunKind::Dead => {
                self.outcome = Outcome::Dead;
                if r.reason.is_some() {
                    self.reason = r.reason.clone();
                }
                self.finished_at.get_or_insert(r.at);
            }
            RunKind::Cancelled => {
                // Final unless it had ended already.
                if !self.outcome.is_final() {
                    self.outcome = Outcome::Cancelled;
                    self.finished_at = Some(r.at);
                    self.duration_ms = self
                        .started_at
                        .and_then(|s| u64::try_from((r.at - s).num_milliseconds()).ok());
                    self.reason = r.reason.clone();
                }
            }
        }
        if self.started_at.is_none() {
            // An outcome without its start (an older worker): the start is
            // its end less its duration.
            if let (Some(end), Some(ms)) = (self.finished_at, self.duration_ms) {
                self.started_at = i64::try_from(ms)
                    .ok()
                    .and_then(|ms| end.checked_sub_signed(chrono::TimeDelta::milliseconds(ms)));
            }
        }
    }

    /// The instant the row is ordered by: its start, else its end.
    pub fn at(&self) -> DateTime<Utc> {
        self.started_at
            .or(self.finished_at)
            .or(self.scheduled_at)
            .unwrap_or(DateTime::UNIX_EPOCH)
    }
}

/// Where a page of runs ends: the next page starts after it (older runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last row's [`RunRow::at`], in milliseconds.
    pub at_ms: i64,
    /// The last row's id in the index (ties on `at_ms`).
    pub id: i64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.at_ms, self.id)
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("not a cursor from a previous page: \"{s}\"");
        let (a, b) = s.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            at_ms: a.parse().map_err(|_| bad())?,
            id: b.parse().map_err(|_| bad())?,
        })
    }
}

/// Which runs, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunQuery {
    /// Exactly this job.
    pub job: Option<String>,
    /// Jobs whose id starts with this.
    pub job_prefix: Option<String>,
    pub pool: Option<String>,
    /// Runs on this worker (its id, exact).
    pub worker: Option<String>,
    pub outcome: Option<Outcome>,
    /// Jobs with this label (`key`, `value`).
    pub label: Option<(String, String)>,
    /// Runs at or after this instant ([`RunRow::at`]).
    pub since: Option<DateTime<Utc>>,
    /// Runs before this instant.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: usize,
    /// Continue after a previous page.
    pub after: Option<Cursor>,
}

/// The largest page a query returns.
pub const MAX_PAGE: usize = 1000;

/// One page of runs, newest first; `next` continues with older ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunPage {
    pub runs: Vec<RunRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A run as the jobs list draws it in a strip (no output, no reason).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunBrief {
    pub fire_id: String,
    pub attempt: u32,
    pub outcome: Outcome,
    pub retried: bool,
    /// Its start (or, not started, its last record).
    pub at: DateTime<Utc>,
    pub duration_ms: Option<u64>,
}

/// A job's last runs (newest first) and its failures in a window (`failed`
/// and `dead` attempts, at most [`FAILURES_COUNTED`] counted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRecent {
    pub job_id: String,
    pub runs: Vec<RunBrief>,
    pub failed: u64,
}

/// A job with failures in a window: how many (at most
/// [`FAILURES_COUNTED`]), the last one, and its newest run's outcome
/// (`succeeded`: it recovered since).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Failing {
    pub job_id: String,
    pub failed: u64,
    pub last_failure: DateTime<Utc>,
    pub last_outcome: Outcome,
}

/// Failures counted per job, at most (a count past it says "1000+").
pub const FAILURES_COUNTED: u64 = 1000;

/// A job's runs over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Summary {
    pub job_id: String,
    pub since: DateTime<Utc>,
    /// Finished attempts in the window (skips not counted).
    pub runs: u64,
    pub succeeded: u64,
    /// Failed, retried or not, and dead.
    pub failed: u64,
    /// `succeeded / runs`; none without runs.
    pub success_rate: Option<f64>,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    /// Ever, not only in the window.
    pub last_success: Option<DateTime<Utc>>,
    pub last_failure: Option<DateTime<Utc>>,
}

impl Summary {
    /// Summarises the finished attempts `rows` of `job_id` since `since`
    /// (any order), with the last success and failure found elsewhere.
    pub fn of(
        job_id: &str,
        since: DateTime<Utc>,
        rows: &[(Outcome, Option<u64>)],
        last_success: Option<DateTime<Utc>>,
        last_failure: Option<DateTime<Utc>>,
    ) -> Self {
        let finished: Vec<&(Outcome, Option<u64>)> = rows
            .iter()
            // Skips and cancellations are choices, not runs.
            .filter(|(o, _)| o.is_final() && !matches!(o, Outcome::Skipped | Outcome::Cancelled))
            .collect();
        let succeeded = finished
            .iter()
            .filter(|(o, _)| *o == Outcome::Succeeded)
            .count() as u64;
        let runs = finished.len() as u64;
        let mut durations: Vec<u64> = finished.iter().filter_map(|(_, d)| *d).collect();
        durations.sort_unstable();
        Summary {
            job_id: job_id.to_string(),
            since,
            runs,
            succeeded,
            failed: runs - succeeded,
            success_rate: (runs > 0).then(|| succeeded as f64 / runs as f64),
            p50_ms: percentile(&durations, 50.0),
            p95_ms: percentile(&durations, 95.0),
            last_success,
            last_failure,
        }
    }
}

/// `v` as an instant: a duration that long before `now` (`1h`, `30m`,
/// `7d`) or an RFC 3339 instant. The error says what is accepted.
pub fn instant(v: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    v.parse::<crate::HumanDuration>()
        .ok()
        .and_then(|d| chrono::Duration::from_std(d.get()).ok())
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| {
            format!("must be a duration before now (1h, 30m) or an RFC 3339 instant, got \"{v}\"")
        })
}

/// Nearest-rank percentile `p` (0–100] of `sorted` (ascending).
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}
