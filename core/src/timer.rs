//! One timer shard's state, without I/O and without a clock: the deadline
//! queue, the fires handed to the broker and not yet confirmed, and the
//! watermark. The `ShardActor` actor feeds it `now` and the broker's
//! answers, and does the publishing it asks for (mini-redis's `Db` under its
//! `Listener`).
//!
//! The promise it keeps: the watermark never passes a fire that was handed
//! to the broker and not confirmed, nor an armed fire held back by jitter;
//! everything at or before it was fired (docs/semantics.md §2).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use chrono::{DateTime, Duration, Utc};

use crate::{
    misfire::{self, MisfirePlan},
    registry::Fired,
    FireId,
};

/// One millisecond: the watermark stays this far below an unconfirmed fire.
const EPS: Duration = Duration::milliseconds(1);

/// An occurrence to publish now.
#[derive(Debug, Clone)]
pub struct DueFire {
    pub job: Arc<Fired>,
    /// The occurrence (its fire id's instant).
    pub scheduled: DateTime<Utc>,
    /// Its planned send time (scheduled + jitter) when it came off the
    /// deadline queue; `None` for a missed occurrence fired late.
    pub due: Option<DateTime<Utc>>,
}

/// Missed occurrences a policy did not fire, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub job_id: String,
    /// The job's pool (of the records that say so).
    pub pool: String,
    /// The policy that skipped them (`fire-once`, `skip`, `catch-up`,
    /// `undelivered`).
    pub policy: &'static str,
    pub at: Vec<DateTime<Utc>>,
    /// Skipped beyond what is listed.
    pub unlisted: u64,
    /// While the job was paused (not expected: no alert), rather than while
    /// no scheduler could fire it (missed).
    pub paused: bool,
}

/// What a change asks of the actor: publish `fire` (in order), report
/// `skipped`.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    pub fire: Vec<DueFire>,
    pub skipped: Vec<Skipped>,
}

impl Actions {
    fn missed(&mut self, job: &Arc<Fired>, plan: MisfirePlan, policy: &'static str, paused: bool) {
        let MisfirePlan {
            fire,
            skipped,
            skipped_unlisted,
        } = plan;
        if !skipped.is_empty() || skipped_unlisted > 0 {
            self.skipped.push(Skipped {
                job_id: job.id().to_string(),
                pool: job.pool().to_string(),
                policy,
                at: skipped,
                unlisted: skipped_unlisted,
                paused,
            });
        }
        self.fire.extend(fire.into_iter().map(|scheduled| DueFire {
            job: job.clone(),
            scheduled,
            due: None,
        }));
    }
}

/// A job of the shard as a key: hashed, compared and ordered by its id, so
/// the entry itself keys the map and the deadline queue (no second copy of
/// the id per job: ADR 0024's bytes per fired job).
#[derive(Debug, Clone)]
struct ById(Arc<Fired>);

impl ById {
    fn id(&self) -> &str {
        self.0.id()
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for ById {}

impl std::hash::Hash for ById {
    /// As `str` hashes (the map is searched by `&str`).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id().cmp(other.id())
    }
}

impl std::borrow::Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.id()
    }
}

/// A job's armed fire `(send_at, scheduled)`, if any.
type Armed = Option<(DateTime<Utc>, DateTime<Utc>)>;

/// A shard's deadlines, in-flight fires and watermark.
#[derive(Debug)]
pub struct ShardTimer {
    /// The shard's jobs (the newest entry of each) and their armed fires.
    jobs: HashMap<ById, Armed>,
    /// Armed fires, earliest first: `(send_at, job)` (the entry it was
    /// armed with: a job is found again by its id).
    deadlines: BTreeSet<(DateTime<Utc>, ById)>,
    /// Armed fires whose send time is later than their occurrence (jitter),
    /// by occurrence: they hold the watermark back until sent.
    jittered: BTreeMap<DateTime<Utc>, usize>,
    /// Handed to the broker, not yet confirmed (or set aside), by occurrence.
    in_flight: BTreeMap<DateTime<Utc>, usize>,
    /// Every fire with `send_at ≤ cursor` has been handed to the broker.
    cursor: DateTime<Utc>,
    /// The last watermark confirmed written.
    written: Option<DateTime<Utc>>,
    /// When each paused job was paused (here), for its misfire policy on
    /// resume.
    paused_at: HashMap<String, DateTime<Utc>>,
    /// Whether [`ShardTimer::load`] ran (before it, the cursor is the floor
    /// the misfire policies start from).
    loaded: bool,
    /// Set by [`ShardTimer::flush`]: nothing more is fired or advanced.
    flushing: bool,
}

