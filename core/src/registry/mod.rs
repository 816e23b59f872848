//! The registry view: the current job definitions, rebuilt by replaying the
//! `sundial.registry` stream and kept current by applying each accepted
//! record. Pure: the scheduler's actors own one and feed it records.

use std::{collections::BTreeMap, ops::Bound, sync::Arc};

use chrono::{DateTime, Utc};

pub mod compact;
mod fired;

pub use compact::{Compact, Labels};
pub use fired::Fired;

use compact::Interner;

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
    /// What is known of its pauses; boxed and absent for most jobs (8
    /// bytes instead of ~100 in every entry).
    pub pause: Option<Box<PauseNote>>,
}

/// What a job's pauses left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PauseNote {
    /// Why and when the pause record that paused it was written (`None`
    /// when running, or paused without a reason).
    pub reason: Option<String>,
    pub at: Option<DateTime<Utc>>,
    /// Who paused it, when the pause named someone (ADR 0023).
    pub by: Option<String>,
    /// The last pause `[paused at, resumed at)`, once resumed (not kept in
    /// snapshots: a scheduler that replays from a later snapshot does not
    /// know it).
    pub last: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl PauseNote {
    /// What a stored definition says of its pause: its reason, instant and
    /// author when paused, nothing otherwise (the last pause is not stored).
    pub(crate) fn of(s: &StoredJob) -> Self {
        if s.paused.unwrap_or(s.job.paused) {
            PauseNote {
                reason: s.paused_reason.clone(),
                at: s.paused_at,
                by: s.paused_by.clone(),
                last: None,
            }
        } else {
            PauseNote::default()
        }
    }
}

impl JobEntry {
    /// Builds an entry from a stored definition. Stored definitions were
    /// validated on the way in; this only fails if the zone database lost a
    /// zone between versions.
    pub fn new(spec: JobSpec, created_at: DateTime<Utc>) -> Result<Self, String> {
        let schedule = schedule_of(&spec, created_at)?;
        Ok(Self {
            paused: spec.paused,
            pause: None,
            spec,
            created_at,
            schedule,
        })
    }

    pub fn paused_reason(&self) -> Option<&str> {
        self.pause.as_ref()?.reason.as_deref()
    }

    pub fn paused_at(&self) -> Option<DateTime<Utc>> {
        self.pause.as_ref()?.at
    }

    pub fn paused_by(&self) -> Option<&str> {
        self.pause.as_ref()?.by.as_deref()
    }

    pub fn last_pause(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.pause.as_ref()?.last
    }

    /// Sets what is known of its pauses (nothing known: no box).
    pub fn set_pause(&mut self, note: PauseNote) {
        self.pause = (note != PauseNote::default()).then(|| Box::new(note));
    }

    /// The first occurrence strictly after `t` that lies within
    /// `[start_at, end_at)`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_within(&self.schedule, self.spec.start_at, self.spec.end_at, t)
    }

    /// The entry of a stored definition (its pause state included).
    pub fn from_stored(s: StoredJob) -> Result<Self, String> {
        let paused = s.paused.unwrap_or(s.job.paused);
        let note = PauseNote::of(&s);
        let mut e = JobEntry::new(s.job, s.created_at)?;
        e.paused = paused;
        e.set_pause(note);
        Ok(e)
    }
}

