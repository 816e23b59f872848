//! The form of a job this node fires (ADR 0024): its compact form (the
//! encoded definition, pool, labels, pause state) plus what its timer reads
//! at every occurrence, parsed once (schedule, bounds, jitter, misfire
//! policy). Shared (`Arc`) between the registry view and the timer shard
//! that fires it; the full definition is decoded when a fire is published.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{
    compact::{Compact, Group, Interner, Labels},
    schedule_of, JobEntry, PauseNote,
};
use crate::{
    duration::HumanDuration,
    job::{JobSpec, MisfirePolicy, Overlap},
    protocol::registry::StoredJob,
    schedule::Schedule,
};

/// A job of a timer shard this node holds: 112 bytes besides its encoded
/// definition, where the parsed definition took ~500.
#[derive(Debug, Clone)]
pub struct Fired {
    /// Shared with the registry view's key.
    id: Arc<str>,
    def: Arc<[u8]>,
    /// Its pool and labels (interned).
    group: Arc<Group>,
    schedule: Schedule,
    created_at: DateTime<Utc>,
    start_at: Option<DateTime<Utc>>,
    /// The parts most jobs leave at their default; absent then.
    rare: Option<Box<Rare>>,
    paused: bool,
    overlap: Overlap,
}

/// What few jobs set, boxed so that the others do not carry it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Rare {
    end_at: Option<DateTime<Utc>>,
    jitter: Option<HumanDuration>,
    sla: Option<HumanDuration>,
    misfire: MisfirePolicy,
    pause: PauseNote,
}

impl Fired {
    /// The fired form of a stored definition already held compact as `c`
    /// (its bytes, pool and labels shared, not copied).
    pub(crate) fn of(id: Arc<str>, s: &StoredJob, c: &Compact) -> Result<Self, String> {
        let schedule = schedule_of(&s.job, s.created_at)?;
        let paused = s.paused.unwrap_or(s.job.paused);
        let mut f = Self {
            id,
            def: c.def.clone(),
            group: c.group.clone(),
            schedule,
            created_at: s.created_at,
            start_at: s.job.start_at,
            rare: None,
            paused,
            overlap: s.job.overlap,
        };
        f.set_rare(Rare {
            end_at: s.job.end_at,
            jitter: s.job.jitter,
            sla: s.job.sla,
            misfire: s.job.misfire,
            pause: PauseNote::of(s),
        });
        Ok(f)
    }

    /// Parses a job held compact.
    pub(crate) fn parse(id: Arc<str>, c: &Compact) -> Result<Self, String> {
        let s = c.stored(&id)?;
        Self::of(id, &s, c)
    }

    /// A job accepted at `created_at`, on its own (tests: no registry view
    /// to share pools and labels with).
    pub fn new(spec: JobSpec, created_at: DateTime<Utc>) -> Result<Self, String> {
        let id: Arc<str> = Arc::from(spec.id.as_str());
        let s = StoredJob::new(spec, created_at);
        let c = Interner::default().compact(&s)?;
        Self::of(id, &s, &c)
    }

    /// The fired form of a parsed entry, its pauses included (the `ledger`
    /// command walks the schedules of the jobs it listed so).
    pub fn from_entry(e: &JobEntry) -> Result<Self, String> {
        let id: Arc<str> = Arc::from(e.spec.id.as_str());
        let s = e.stored();
        let c = Interner::default().compact(&s)?;
        let mut f = Self::of(id, &s, &c)?;
        if let Some(last) = e.last_pause() {
            let mut r = f.rare.as_deref().cloned().unwrap_or_default();
            r.pause.last = Some(last);
            f.set_rare(r);
        }
        Ok(f)
    }

    fn set_rare(&mut self, r: Rare) {
        self.rare = (r != Rare::default()).then(|| Box::new(r));
    }

    fn rare<T>(&self, f: impl FnOnce(&Rare) -> T) -> Option<T> {
        self.rare.as_deref().map(f)
    }

    /// Its compact form (nothing encoded again: the same bytes).
    pub(crate) fn compact(&self) -> Compact {
        Compact {
            def: self.def.clone(),
            group: self.group.clone(),
            paused: self.paused,
        }
    }

