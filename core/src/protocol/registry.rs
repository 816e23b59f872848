//! Registry records: the `sundial.registry` stream is the durable source of
//! truth for job definitions. Replaying it from the first offset rebuilds the
//! current view; snapshots pack many definitions per message so that replay
//! of 1M jobs stays fast.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Format, Message, MIB};
use crate::job::JobSpec;

/// A stored definition: the spec plus when it was first accepted (the
/// `@every` anchor when the spec has no `start_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredJob {
    pub job: JobSpec,
    pub created_at: DateTime<Utc>,
    /// The job's pause state when the snapshot was written (pause and
    /// resume records change it without changing the definition); absent:
    /// `job.paused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Why and when it was paused, when the pause gave a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
    /// Who paused it, when the pause named someone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_by: Option<String>,
}

impl StoredJob {
    /// A definition accepted at `created_at`, its pause state its own.
    pub fn new(job: JobSpec, created_at: DateTime<Utc>) -> Self {
        Self {
            job,
            created_at,
            paused: None,
            paused_reason: None,
            paused_at: None,
            paused_by: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RegistryRecord {
    Upsert {
        job: Box<JobSpec>,
        created_at: DateTime<Utc>,
    },
    /// Many definitions accepted by one `upsert-many` command, applied in
    /// order: one stream message instead of one per job (a million jobs
    /// replay from a thousand messages).
    UpsertMany {
        jobs: Vec<StoredJob>,
    },
    Delete {
        id: String,
    },
    /// `reason` and `at` are absent in records of releases before the
    /// dashboard (and when the command gave no reason).
    Pause {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<DateTime<Utc>>,
        /// Who paused it (absent before the audit trail, ADR 0023).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// `at` is absent in records of releases before alerts.
    Resume {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<DateTime<Utc>>,
    },
    /// Part `part` of `parts` of a snapshot; a snapshot is complete when all
    /// its parts were read, and then replaces everything before it.
    Snapshot {
        snapshot_id: String,
        part: u32,
        parts: u32,
        jobs: Vec<StoredJob>,
    },
    /// Who did what (ADR 0023), appended after the write it records.
    /// Changes nothing in the view.
    Audit {
        entry: super::audit::AuditEntry,
    },
    /// A marker a scheduler appends before replaying, to know when it has
    /// read everything written before it started. Changes nothing.
    Sync {
        id: String,
    },
}

impl Message for RegistryRecord {
    const KIND: &'static str = "sundial.registry";
    const PRIMARY: Format = Format::Json;
    const FORMATS: &'static [Format] = &[Format::Json];
    /// Snapshot parts hold ~1,000 definitions.
    const MAX_SIZE: usize = 16 * MIB;
    const TAG: Option<&'static str> = Some("op");
}

/// Which part of which snapshot a registry record is, read without its
/// definitions. A live node reads only this of the snapshots other nodes
/// write (it applied every record they sum up); a replay reads them whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHead {
    pub snapshot_id: String,
    pub part: u32,
    pub parts: u32,
}

impl SnapshotHead {
    /// The head of `body` if it is a snapshot part (its definitions are
    /// skipped over, not decoded); `None` for every other record and for a
    /// body that is not one (the full decode reports why).
    pub fn of(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            op: std::borrow::Cow<'a, str>,
            snapshot_id: Option<String>,
            part: Option<u32>,
            parts: Option<u32>,
        }
        if body.len() > RegistryRecord::MAX_SIZE {
            return None;
        }
        let h: Head = serde_json::from_slice(body).ok()?;
        (h.op == "snapshot").then_some(())?;
        Some(Self {
            snapshot_id: h.snapshot_id?,
            part: h.part?,
            parts: h.parts?,
        })
    }
}

/// The newest complete snapshot (last value of `sundial.registry.index`):
/// replay starts at the stream chunk of `written_at` instead of the first
/// offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryIndex {
    pub snapshot_id: String,
    /// When its first part was appended (before it, to the second).
    pub written_at: DateTime<Utc>,
    pub jobs: u64,
}

impl Message for RegistryIndex {
    const KIND: &'static str = "sundial.registry.index";
    const PRIMARY: Format = Format::Json;
    const FORMATS: &'static [Format] = &[Format::Json];
    const MAX_SIZE: usize = 4096;
}