/// The first occurrence of `schedule` strictly after `t` that lies within
/// `[start_at, end_at)`.
fn next_within(
    schedule: &Schedule,
    start_at: Option<DateTime<Utc>>,
    end_at: Option<DateTime<Utc>>,
    t: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let from = match start_at {
        Some(s) if s > t => s - chrono::Duration::milliseconds(1),
        _ => t,
    };
    let at = schedule.next_after(from.max(t))?.at;
    end_at.is_none_or(|e| at < e).then_some(at)
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
        self.matches_parts(&j.spec.id, &j.spec.pool, j.paused, &j.spec.labels)
    }

    fn matches_held(&self, id: &str, h: &Held) -> bool {
        self.matches_parts(id, h.pool(), h.paused(), h.labels())
    }

    fn matches_parts(&self, id: &str, pool: &str, paused: bool, labels: &Labels) -> bool {
        self.q
            .as_deref()
            .is_none_or(|q| contains_ignoring_case(id, q))
            && self.pool.as_deref().is_none_or(|p| pool == p)
            && self.paused.is_none_or(|p| paused == p)
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// How the view holds one job: in its fired form, shared with the timer
/// shard that fires it (a shard this node holds), or compact (ADR 0024).
/// Both hold the same encoded definition.
#[derive(Debug, Clone)]
pub enum Held {
    Full(Arc<Fired>),
    Compact(Compact),
}

/// What a snapshot being written keeps of a job: its id and encoded
/// definition, shared, never copied (32 bytes a job while it writes).
#[derive(Debug, Clone)]
pub struct Kept {
    id: Arc<str>,
    def: Arc<[u8]>,
}

impl Kept {
    /// The stored definition.
    pub fn stored(&self) -> Result<StoredJob, String> {
        compact::decode(&self.id, &self.def)
    }
}

impl Held {
    fn def(&self) -> &Arc<[u8]> {
        match self {
            Held::Full(j) => j.def(),
            Held::Compact(c) => &c.def,
        }
    }

    /// The stored definition of `id` (decoded).
    fn stored(&self, id: &str) -> Result<StoredJob, String> {
        compact::decode(id, self.def())
    }

    /// The parsed entry of `id` (decoded: a copy the view does not keep).
    pub fn entry(&self, id: &str) -> Result<Arc<JobEntry>, String> {
        match self {
            Held::Full(j) => j.entry().map(Arc::new),
            Held::Compact(c) => JobEntry::from_stored(c.stored(id)?).map(Arc::new),
        }
    }

    /// The fired form of `id`: shared when full, parsed (a copy) when
    /// compact; `None` for a definition that does not decode (a bug).
    fn fired(&self, id: &Arc<str>) -> Option<Arc<Fired>> {
        match self {
            Held::Full(f) => Some(f.clone()),
            Held::Compact(c) => Fired::parse(id.clone(), c).ok().map(Arc::new),
        }
    }

    /// Parses a compact job in place (a definition that does not decode,
    /// only a bug, stays compact).
    fn make_full(&mut self, id: &Arc<str>) {
        if let Held::Compact(c) = self {
            if let Ok(f) = Fired::parse(id.clone(), c) {
                *self = Held::Full(Arc::new(f));
            }
        }
    }

    /// Drops a full job's parsed parts in place (its bytes, pool and labels
    /// stay: nothing is encoded or interned again).
    fn make_compact(&mut self) {
        if let Held::Full(f) = self {
            *self = Held::Compact(f.compact());
        }
    }

    fn pool(&self) -> &str {
        match self {
            Held::Full(j) => j.pool(),
            Held::Compact(c) => c.pool(),
        }
    }

    fn labels(&self) -> &Labels {
        match self {
            Held::Full(j) => j.labels(),
            Held::Compact(c) => c.labels(),
        }
    }

    fn paused(&self) -> bool {
        match self {
            Held::Full(j) => j.paused(),
            Held::Compact(c) => c.paused,
        }
    }
}

impl JobEntry {
    /// The definition as a snapshot stores it.
    pub fn stored(&self) -> StoredJob {
        StoredJob {
            job: self.spec.clone(),
            created_at: self.created_at,
            paused: Some(self.paused),
            paused_reason: self.paused_reason().map(str::to_string),
            paused_at: self.paused_at(),
            paused_by: self.paused_by().map(str::to_string),
        }
    }
}

/// The current definitions, by id (sorted, so a page of a million jobs is
/// a range walk). The jobs of the timer shards this node holds are parsed
/// and shared (`Arc`) with the shard that fires them; the others are held
/// compact (ADR 0024), so a node's memory grows with the jobs it fires,
/// not with every job.
#[derive(Debug)]
pub struct RegistryView {
    /// By id (shared with the fired form, and with a snapshot being
    /// written).
    jobs: BTreeMap<Arc<str>, Held>,
    /// A snapshot being read, and what the log said after its first part.
    pending_snapshot: Option<Pending>,
    /// Timer shards of the topology (a job's shard is `shard_of(id)`).
    shards: u32,
    /// The shards this node holds, by number: their jobs are full.
    held: Vec<bool>,
    interner: Interner,
    /// Jobs per pool (the heartbeat names the pools every second: a walk
    /// of ten million jobs each time cost the registry half its time).
    pool_jobs: std::collections::HashMap<Box<str>, usize>,
}

impl Default for RegistryView {
    /// A view of one shard that holds none: every job compact.
    fn default() -> Self {
        Self::new(1)
    }
}

impl RegistryView {
    /// An empty view of a topology of `shards` timer shards, holding none.
    pub fn new(shards: u32) -> Self {
        let shards = shards.max(1);
        Self {
            jobs: BTreeMap::new(),
            pending_snapshot: None,
            shards,
            held: vec![false; shards as usize],
            interner: Interner::default(),
            pool_jobs: std::collections::HashMap::new(),
        }
    }

    fn is_held(&self, id: &str) -> bool {
        let s = crate::topology::shard_of(id, self.shards) as usize;
        self.held.get(s).copied().unwrap_or(false)
    }

    /// The entry of `id`: shared when full, decoded when compact (a copy
    /// the view does not keep). A compact job that does not decode reads as
    /// absent: its bytes were encoded by this process, so only a bug does
    /// that, and [`RegistryView::convert_some`] keeps such a job as it is.
    pub fn get(&self, id: &str) -> Option<Arc<JobEntry>> {
        self.jobs.get(id)?.entry(id).ok()
    }

    /// The fired form of `id`: shared when its shard is held and converted,
    /// parsed (a copy the view does not keep) when still compact.
    pub fn fired(&self, id: &str) -> Option<Arc<Fired>> {
        let (key, h) = self.jobs.get_key_value(id)?;
        h.fired(key)
    }

    /// The labels of `id`, without decoding it.
    pub fn labels_of(&self, id: &str) -> Option<&Labels> {
        self.jobs.get(id).map(Held::labels)
    }

    /// The pools the jobs use (counted as jobs come and go: no walk).
    pub fn pools(&self) -> std::collections::BTreeSet<&str> {
        self.pool_jobs
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, _)| &**p)
            .collect()
    }

    /// The key of `id`: the one the view holds (the map keeps its key when
    /// a value is replaced: one copy of an id, however often it changes).
    fn key(&self, id: &str) -> Arc<str> {
        self.jobs
            .get_key_value(id)
            .map_or_else(|| Arc::from(id), |(k, _)| k.clone())
    }

    /// Puts `held` under `id`, keeping the jobs per pool counted.
    fn put(&mut self, id: Arc<str>, held: Held) {
        count(&mut self.pool_jobs, held.pool());
        if let Some(old) = self.jobs.insert(id, held) {
            self.uncount(&old);
        }
    }

    fn uncount(&mut self, old: &Held) {
        if let Some(n) = self.pool_jobs.get_mut(old.pool()) {
            *n = n.saturating_sub(1);
        }
    }

    /// Counts the jobs per pool again (after a snapshot replaced the view).
    fn recount(&mut self) {
        self.pool_jobs.clear();
        for h in self.jobs.values() {
            count(&mut self.pool_jobs, h.pool());
        }
    }

    /// Every job, by id, as held.
    pub fn iter_held(&self) -> impl Iterator<Item = (&str, &Held)> {
        self.jobs.iter().map(|(k, h)| (&**k, h))
    }

    /// What a snapshot being written keeps of every job, in id order.
    pub fn kept(&self) -> Vec<Kept> {
        self.jobs
            .iter()
            .map(|(id, h)| Kept {
                id: id.clone(),
                def: h.def().clone(),
            })
            .collect()
    }

    /// The fired forms of the jobs of `shards` (held shards: shared, no
    /// copy), in id order.
    pub fn fired_in(&self, shards: &std::collections::BTreeSet<u32>) -> Vec<Arc<Fired>> {
        self.jobs
            .iter()
            .filter(|(id, _)| shards.contains(&crate::topology::shard_of(id, self.shards)))
            .filter_map(|(id, h)| h.fired(id))
            .collect()
    }

    /// Ends a replay: a snapshot still being read (its writer was still
    /// writing it when the replay reached its end) is dropped, with what
    /// was noted for it. The view already holds every record after the
    /// complete snapshot it started from; a running node reads only the
    /// heads of later snapshots, and would otherwise note every record
    /// for one that never completes here.
    pub fn end_replay(&mut self) {
        self.pending_snapshot = None;
    }

    /// Forgets the pools and label sets no job uses any more.
    pub fn prune(&mut self) {
        self.interner.prune();
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// This node now holds `shards`: their jobs become full (parsed, to be
    /// shared with their timers), returned by shard. One walk.
    pub fn hold(&mut self, shards: &[u32]) -> BTreeMap<u32, Vec<Arc<Fired>>> {
        let mut out: BTreeMap<u32, Vec<Arc<Fired>>> = BTreeMap::new();
        for &s in shards {
            if let Some(h) = self.held.get_mut(s as usize) {
                *h = true;
                out.insert(s, Vec::new());
            }
        }
        for (id, h) in &mut self.jobs {
            let Some(v) = out.get_mut(&crate::topology::shard_of(id, self.shards)) else {
                continue;
            };
            h.make_full(id);
            if let Held::Full(e) = h {
                v.push(e.clone());
            }
        }
        out
    }

    /// Marks `shards` held (or not): records applied from now on hold
    /// their jobs in the form that says; the jobs already there change form
    /// in [`RegistryView::convert_some`] walks (or [`RegistryView::hold`]).
    pub fn mark(&mut self, shards: &[u32], held: bool) {
        for &s in shards {
            if let Some(h) = self.held.get_mut(s as usize) {
                *h = held;
            }
        }
    }

    /// Puts up to `budget` jobs after `after` (from the first when `None`)
    /// in the form their shard's mark says: a held shard's compact jobs are
    /// parsed, a released shard's full ones encoded. Returns where to go on,
    /// `None` once the walk reached the end. A caller that must not block
    /// (the registry actor: heartbeats share its thread) walks in steps.
    pub fn convert_some(&mut self, after: Option<&str>, budget: usize) -> Option<Box<str>> {
        let from = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut last: Option<Box<str>> = None;
        for (seen, (id, h)) in self
            .jobs
            .range_mut::<str, _>((from, Bound::Unbounded))
            .enumerate()
        {
            if seen == budget {
                return last;
            }
            let s = crate::topology::shard_of(id, self.shards) as usize;
            let held = self.held.get(s).copied().unwrap_or(false);
            if held {
                h.make_full(id);
            } else {
                h.make_compact();
            }
            last = Some(Box::from(&**id));
        }
        None
    }

    /// How `s` is held here: full on a held shard, else compact.
    fn held_of(&mut self, id: &Arc<str>, s: StoredJob) -> Result<Held, String> {
        let c = self.interner.compact(&s)?;
        self.held_as(id, &s, c)
    }

    /// How `s`, already compact as `c`, is held here.
    fn held_as(&mut self, id: &Arc<str>, s: &StoredJob, c: Compact) -> Result<Held, String> {
        if self.is_held(id) {
            return Ok(Held::Full(Arc::new(Fired::of(id.clone(), s, &c)?)));
        }
        // Parsed once all the same: a definition whose zone or schedule no
        // longer reads is refused now, not when a node takes its shard.
        schedule_of(&s.job, s.created_at)?;
        Ok(Held::Compact(c))
    }

    /// One page of the jobs `filter` matches: the first `limit` by id
    /// among ids greater than `after`, sorted, and whether more follow. A
    /// walk of the sorted ids from `after`: a page costs what it holds plus
    /// the jobs the filter passes over (none decoded).
    pub fn list(
        &self,
        filter: &JobFilter,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<Arc<JobEntry>>, bool) {
        let from = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut it = self
            .jobs
            .range::<str, _>((from, Bound::Unbounded))
            .filter(|(id, h)| filter.matches_held(id, h));
        let page: Vec<Arc<JobEntry>> = it
            .by_ref()
            .take(limit)
            .filter_map(|(id, h)| h.entry(id).ok())
            .collect();
        let more = it.next().is_some();
        (page, more)
    }

    /// How many jobs `filter` matches (a walk over every job).
    pub fn count(&self, filter: &JobFilter) -> usize {
        if filter == &JobFilter::default() {
            return self.jobs.len();
        }
        self.jobs
            .iter()
            .filter(|(id, h)| filter.matches_held(id, h))
            .count()
    }

    /// Applies one record. Records that cannot be applied (a definition whose
    /// zone vanished) are reported as `Err` with the reason and skipped.
    pub fn apply(&mut self, record: &RegistryRecord) -> Result<Change, String> {
        self.apply_owned(record.clone())
    }

    /// As [`RegistryView::apply`], consuming the record: definitions move
    /// into the view instead of being copied (replay reads a million).
    pub fn apply_owned(&mut self, record: RegistryRecord) -> Result<Change, String> {
        self.note_after_snapshot(&record);
        Ok(match record {
            RegistryRecord::Upsert { job, created_at } => {
                let id = self.key(&job.id);
                let held = self
                    .held_of(&id, StoredJob::new(*job, created_at))
                    .map_err(|e| format!("job {id}: {e}"))?;
                self.put(id.clone(), held);
                Change::Upserted(id.to_string())
            }
            RegistryRecord::UpsertMany { jobs } => {
                let mut ids = Vec::with_capacity(jobs.len());
                for s in jobs {
                    let id = self.key(&s.job.id);
                    let held = self.held_of(&id, s).map_err(|e| format!("job {id}: {e}"))?;
                    self.put(id.clone(), held);
                    ids.push(id.to_string());
                }
                Change::UpsertedMany(ids)
            }
            RegistryRecord::Delete { id } => match self.jobs.remove(id.as_str()) {
                Some(old) => {
                    self.uncount(&old);
                    Change::Deleted(id)
                }
                None => Change::None,
            },
            RegistryRecord::Pause { id, reason, at, by } => {
                self.set_paused(&id, true, Some((reason, by)), at)?
            }
            RegistryRecord::Resume { id, at } => self.set_paused(&id, false, None, at)?,
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
    ) -> Result<Change, String> {
        let Some(h) = self.jobs.get_mut(id) else {
            return Ok(Change::None);
        };
        if h.paused() == paused {
            return Ok(Change::None);
        }
        let mut s = h.stored(id)?;
        let (reason, by) = reason.unwrap_or_default();
        // The interval it was paused, once resumed, when both ends are known
        // (alerts expect nothing of it). Not kept compact (nor in
        // snapshots): an alert check only reads the jobs of held shards.
        let last = match h {
            Held::Full(f) if paused => f.last_pause(),
            Held::Full(f) => f.paused_at().zip(at),
            Held::Compact(_) => None,
        };
        let at = if paused { at } else { None };
        s.paused = Some(paused);
        s.paused_reason = reason.clone();
        s.paused_at = at;
        s.paused_by = by.clone();
        let c = self.interner.compact(&s)?;
        *h = match h {
            // A new fired form: a shard may still hold the old one.
            Held::Full(f) => Held::Full(Arc::new(f.repaused(
                &c,
                PauseNote {
                    reason,
                    by,
                    at,
                    last,
                },
            ))),
            Held::Compact(_) => Held::Compact(c),
        };
        Ok(if paused {
            Change::Paused(id.to_string())
        } else {
            Change::Resumed(id.to_string())
        })
    }

    /// Notes what a record after a pending snapshot's first part changes:
    /// the snapshot describes the view at that part (docs/semantics.md §5).
    fn note_after_snapshot(&mut self, record: &RegistryRecord) {
        let Some(p) = self.pending_snapshot.as_mut() else {
            return;
        };
        match record {
            RegistryRecord::Upsert { job, .. } => {
                p.replaced.insert(job.id.as_str().into());
            }
            RegistryRecord::UpsertMany { jobs } => {
                p.replaced
                    .extend(jobs.iter().map(|s| Box::<str>::from(s.job.id.as_str())));
            }
            RegistryRecord::Delete { id } => {
                p.replaced.insert(id.as_str().into());
            }
            RegistryRecord::Pause { .. } | RegistryRecord::Resume { .. } => {
                p.pauses.push(record.clone());
            }
            RegistryRecord::Snapshot { .. }
            | RegistryRecord::Audit { .. }
            | RegistryRecord::Sync { .. } => {}
        }
    }

    /// Builds the snapshot's entries part by part (never holding all its
    /// definitions twice); a complete snapshot replaces the view as it was
    /// at the snapshot's first part, and what the log said since is
    /// applied again on top of it.
    fn snapshot_part(
        &mut self,
        sid: String,
        part: u32,
        parts: u32,
        jobs: Vec<StoredJob>,
    ) -> Result<Change, String> {
        let mut pending = match self.pending_snapshot.take() {
            Some(p) if p.id == sid && p.next == part => p,
            _ if part == 0 => Pending {
                id: sid,
                next: 0,
                jobs: BTreeMap::new(),
                replaced: std::collections::HashSet::new(),
                pauses: Vec::new(),
            },
            // A part out of order (a writer died mid-snapshot): ignore it.
            _ => return Ok(Change::None),
        };
        let fresh = &mut pending.jobs;
        for s in jobs {
            let def = compact::encode(&s)?;
            // An unchanged definition keeps its form (shared with a timer
            // shard, or its compact bytes): a snapshot does not double the
            // memory of a live node.
            let (id, held) = match self.jobs.get_key_value(s.job.id.as_str()) {
                Some((id, old))
                    if **old.def() == *def && matches!(old, Held::Full(_)) == self.is_held(id) =>
                {
                    (id.clone(), old.clone())
                }
                _ => {
                    let id = self.key(&s.job.id);
                    let c = self.interner.with_def(&s, def);
                    let held = self.held_as(&id, &s, c)?;
                    (id, held)
                }
            };
            fresh.insert(id, held);
        }
        if part + 1 < parts {
            pending.next = part + 1;
            self.pending_snapshot = Some(pending);
            return Ok(Change::None);
        }
        let Pending {
            jobs: mut fresh,
            replaced,
            pauses,
            ..
        } = pending;
        // A job upserted or deleted since the first part is as the view
        // holds it now (an upsert carries the whole definition), or gone.
        for id in &replaced {
            match self.jobs.remove_entry(&**id) {
                Some((k, h)) => fresh.insert(k, h),
                None => fresh.remove(&**id),
            };
        }
        self.jobs = fresh;
        // A pause or resume since then applies to the snapshot's entry (this
        // view may not have held the job when it read the record).
        for record in pauses {
            let (RegistryRecord::Pause { id, .. } | RegistryRecord::Resume { id, .. }) = &record
            else {
                continue;
            };
            if !replaced.contains(id.as_str()) {
                // Applied once already when it was read (a failure then was
                // reported then; here it can only repeat it).
                let _ = self.apply_owned(record);
            }
        }
        self.recount();
        self.interner.prune();
        Ok(Change::Reloaded)
    }
}

/// A snapshot being read: its id, the next part, the entries so far, and
/// what records after its first part changed (applied again on top of it
/// when it completes: a snapshot is written while commands go on).
#[derive(Debug)]
struct Pending {
    id: String,
    next: u32,
    jobs: BTreeMap<Arc<str>, Held>,
    /// Jobs upserted or deleted since the first part.
    replaced: std::collections::HashSet<Box<str>>,
    /// Pauses and resumes since the first part, in order.
    pauses: Vec<RegistryRecord>,
}

/// One more job in `pool` (its key allocated once per pool, not per job).
fn count(pool_jobs: &mut std::collections::HashMap<Box<str>, usize>, pool: &str) {
    match pool_jobs.get_mut(pool) {
        Some(n) => *n += 1,
        None => {
            pool_jobs.insert(pool.into(), 1);
        }
    }
}

/// The parsed schedule of `spec` (accepted at `created_at`).
fn schedule_of(spec: &JobSpec, created_at: DateTime<Utc>) -> Result<Schedule, String> {
    let tz = parse_zone(&spec.timezone).map_err(|e| e.to_string())?;
    let anchor = spec.start_at.unwrap_or(created_at);
    Schedule::parse(&spec.schedule, tz, anchor).map_err(|e| e.to_string())
}

/// One part of a snapshot as the registry stream holds it (a
/// [`RegistryRecord::Snapshot`]), written from what the snapshot kept. Every
/// definition is written whole, its defaults included, however it is held:
/// the stream is the durable contract, and a later release's defaults must
/// not change a stored job (ADR 0024).
pub fn snapshot_part(
    snapshot_id: &str,
    part: u32,
    parts: u32,
    kept: &[Kept],
) -> Result<crate::codec::Encoded, String> {
    let record = RegistryRecord::Snapshot {
        snapshot_id: snapshot_id.to_string(),
        part,
        parts,
        jobs: kept.iter().map(Kept::stored).collect::<Result<_, _>>()?,
    };
    crate::codec::encode(&record).map_err(|e| e.to_string())
}