    pub(crate) fn def(&self) -> &Arc<[u8]> {
        &self.def
    }

    /// The stored definition, decoded (its pause state included).
    pub fn stored(&self) -> Result<StoredJob, String> {
        super::compact::decode(&self.id, &self.def)
    }

    /// The definition, decoded: what a fire carries.
    pub fn spec(&self) -> Result<JobSpec, String> {
        super::compact::decode_job(&self.id, &self.def)
    }

    /// The parsed entry (a copy; with its last pause, which only this form
    /// keeps).
    pub fn entry(&self) -> Result<JobEntry, String> {
        let mut e = JobEntry::from_stored(self.stored()?)?;
        if let Some(last) = self.last_pause() {
            let mut note = e.pause.as_deref().cloned().unwrap_or_default();
            note.last = Some(last);
            e.set_pause(note);
        }
        Ok(e)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn pool(&self) -> &str {
        &self.group.pool
    }

    pub fn labels(&self) -> &Labels {
        &self.group.labels
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn overlap(&self) -> Overlap {
        self.overlap
    }

    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    pub fn start_at(&self) -> Option<DateTime<Utc>> {
        self.start_at
    }

    pub fn end_at(&self) -> Option<DateTime<Utc>> {
        self.rare(|r| r.end_at).flatten()
    }

    pub fn jitter(&self) -> Option<HumanDuration> {
        self.rare(|r| r.jitter).flatten()
    }

    pub fn sla(&self) -> Option<HumanDuration> {
        self.rare(|r| r.sla).flatten()
    }

    pub fn misfire(&self) -> MisfirePolicy {
        self.rare(|r| r.misfire).unwrap_or_default()
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn paused_at(&self) -> Option<DateTime<Utc>> {
        self.rare(|r| r.pause.at).flatten()
    }

    /// The last pause `[paused at, resumed at)`, once resumed.
    pub fn last_pause(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.rare(|r| r.pause.last).flatten()
    }

    /// The same job, paused or running (the timer's own copy: the
    /// definition's bytes still say what the registry last wrote).
    pub(crate) fn with_paused(&self, paused: bool) -> Self {
        Self {
            paused,
            ..self.clone()
        }
    }

    /// The same job after a pause record: `c` its definition re-encoded with
    /// the new pause state, `note` what is known of its pauses.
    pub(crate) fn repaused(&self, c: &Compact, note: PauseNote) -> Self {
        let mut f = Self {
            def: c.def.clone(),
            group: c.group.clone(),
            paused: c.paused,
            ..self.clone()
        };
        let mut r = self.rare.as_deref().cloned().unwrap_or_default();
        r.pause = note;
        f.set_rare(r);
        f
    }

    /// The first occurrence strictly after `t` that lies within
    /// `[start_at, end_at)`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        super::next_within(&self.schedule, self.start_at, self.end_at(), t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_job_carries_no_rare_parts_and_reads_back_whole() {
        let created = DateTime::from_timestamp(1_765_000_000, 0).expect("instant");
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "id": "a", "schedule": "@every 10s", "executor": {"type": "noop"}
        }))
        .expect("a job");
        let f = Fired::new(spec.clone(), created).expect("fired");
        assert!(f.rare.is_none());
        // 112 bytes and the `Arc`'s two counts: one 128-byte allocation.
        assert!(
            std::mem::size_of::<Fired>() <= 112,
            "{}",
            std::mem::size_of::<Fired>()
        );
        assert_eq!(f.spec(), Ok(spec.clone()));
        let mut late = spec;
        late.sla = Some(HumanDuration::from_secs(60));
        late.end_at = Some(created + chrono::Duration::seconds(25));
        let f = Fired::new(late.clone(), created).expect("fired");
        assert_eq!(f.sla(), late.sla);
        assert_eq!(
            f.next_after(created + chrono::Duration::seconds(15)),
            Some(created + chrono::Duration::seconds(20))
        );
        assert_eq!(f.next_after(created + chrono::Duration::seconds(20)), None);
    }
}
