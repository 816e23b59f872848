//! The fire ledger: for a window, the fire ids the schedules say must fire,
//! compared with the fire ids observed (run events), reporting missing and
//! duplicate ones. How fault tests and operators judge "nothing lost".

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{fire_id::FireId, registry::Fired};

/// Whether occurrence `at` of `job` was due, the one rule for what should
/// have fired (the ledger, and alerts): not before the job existed
/// (`created_at`), not before its `start_at`, not at or after its `end_at`,
/// and not while it is paused (a job paused at `paused_at` owed what came
/// before; paused with no known instant, nothing), nor within its last
/// pause once resumed (`last_pause`). A deleted job is not in the
/// registry, so none of its occurrences is due.
pub fn due(job: &Fired, at: DateTime<Utc>) -> bool {
    if at < job.created_at()
        || job.start_at().is_some_and(|s| at < s)
        || job.end_at().is_some_and(|e| at >= e)
        || job.last_pause().is_some_and(|(p, r)| p <= at && at < r)
    {
        return false;
    }
    if job.paused() {
        return job.paused_at().is_some_and(|p| at < p);
    }
    true
}

/// Every occurrence of `jobs` in `(from, to]` that was [`due`], as fire ids.
pub fn expected(jobs: &[Fired], from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for j in jobs {
        // Occurrences before creation are not walked at all.
        let mut t = from.max(j.created_at() - chrono::Duration::milliseconds(1));
        while let Some(at) = j.next_after(t) {
            if at > to || (j.paused() && !due(j, at)) {
                break;
            }
            if due(j, at) {
                out.insert(FireId::new(j.id(), at).to_string());
            }
            t = at;
        }
    }
    out
}

/// Expected vs observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ledger {
    pub expected: usize,
    pub observed: usize,
    /// Expected, never observed.
    pub missing: Vec<String>,
    /// Observed more than once, with the count.
    pub duplicates: BTreeMap<String, u32>,
    /// Observed but not expected in the window (manual triggers, misfire
    /// catch-ups of earlier occurrences).
    pub unexpected: Vec<String>,
    /// Workflows: the step fires that should have run given the outcomes
    /// recorded ([`steps`]), over every observed occurrence.
    #[serde(default)]
    pub steps_expected: usize,
    /// Of those, the ones no worker reported.
    #[serde(default)]
    pub steps_missing: Vec<String>,
}

/// The step fires of one workflow occurrence that should have run given
/// the outcomes recorded, and which of them no worker reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StepLedger {
    pub expected: Vec<String>,
    pub missing: Vec<String>,
}

/// For occurrence `occurrence` of a workflow of `steps`, given the records
/// of its step fires as `(fire id, kind)`: a step should have run once a
/// worker reported it, or when [`crate::job::workflow::next`] starts it given
/// what the steps before it did; each of its fires (every shard; for an
/// every-worker step, every worker it was fired to) should then be
/// reported. `fired` and `skipped` records are the scheduler's (and a
/// worker's duplicate), not a run. After the occurrence's own `cancelled`
/// record no step is due any more: only those that ran are expected.
pub fn steps<'a>(
    steps: &[crate::job::workflow::StepSpec],
    occurrence: &str,
    records: impl IntoIterator<Item = (&'a str, crate::protocol::run::RunKind)>,
) -> StepLedger {
    use crate::job::workflow::{next, Fan, Progress, StepState};
    use crate::protocol::run::RunKind;
    let mut progress = Progress::default();
    let mut ran: BTreeSet<&str> = BTreeSet::new();
    // Every-worker steps: the workers each was fired to.
    let mut fired_to: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut cancelled = false;
    for (fire_id, kind) in records {
        let Some(fire) = FireId::split_step(fire_id) else {
            cancelled |= fire_id == occurrence && kind == RunKind::Cancelled;
            continue;
        };
        if let Some(w) = fire.worker {
            fired_to.entry(fire.step).or_default().insert(w);
        }
        if matches!(kind, RunKind::Fired | RunKind::Skipped) {
            continue;
        }
        progress.record_fire(&fire, kind);
        ran.insert(fire_id);
    }
    let states = progress.states(steps);
    let due_now = if cancelled {
        Vec::new()
    } else {
        next(steps, &states).start
    };
    let mut out = StepLedger::default();
    for (i, st) in steps.iter().enumerate() {
        if states[i] == StepState::Waiting && !due_now.contains(&i) {
            continue;
        }
        let ids: Vec<String> = if st.every_worker() {
            let workers = fired_to.get(st.id.as_str());
            let on: Vec<String> = workers
                .into_iter()
                .flatten()
                .map(|w| FireId::for_worker(occurrence, &st.id, w).to_string())
                .collect();
            // Fired to no worker: the step itself is what ran (or died).
            if on.is_empty() {
                vec![FireId::for_step(occurrence, &st.id, None).to_string()]
            } else {
                on
            }
        } else {
            st.fans()
                .into_iter()
                .map(|fan| {
                    let shard = match fan {
                        Fan::Shard(k, n) => Some((k, n)),
                        _ => None,
                    };
                    FireId::for_step(occurrence, &st.id, shard).to_string()
                })
                .collect()
        };
        for id in ids {
            if !ran.contains(id.as_str()) {
                out.missing.push(id.clone());
            }
            out.expected.push(id);
        }
    }
    out
}
impl Ledger {
    /// Compares; `observed` may hold repeats (that is what duplicates are).
    pub fn compare<'a>(
        expected: &BTreeSet<String>,
        observed: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for id in observed {
            *counts.entry(id.to_string()).or_default() += 1;
        }
        Self {
            expected: expected.len(),
            observed: counts.len(),
            missing: expected
                .iter()
                .filter(|e| !counts.contains_key(*e))
                .cloned()
                .collect(),
            duplicates: counts
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
            unexpected: counts
                .keys()
                .filter(|k| !expected.contains(*k))
                .cloned()
                .collect(),
            steps_expected: 0,
            steps_missing: Vec::new(),
        }
    }
}
