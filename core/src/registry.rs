//! The registry view: the current job definitions, rebuilt by replaying the
//! `sundial.registry` stream and kept current by applying each accepted
//! record. Pure: the scheduler's actors own one and feed it records.

use std::{collections::BTreeMap, ops::Bound, sync::Arc};

use chrono::{DateTime, Utc};

use crate::{
    job::JobSpec,
    protocol::registry::{RegistryRecord, StoredJob},
    schedule::{parse_zone, Schedule},
};

/// One live job: its definition, parsed schedule and pause state.
#[derive(Debug, Clone)]
pub struct JobEntry {
    pub spec: JobSpec,
    /// First acceptance; the `@every` anchor without `start_at`.
    pub created_at: DateTime<Utc>,
    pub schedule: Schedule,
    /// `spec.paused`, then toggled by pause/resume records.
    pub paused: bool,
    /// Why and when the pause record that paused it was written (`None`
    /// when running, or paused without a reason).
    pub paused_reason: Option<String>,
    pub paused_at: Option<DateTime<Utc>>,
    /// Who paused it, when the pause named someone (ADR 0023).
    pub paused_by: Option<String>,
    /// The last pause `[paused at, resumed at)`, once resumed (not kept in
    /// snapshots: a scheduler that replays from a later snapshot does not
    /// know it).
    pub last_pause: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl JobEntry {
    /// Builds an entry from a stored definition. Stored definitions were
    /// validated on the way in; this only fails if the zone database lost a
    /// zone between versions.
    pub fn new(spec: JobSpec, created_at: DateTime<Utc>) -> Result<Self, String> {
        let tz = parse_zone(&spec.timezone).map_err(|e| e.to_string())?;
        let anchor = spec.start_at.unwrap_or(created_at);
        let schedule = Schedule::parse(&spec.schedule, tz, anchor).map_err(|e| e.to_string())?;
        Ok(Self {
            paused: spec.paused,
            paused_reason: None,
            paused_at: None,
            paused_by: None,
            last_pause: None,
            spec,
            created_at,
            schedule,
        })
    }

    /// The first occurrence strictly after `t` that lies within
    /// `[start_at, end_at)`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = match self.spec.start_at {
            Some(s) if s > t => s - chrono::Duration::milliseconds(1),
            _ => t,
        };
        let at = self.schedule.next_after(from.max(t))?.at;
        self.spec.end_at.is_none_or(|e| at < e).then_some(at)
    }
}

/// What applying a record did, so the caller can tell the timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A job was created or its definition changed.
    Upserted(String),
    /// Several were (a batch record), in order.
    UpsertedMany(Vec<String>),
    Deleted(String),
    Paused(String),
    Resumed(String),
    /// A complete snapshot replaced the view.
    Reloaded,
    /// Nothing changed (unknown id, identical state, partial snapshot).
    None,
}

/// Which jobs a `list` (or the API's job search) wants; every given part
/// must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Every pair must be among the job's labels.
    pub labels: BTreeMap<String, String>,
    /// A substring of the id, in any case (`PAY` finds `pay-settle`).
    pub q: Option<String>,
    pub pool: Option<String>,
    pub paused: Option<bool>,
}

/// Whether `needle` is in `haystack`, ASCII case ignored (job ids are
/// ASCII), without allocating: a search walks every job.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

impl JobFilter {
    pub fn matches(&self, j: &JobEntry) -> bool {
        self.q
            .as_deref()
            .is_none_or(|q| contains_ignoring_case(&j.spec.id, q))
            && self.pool.as_deref().is_none_or(|p| j.spec.pool == p)
            && self.paused.is_none_or(|p| j.paused == p)
            && self
                .labels
                .iter()
                .all(|(k, v)| j.spec.labels.get(k) == Some(v))
    }
}

/// The current definitions, by id (sorted, so a page of a million jobs is
/// a range walk). Entries are shared (`Arc`) with the timer shards that
/// fire them: one copy of each definition per process.
#[derive(Debug, Default)]
pub struct RegistryView {
    jobs: BTreeMap<String, Arc<JobEntry>>,
    /// The entries of a snapshot being read: its id, the next part, the
    /// entries so far.
    pending_snapshot: Option<(String, u32, BTreeMap<String, Arc<JobEntry>>)>,
}

impl RegistryView {
    pub fn get(&self, id: &str) -> Option<&JobEntry> {
        self.jobs.get(id).map(|j| &**j)
    }

    /// The entry, shared (no copy).
    pub fn get_shared(&self, id: &str) -> Option<Arc<JobEntry>> {
        self.jobs.get(id).cloned()
    }

