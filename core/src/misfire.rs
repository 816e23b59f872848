//! Misfires: occurrences that fell due while nobody was firing them (the
//! scheduler was down, the job paused, a shard changing owner), and the
//! deterministic jitter of a fire.

use chrono::{DateTime, Duration, Utc};

use crate::{
    job::{Misfire, MisfirePolicy},
    registry::Fired,
    topology::shard_of,
};

/// Occurrences enumerated at most when planning one job's misfires; beyond
/// this (an every-second job down for 11 days) the oldest are counted as
/// skipped without being listed.
const MAX_ENUMERATED: usize = 1_000_000;

/// What to do with the occurrences in `(from, now]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MisfirePlan {
    /// Occurrences to fire now, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Occurrences not fired (policy or grace), oldest first, for logs.
    pub skipped: Vec<DateTime<Utc>>,
    /// Skipped occurrences not listed in `skipped` (beyond the enumeration cap).
    pub skipped_unlisted: u64,
}

impl MisfirePlan {
    pub fn skipped_count(&self) -> u64 {
        self.skipped.len() as u64 + self.skipped_unlisted
    }
}

/// Most occurrences re-fired for one job after the scheduler could not
/// deliver them while it was running (a broker outage): an every-second job
/// and a 27-hour outage. Older ones are skipped and counted.
pub const MAX_UNDELIVERED: u32 = 100_000;

/// Applies the job's misfire policy to its occurrences in `(from, now]`:
/// occurrences that fell due while no scheduler was running.
pub fn plan(job: &Fired, from: DateTime<Utc>, now: DateTime<Utc>) -> MisfirePlan {
    plan_with(job, &job.misfire(), from, now)
}

/// Every occurrence in `(from, now]` (at most [`MAX_UNDELIVERED`]): those that
/// fell due while this scheduler was running but could not publish them. The
/// misfire policy is for downtime, not for a broker that was briefly away.
pub fn undelivered(job: &Fired, from: DateTime<Utc>, now: DateTime<Utc>) -> MisfirePlan {
    let all = MisfirePolicy {
        policy: Misfire::CatchUp,
        grace: job.misfire().grace,
        max_catch_up: MAX_UNDELIVERED,
    };
    plan_with(job, &all, from, now)
}

fn plan_with(
    job: &Fired,
    policy: &MisfirePolicy,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> MisfirePlan {
    let mut missed = std::collections::VecDeque::new();
    let mut unlisted = 0u64;
    let mut t = from;
    while let Some(at) = job.next_after(t) {
        if at > now {
            break;
        }
        if missed.len() == MAX_ENUMERATED {
            missed.pop_front();
            unlisted += 1;
        }
        missed.push_back(at);
        t = at;
    }
    apply_policy(policy, missed.into(), unlisted, now)
}

fn apply_policy(
    p: &MisfirePolicy,
    mut missed: Vec<DateTime<Utc>>,
    unlisted: u64,
    now: DateTime<Utc>,
) -> MisfirePlan {
    let grace = Duration::from_std(p.grace.get()).unwrap_or(Duration::MAX);
    match p.policy {
        Misfire::Skip => MisfirePlan {
            fire: Vec::new(),
            skipped: missed,
            skipped_unlisted: unlisted,
        },
        Misfire::FireOnce => {
            // The latest missed occurrence fires if it is within grace;
            // every other one (and a latest one past grace) is skipped.
            let fire = match missed.last() {
                Some(latest) if now - *latest <= grace => missed.pop().into_iter().collect(),
                _ => Vec::new(),
            };
            MisfirePlan {
                fire,
                skipped: missed,
                skipped_unlisted: unlisted,
            }
        }
        Misfire::CatchUp => {
            let keep = usize::try_from(p.max_catch_up).unwrap_or(usize::MAX);
            let cut = missed.len().saturating_sub(keep);
            let fire = missed.split_off(cut);
            MisfirePlan {
                fire,
                skipped: missed,
                skipped_unlisted: unlisted,
            }
        }
    }
}

/// A fire's jitter: `fnv1a64(fire_id) mod max`, so the same occurrence always
/// gets the same delay (a re-fire after failover lands at the same time).
pub fn jitter(fire_id: &str, max: std::time::Duration) -> std::time::Duration {
    let max_ms = u32::try_from(max.as_millis()).unwrap_or(u32::MAX);
    if max_ms == 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_millis(u64::from(shard_of(fire_id, max_ms)))
}
