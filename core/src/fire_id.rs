//! The idempotency key of a fire: `"{job_id}@{scheduled_instant_utc}"`, the
//! scheduled instant in RFC 3339 UTC with milliseconds
//! (`nightly-backup@2026-03-08T07:00:00.000Z`). Deterministic, so a re-fire of
//! the same occurrence (after a failover) carries the same id.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FireId(String);

impl FireId {
    pub fn new(job_id: &str, scheduled: DateTime<Utc>) -> Self {
        Self(format!(
            "{job_id}@{}",
            scheduled.to_rfc3339_opts(SecondsFormat::Millis, true)
        ))
    }

    /// A manual `trigger` is not a scheduled occurrence: its id names the
    /// trigger instant with a `trigger:` marker so it never collides with one.
    pub fn for_trigger(job_id: &str, at: DateTime<Utc>) -> Self {
        Self(format!(
            "{job_id}@trigger:{}",
            at.to_rfc3339_opts(SecondsFormat::Millis, true)
        ))
    }

    /// A `backfill` fires a past occurrence again, outside the watermark's
    /// order: `backfill:` marks it so it never collides with the scheduled
    /// fire of the same occurrence (which may have run), while a repeated
    /// backfill of the same window carries the same ids (workers skip
    /// duplicates).
    pub fn for_backfill(job_id: &str, scheduled: DateTime<Utc>) -> Self {
        Self(format!(
            "{job_id}@backfill:{}",
            scheduled.to_rfc3339_opts(SecondsFormat::Millis, true)
        ))
    }

    /// Splits into `(job_id, instant)`; `None` for trigger ids and garbage.
    /// A step's fire id gives its occurrence's.
    pub fn parse(s: &str) -> Option<(&str, DateTime<Utc>)> {
        let occurrence = Self::split_step(s).map_or(s, |r| r.occurrence);
        let (job, at) = occurrence.rsplit_once('@')?;
        let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
        Some((job, at))
    }

    /// The fire of step `step` of the workflow occurrence `occurrence`
    /// (`{occurrence}/{step}`), or of its shard `k` of `n`
    /// (`{occurrence}/{step}#{k}/{n}`, `k` from 0): the same on every
    /// scheduler, so a step published twice carries one id (issue 24, ADR
    /// 0020).
    pub fn for_step(occurrence: &str, step: &str, shard: Option<(u32, u32)>) -> Self {
        match shard {
            None => Self(format!("{occurrence}/{step}")),
            Some((k, n)) => Self(format!("{occurrence}/{step}#{k}/{n}")),
        }
    }

    /// The fire of step `step` of occurrence `occurrence` on worker
    /// `worker` (`fanout = "every-worker"`): `{occurrence}/{step}@{worker}`.
    pub fn for_worker(occurrence: &str, step: &str, worker: &str) -> Self {
        Self(format!("{occurrence}/{step}@{worker}"))
    }

    /// Splits a step's fire id into its parts; `None` for a fire id of no
    /// step. Job ids, instants and step ids hold no `/`, so the first `/`
    /// after the `@` starts the step; a step id holds no `@` or `#`, so
    /// what follows one of them is the worker or the shard.
    pub fn split_step(s: &str) -> Option<StepRef<'_>> {
        let at = s.find('@')?;
        let slash = at + s[at..].find('/')?;
        let (occurrence, rest) = (&s[..slash], &s[slash + 1..]);
        if let Some((step, worker)) = rest.split_once('@') {
            let ok = !step.is_empty() && !step.contains(['/', '#']) && is_worker_id(worker);
            return ok.then_some(StepRef {
                occurrence,
                step,
                shard: None,
                worker: Some(worker),
            });
        }
        let (step, shard) = match rest.split_once('#') {
            None => (rest, None),
            Some((step, kn)) => {
                let (k, n) = kn.split_once('/')?;
                let (k, n) = (k.parse::<u32>().ok()?, n.parse::<u32>().ok()?);
                if k >= n {
                    return None;
                }
                (step, Some((k, n)))
            }
        };
        (!step.is_empty() && !step.contains('/')).then_some(StepRef {
            occurrence,
            step,
            shard,
            worker: None,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `id` is a worker id: `[A-Za-z0-9._-]{1,64}` (it names the
/// worker's own queue and ends the fire ids of every-worker steps).
pub fn is_worker_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The parts of a step's fire id ([`FireId::split_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRef<'a> {
    /// The occurrence's fire id (`job@instant`).
    pub occurrence: &'a str,
    pub step: &'a str,
    /// `(k, n)`: shard `k` (from 0) of `n`.
    pub shard: Option<(u32, u32)>,
    /// The worker it runs on (`fanout = "every-worker"`).
    pub worker: Option<&'a str>,
}

impl fmt::Display for FireId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<FireId> for String {
    fn from(id: FireId) -> Self {
        id.0
    }
}