    /// Every entry, shared.
    pub fn iter_shared(&self) -> impl Iterator<Item = &Arc<JobEntry>> {
        self.jobs.values()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &JobEntry> {
        self.jobs.values().map(|j| &**j)
    }

    /// One page of the jobs `filter` matches: the first `limit` by id
    /// among ids greater than `after`, sorted, and whether more follow. A
    /// walk of the sorted ids from `after`: a page costs what it holds plus
    /// the jobs the filter passes over.
    pub fn list(
        &self,
        filter: &JobFilter,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<&JobEntry>, bool) {
        let from = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut it = self
            .jobs
            .range::<str, _>((from, Bound::Unbounded))
            .map(|(_, j)| &**j)
            .filter(|j| filter.matches(j));
        let page: Vec<&JobEntry> = it.by_ref().take(limit).collect();
        let more = it.next().is_some();
        (page, more)
    }

    /// How many jobs `filter` matches (a walk over every job).
    pub fn count(&self, filter: &JobFilter) -> usize {
        if filter == &JobFilter::default() {
            return self.jobs.len();
        }
        self.jobs.values().filter(|j| filter.matches(j)).count()
    }

    /// Applies one record. Records that cannot be applied (a definition whose
    /// zone vanished) are reported as `Err` with the reason and skipped.
    pub fn apply(&mut self, record: &RegistryRecord) -> Result<Change, String> {
        self.apply_owned(record.clone())
    }

    /// As [`RegistryView::apply`], consuming the record: definitions move
    /// into the view instead of being copied (replay reads a million).
    pub fn apply_owned(&mut self, record: RegistryRecord) -> Result<Change, String> {
        Ok(match record {
            RegistryRecord::Upsert { job, created_at } => {
                let id = job.id.clone();
                let entry =
                    JobEntry::new(*job, created_at).map_err(|e| format!("job {id}: {e}"))?;
                self.jobs.insert(id.clone(), Arc::new(entry));
                Change::Upserted(id)
            }
            RegistryRecord::UpsertMany { jobs } => {
                let mut ids = Vec::with_capacity(jobs.len());
                for s in jobs {
                    let id = s.job.id.clone();
                    let entry = entry_of(s).map_err(|e| format!("job {id}: {e}"))?;
                    self.jobs.insert(id.clone(), entry);
                    ids.push(id);
                }
                Change::UpsertedMany(ids)
            }
            RegistryRecord::Delete { id } => match self.jobs.remove(&id) {
                Some(_) => Change::Deleted(id),
                None => Change::None,
            },
            RegistryRecord::Pause { id, reason, at, by } => {
                self.set_paused(&id, true, Some((reason, by)), at)
            }
            RegistryRecord::Resume { id, at } => self.set_paused(&id, false, None, at),
            RegistryRecord::Snapshot {
                snapshot_id,
                part,
                parts,
                jobs,
            } => self.snapshot_part(snapshot_id, part, parts, jobs)?,
            RegistryRecord::Sync { .. } | RegistryRecord::Audit { .. } => Change::None,
        })
    }

    fn set_paused(
        &mut self,
        id: &str,
        paused: bool,
        reason: Option<(Option<String>, Option<String>)>,
        at: Option<DateTime<Utc>>,
    ) -> Change {
        match self.jobs.get_mut(id) {
            Some(j) if j.paused != paused => {
                // Copy-on-write: a shard may still hold the old entry.
                let e = Arc::make_mut(j);
                if !paused {
                    // The interval it was paused, when both ends are known
                    // (alerts expect nothing of it).
                    e.last_pause = e.paused_at.zip(at);
                }
                e.paused = paused;
                let (reason, by) = reason.unwrap_or_default();
                e.paused_reason = reason;
                e.paused_by = by;
                e.paused_at = if paused { at } else { None };
                if paused {
                    Change::Paused(id.to_string())
                } else {
                    Change::Resumed(id.to_string())
                }
            }
            _ => Change::None,
        }
    }

    /// Builds the snapshot's entries part by part (never holding all its
    /// definitions twice); a complete snapshot replaces the view.
    fn snapshot_part(
        &mut self,
        sid: String,
        part: u32,
        parts: u32,
        jobs: Vec<StoredJob>,
    ) -> Result<Change, String> {
        let mut fresh = match self.pending_snapshot.take() {
            Some((id, next, acc)) if id == sid && next == part => acc,
            _ if part == 0 => BTreeMap::new(),
            // A part out of order (a writer died mid-snapshot): ignore it.
            _ => return Ok(Change::None),
        };
        for s in jobs {
            // An unchanged definition keeps its entry (shared with a timer
            // shard): a snapshot does not double the memory of a live node.
            let paused = s.paused.unwrap_or(s.job.paused);
            let kept = self
                .jobs
                .get(&s.job.id)
                .filter(|old| {
                    old.spec == s.job
                        && old.created_at == s.created_at
                        && old.paused == paused
                        && old.paused_reason == s.paused_reason
                        && old.paused_by == s.paused_by
                })
                .cloned();
            let entry = match kept {
                Some(old) => old,
                None => entry_of(s)?,
            };
            fresh.insert(entry.spec.id.clone(), entry);
        }
        if part + 1 < parts {
            self.pending_snapshot = Some((sid, part + 1, fresh));
            return Ok(Change::None);
        }
        self.jobs = fresh;
        Ok(Change::Reloaded)
    }
}

/// The entry of a stored definition (its pause state included).
fn entry_of(s: StoredJob) -> Result<Arc<JobEntry>, String> {
    let paused = s.paused.unwrap_or(s.job.paused);
    let mut e = JobEntry::new(s.job, s.created_at)?;
    e.paused = paused;
    if paused {
        e.paused_reason = s.paused_reason;
        e.paused_at = s.paused_at;
        e.paused_by = s.paused_by;
    }
    Ok(Arc::new(e))
}