impl ShardTimer {
    /// A shard whose previous owner's watermark was `floor`.
    pub fn new(floor: DateTime<Utc>) -> Self {
        Self {
            jobs: HashMap::new(),
            deadlines: BTreeSet::new(),
            jittered: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            cursor: floor,
            written: None,
            paused_at: HashMap::new(),
            loaded: false,
            flushing: false,
        }
    }

    /// Takes the shard's jobs at start. Occurrences in `(floor, alive_since]`
    /// were missed with no scheduler running: each job's misfire policy
    /// decides. Those in `(alive_since, now]` fell due while this process
    /// ran but could not publish (a broker outage): all are fired.
    pub fn load(
        &mut self,
        jobs: Vec<Arc<Fired>>,
        alive_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Actions {
        let floor = self.cursor;
        let down_until = alive_since.clamp(floor, now);
        let mut actions = Actions::default();
        for job in jobs {
            self.put(job.clone());
            if job.paused() {
                continue;
            }
            if floor < down_until {
                let plan = misfire::plan(&job, floor, down_until);
                actions.missed(&job, plan, job.misfire().policy.as_str(), false);
            }
            if down_until < now {
                let plan = misfire::undelivered(&job, down_until, now);
                actions.missed(&job, plan, "undelivered", false);
            }
            self.arm_after(&job, now.max(floor));
        }
        self.cursor = now.max(floor);
        self.loaded = true;
        actions
    }

    /// A new or changed definition. It is armed from the cursor, not from
    /// `now`: an occurrence that fell due and was not fired yet (the wake-up
    /// is a few milliseconds late, or the change arrived just after the
    /// instant) is kept and fires at once; never one before the job existed.
    pub fn upsert(&mut self, job: Arc<Fired>, now: DateTime<Utc>) {
        self.put(job.clone());
        if job.paused() {
            self.paused_at.entry(job.id().to_string()).or_insert(now);
        }
        let from = if self.loaded {
            self.cursor.max(job.created_at()).min(now)
        } else {
            now
        };
        self.arm_after(&job, from);
    }

    pub fn delete(&mut self, id: &str) {
        self.disarm(id);
        self.jobs.remove(id);
        self.paused_at.remove(id);
    }

    pub fn pause(&mut self, id: &str, now: DateTime<Utc>) {
        self.disarm(id);
        if let Some((ById(job), armed)) = self.jobs.remove_entry(id) {
            self.jobs
                .insert(ById(Arc::new(job.with_paused(true))), armed);
        }
        self.paused_at.insert(id.to_string(), now);
    }

    /// A resumed job: its misfire policy decides about the paused interval.
    pub fn resume(&mut self, job: Arc<Fired>, now: DateTime<Utc>) -> Actions {
        let id = job.id().to_string();
        self.put(job.clone());
        let from = self.paused_at.remove(&id).unwrap_or(self.cursor);
        let mut actions = Actions::default();
        actions.missed(
            &job,
            misfire::plan(&job, from, now),
            job.misfire().policy.as_str(),
            true,
        );
        self.arm_after(&job, now);
        actions
    }

    /// Pops every fire whose send time has come, re-arming each job at its
    /// next occurrence (computed from the schedule, never by adding
    /// intervals). Nothing while flushing.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<DueFire> {
        let mut out = Vec::new();
        if self.flushing {
            return out;
        }
        while let Some((send_at, id)) = self.deadlines.first().cloned() {
            if send_at > now {
                break;
            }
            let Some((ById(job), armed)) = self.jobs.get_key_value(id.id()) else {
                self.deadlines.remove(&(send_at, id));
                continue;
            };
            let job = job.clone();
            let scheduled = armed.map_or(send_at, |(_, s)| s);
            self.disarm(id.id());
            out.push(DueFire {
                job: job.clone(),
                scheduled,
                due: Some(send_at),
            });
            self.arm_after(&job, scheduled);
        }
        self.cursor = self.cursor.max(now);
        out
    }

