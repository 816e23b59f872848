//! The audit trail: one entry per write (ADR 0023), appended to the
//! registry stream (as a `RegistryRecord::Audit`, next to the records it
//! explains) and to the history stream (in a run batch's `audit`, which the
//! history index keeps and `GET /api/v1/audit` reads).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What was done: the control command's name, or a dead-letter action.
pub const ACTIONS: &[&str] = &[
    "upsert",
    "upsert-many",
    "delete",
    "pause",
    "resume",
    "trigger",
    "cancel",
    "backfill",
    "replay",
    "purge",
];

/// The most job ids an entry lists in `jobs` (a write of more jobs at once
/// is in the trail as a count, not on each job's own trail).
pub const JOBS_MAX: usize = 100;

/// The longest `detail` of an entry, in characters (an `upsert-many` names
/// its first jobs, then how many more).
pub const DETAIL_MAX: usize = 1_000;

/// One write: who did what to which job, when and why. Unknown fields are
/// ignored (not refused): a reader keeps the entries of a newer writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// When the write took effect (the scheduler's or reader's clock).
    pub at: DateTime<Utc>,
    /// One of [`ACTIONS`].
    pub action: String,
    /// Who asked: an API token's name, `(loopback)` on the open API, the
    /// CLI's `--as` or OS user; absent when the command named nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The job written (absent for a write of many jobs or of letters of
    /// several jobs: `detail` names them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The jobs of a write of several (at most [`JOBS_MAX`]): each job's
    /// trail shows the entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What it amounted to, for people: the fire id of a trigger, the
    /// window of a backfill, the letters replayed (at most [`DETAIL_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The process that did it (a scheduler node, or `dlq` for the CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl AuditEntry {
    /// An entry of `action` at `at`, by nobody named yet.
    pub fn new(action: &str, at: DateTime<Utc>) -> Self {
        Self {
            at,
            action: action.to_string(),
            by: None,
            job_id: None,
            jobs: Vec::new(),
            reason: None,
            detail: None,
            node: None,
        }
    }

    /// `detail`, cut to [`DETAIL_MAX`] characters.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        let d: String = detail.into();
        self.detail = Some(if d.chars().count() > DETAIL_MAX {
            let mut cut: String = d.chars().take(DETAIL_MAX - 1).collect();
            cut.push('…');
            cut
        } else {
            d
        });
        self
    }

    /// `ids` as a detail: the first few, then how many more.
    pub fn naming(self, what: &str, ids: &[String]) -> Self {
        const SHOWN: usize = 20;
        let mut d = format!("{} {what}: ", ids.len());
        d.push_str(
            &ids.iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        );
        if ids.len() > SHOWN {
            d.push_str(&format!(" and {} more", ids.len() - SHOWN));
        }
        self.with_detail(d)
    }

    /// Lists `ids` in `jobs` (one is `job_id`; more than [`JOBS_MAX`] none).
    pub fn of_jobs(mut self, ids: &[String]) -> Self {
        match ids {
            [one] => self.job_id = Some(one.clone()),
            many if many.len() <= JOBS_MAX => self.jobs = many.to_vec(),
            _ => {}
        }
        self
    }
}

/// What `GET /api/v1/audit` asks of the history index: entries newest
/// first, older than `before` (a previous page's `next`), at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub job: Option<String>,
    pub by: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: usize,
}

/// An entry as the index holds it: `seq` orders the entries (and pages
/// them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRow {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_bounded_and_name_the_first_ids() {
        let ids: Vec<String> = (0..500)
            .map(|i| format!("job-{i:04}-{}", "x".repeat(40)))
            .collect();
        let e = AuditEntry::new("upsert-many", Utc::now()).naming("jobs", &ids);
        let d = e.detail.unwrap();
        assert!(d.chars().count() <= DETAIL_MAX, "{}", d.len());
        assert!(d.starts_with("500 jobs: job-0000-"), "{d}");
        let short = AuditEntry::new("upsert-many", Utc::now()).naming("jobs", &ids[..2]);
        assert_eq!(
            short.detail.as_deref(),
            Some(format!("2 jobs: {}, {}", ids[0], ids[1]).as_str())
        );
    }
}
