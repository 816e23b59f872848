//! Workflows (issue 24, ADR 0020): the steps of one occurrence, which wait
//! for each other, checked when a job is written ([`check`]) and advanced
//! by a pure decision ([`next`]) over the outcomes so far — the function
//! the scheduler owning the job's shard applies to what the history stream
//! says, so a new owner after a takeover decides the same.
//!
//! Not yet part of `JobSpec`: the definitions, their checks and the
//! decision come first, with their table tests; firing, the history
//! records and the API follow.

use serde::{Deserialize, Serialize};

use crate::{
    error::ValidationError,
    job::{Executor, RetryPolicy},
    HumanDuration,
};

/// Longest step id (it ends every fire id of the step: `{job}@{instant}/{step}`).
pub const MAX_STEP_ID_LEN: usize = 64;
/// Most steps one job may have.
pub const MAX_STEPS: usize = 100;

/// When a step runs, given how the steps it waits for ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    /// Every step it waits for succeeded (the default).
    #[default]
    Success,
    /// One of them failed (ended dead, or was skipped because something
    /// before it failed): cleanup and notification steps.
    Failure,
    /// They all ended, however.
    Done,
}

/// One step of a workflow job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// `[a-z0-9_-]{1,64}`, unique in the job.
    pub id: String,
    pub executor: Executor,
    /// The job's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The steps this one waits for (none: it starts with the occurrence).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    #[serde(default)]
    pub when: When,
}

/// Where a step of one occurrence stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    /// Not started: waiting for the steps before it.
    Waiting,
    /// Published, not ended.
    Running,
    Succeeded,
    /// Failed for good (its retries spent), dead-lettered.
    Dead,
    /// Will not run; `failure` says whether because something before it
    /// failed (which a `when = "failure"` step after it counts as a failure).
    Skipped {
        reason: String,
        failure: bool,
    },
}

impl StepState {
    fn ended(&self) -> bool {
        matches!(
            self,
            StepState::Succeeded | StepState::Dead | StepState::Skipped { .. }
        )
    }

    fn failed(&self) -> bool {
        matches!(
            self,
            StepState::Dead | StepState::Skipped { failure: true, .. }
        )
    }
}

/// How a whole occurrence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    /// No step failed (steps skipped by their `when` do not count).
    Succeeded,
    /// Some step ended dead.
    Failed,
}

/// What to do now for one occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Steps to publish now (indexes into the steps).
    pub start: Vec<usize>,
    /// Steps that will never run, with why.
    pub skip: Vec<(usize, StepState)>,
    /// Set once every step has ended.
    pub ended: Option<Ending>,
}

/// Checks `steps` as an upsert does: ids valid and unique, every `after`
/// names a step, no cycle, no step that could never run. Errors name the
/// path under `path` (`jobs[3].steps[2].after[0]`).
pub fn check(steps: &[StepSpec], path: &str) -> Result<(), ValidationError> {
    let at = |i: usize| format!("{path}.steps[{i}]");
    if steps.is_empty() {
        return Err(ValidationError::new(
            format!("{path}.steps"),
            "a workflow has at least one step",
        ));
    }
    if steps.len() > MAX_STEPS {
        return Err(ValidationError::new(
            format!("{path}.steps"),
            format!("{} steps: at most {MAX_STEPS}", steps.len()),
        ));
    }
    for (i, s) in steps.iter().enumerate() {
        let ok = !s.id.is_empty()
            && s.id.len() <= MAX_STEP_ID_LEN
            && s.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(ValidationError::new(
                format!("{}.id", at(i)),
                format!("must match [a-z0-9_-]{{1,{MAX_STEP_ID_LEN}}}"),
            ));
        }
        if let Some(j) = steps[..i].iter().position(|o| o.id == s.id) {
            return Err(ValidationError::new(
                format!("{}.id", at(i)),
                format!("\"{}\" is also steps[{j}]", s.id),
            ));
        }
    }
    let index = |id: &str| steps.iter().position(|s| s.id == id);
    for (i, s) in steps.iter().enumerate() {
        for (k, a) in s.after.iter().enumerate() {
            match index(a) {
                None => {
                    return Err(ValidationError::new(
                        format!("{}.after[{k}]", at(i)),
                        format!("no step \"{a}\" in this job"),
                    ))
                }
                Some(j) if j == i => {
                    return Err(ValidationError::new(
                        format!("{}.after[{k}]", at(i)),
                        "a step cannot wait for itself",
                    ))
                }
                Some(_) if s.after[..k].contains(a) => {
                    return Err(ValidationError::new(
                        format!("{}.after[{k}]", at(i)),
                        format!("\"{a}\" is named twice"),
                    ))
                }
                Some(_) => {}
            }
        }
        if s.when == When::Failure && s.after.is_empty() {
            return Err(ValidationError::new(
                format!("{}.when", at(i)),
                "a \"failure\" step waits for the steps whose failure it handles (after = [...]): with none it could never run",
            ));
        }
    }
    if let Some(cycle) = find_cycle(steps) {
        let (i, k) = cycle.edge;
        let names: Vec<&str> = cycle.path.iter().map(|&n| steps[n].id.as_str()).collect();
        return Err(ValidationError::new(
            format!("{}.after[{k}]", at(i)),
            format!(
                "steps wait for each other in a cycle: {}",
                names.join(" → ")
            ),
        ));
    }
    Ok(())
}