    /// When the next fire is due (`None`: nothing armed, or flushing).
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        if self.flushing {
            return None;
        }
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// The fire of occurrence `scheduled` was handed to the broker.
    pub fn sent(&mut self, scheduled: DateTime<Utc>) {
        *self.in_flight.entry(scheduled).or_default() += 1;
    }

    /// The broker confirmed it (or it was set aside, or could not be sent):
    /// it no longer holds the watermark.
    pub fn settled(&mut self, scheduled: DateTime<Utc>) {
        dec(&mut self.in_flight, scheduled);
    }

    /// Everything due at or before this instant is confirmed.
    pub fn watermark(&self) -> DateTime<Utc> {
        let mut w = self.cursor;
        if let Some((t, _)) = self.in_flight.first_key_value() {
            w = w.min(*t - EPS);
        }
        if let Some((t, _)) = self.jittered.first_key_value() {
            w = w.min(*t - EPS);
        }
        w
    }

    /// The periodic watermark tick: time passes on a shard with nothing due
    /// too (everything due up to now, or up to the head if its wake-up is
    /// pending, was handed to the broker). The watermark to write, if it
    /// moved past the last one written.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.loaded && !self.flushing {
            let bound = match self.deadlines.first() {
                Some((at, _)) if *at <= now => *at - EPS,
                _ => now,
            };
            self.cursor = self.cursor.max(bound);
        }
        let up_to = self.watermark();
        self.written.is_none_or(|w| w < up_to).then_some(up_to)
    }

    /// The broker confirmed the watermark `up_to`.
    pub fn written(&mut self, up_to: DateTime<Utc>) {
        self.written = Some(self.written.map_or(up_to, |w| w.max(up_to)));
    }

    /// Stops firing (handover or shutdown); the final watermark is
    /// [`ShardTimer::watermark`] once [`ShardTimer::drained`] (or a
    /// deadline).
    pub fn flush(&mut self) {
        self.flushing = true;
    }

    pub fn flushing(&self) -> bool {
        self.flushing
    }

    /// No fire waits for its confirm.
    pub fn drained(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Fires waiting for their confirm.
    pub fn unconfirmed(&self) -> usize {
        self.in_flight.values().sum()
    }

    /// Stores (or replaces) a job's entry, keeping its armed fire.
    fn put(&mut self, job: Arc<Fired>) {
        let armed = self.jobs.remove(job.id()).flatten();
        self.jobs.insert(ById(job), armed);
    }

    fn disarm(&mut self, id: &str) {
        let Some((key, armed)) = self.jobs.get_key_value(id) else {
            return;
        };
        let Some((send_at, scheduled)) = *armed else {
            return;
        };
        let key = key.clone();
        self.deadlines.remove(&(send_at, key));
        if let Some(armed) = self.jobs.get_mut(id) {
            *armed = None;
        }
        if send_at != scheduled {
            dec(&mut self.jittered, scheduled);
        }
    }

    /// Arms `job`'s first occurrence strictly after `after`.
    fn arm_after(&mut self, job: &Fired, after: DateTime<Utc>) {
        self.disarm(job.id());
        let Some(key) = self.jobs.get_key_value(job.id()).map(|(k, _)| k.clone()) else {
            return;
        };
        if job.paused() {
            return;
        }
        let Some(scheduled) = job.next_after(after) else {
            return;
        };
        let jitter = job
            .jitter()
            .map(|j| misfire::jitter(FireId::new(job.id(), scheduled).as_str(), j.get()))
            .unwrap_or_default();
        let send_at = scheduled + Duration::from_std(jitter).unwrap_or_default();
        if send_at != scheduled {
            *self.jittered.entry(scheduled).or_default() += 1;
        }
        if let Some(armed) = self.jobs.get_mut(key.id()) {
            *armed = Some((send_at, scheduled));
        }
        self.deadlines.insert((send_at, key));
    }
}

fn dec(map: &mut BTreeMap<DateTime<Utc>, usize>, key: DateTime<Utc>) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}