/// A cycle: the steps on it (first repeated last), and one edge of it as
/// (step, index into its `after`).
struct Cycle {
    path: Vec<usize>,
    edge: (usize, usize),
}

/// Depth-first search over `after` edges.
fn find_cycle(steps: &[StepSpec]) -> Option<Cycle> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: usize,
        steps: &[StepSpec],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Cycle> {
        marks[n] = Mark::Open;
        stack.push(n);
        for (k, a) in steps[n].after.iter().enumerate() {
            let Some(m) = steps.iter().position(|s| &s.id == a) else {
                continue;
            };
            match marks[m] {
                Mark::Open => {
                    let from = stack.iter().position(|&x| x == m).unwrap_or(0);
                    let mut path: Vec<usize> = stack[from..].to_vec();
                    path.push(m);
                    return Some(Cycle { path, edge: (n, k) });
                }
                Mark::New => {
                    if let Some(c) = visit(m, steps, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[n] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; steps.len()];
    let mut stack = Vec::new();
    (0..steps.len()).find_map(|n| {
        if marks[n] == Mark::New {
            visit(n, steps, &mut marks, &mut stack)
        } else {
            None
        }
    })
}

/// What is due now for an occurrence whose steps stand at `states` (one
/// per step, same order; `steps` already [`check`]ed): the waiting steps
/// whose predecessors have all ended start or are skipped by their `when`
/// (a skip can end what the next step waits for: skips are followed to
/// the end); once nothing waits or runs, how the occurrence ended. Pure:
/// the same outcomes give the same decision on any scheduler.
pub fn next(steps: &[StepSpec], states: &[StepState]) -> Decision {
    let mut decision = Decision::default();
    let mut now: Vec<StepState> = states.to_vec();
    loop {
        let mut skipped = false;
        for (i, s) in steps.iter().enumerate() {
            if now.get(i) != Some(&StepState::Waiting) || decision.start.contains(&i) {
                continue;
            }
            let before: Vec<(&str, &StepState)> = s
                .after
                .iter()
                .filter_map(|a| {
                    let j = steps.iter().position(|x| &x.id == a)?;
                    now.get(j).map(|st| (a.as_str(), st))
                })
                .collect();
            if !before.iter().all(|(_, st)| st.ended()) {
                continue;
            }
            let failed = before.iter().any(|(_, st)| st.failed());
            let not_succeeded: Vec<&str> = before
                .iter()
                .filter(|(_, st)| **st != StepState::Succeeded)
                .map(|(id, _)| *id)
                .collect();
            let skip = match s.when {
                When::Done => None,
                When::Success if not_succeeded.is_empty() => None,
                When::Success => Some(StepState::Skipped {
                    reason: format!("{} did not succeed", not_succeeded.join(", ")),
                    failure: failed,
                }),
                When::Failure if failed => None,
                When::Failure => Some(StepState::Skipped {
                    reason: "nothing it waits for failed".into(),
                    failure: false,
                }),
            };
            match skip {
                None => decision.start.push(i),
                Some(st) => {
                    decision.skip.push((i, st.clone()));
                    now[i] = st;
                    skipped = true;
                }
            }
        }
        if !skipped {
            break;
        }
    }
    let open = !decision.start.is_empty()
        || now
            .iter()
            .any(|st| matches!(st, StepState::Waiting | StepState::Running));
    if !open {
        decision.ended = Some(if now.contains(&StepState::Dead) {
            Ending::Failed
        } else {
            Ending::Succeeded
        });
    }
    decision
}
