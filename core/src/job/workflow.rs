//! Workflows (issue 24, ADR 0020): the steps of one occurrence, which wait
//! for each other, checked when a job is written ([`check`]) and advanced
//! by a pure decision ([`next`]) over the outcomes so far — the function
//! the scheduler owning the job's shard applies to what the history stream
//! says, so a new owner after a takeover decides the same.
//!
//! A job has steps (`JobSpec::steps`), or one executor fanned out
//! (`JobSpec::fanout`: a workflow of one step, [`MAIN_STEP`]). Where an
//! occurrence stands is kept by [`Progress`], fed the run records of its
//! step fires: the same records give the same progress on any scheduler.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Executor, RetryPolicy};
use crate::{error::ValidationError, HumanDuration};

/// Longest step id (it ends every fire id of the step: `{job}@{instant}/{step}`).
pub const MAX_STEP_ID_LEN: usize = 64;
/// Most steps one job may have.
pub const MAX_STEPS: usize = 100;
/// Most shards one step may fan out to.
pub const MAX_SHARDS: u32 = 1000;
/// The step id of a job with one executor and a `fanout`.
pub const MAIN_STEP: &str = "main";

/// How many fires one step is: `{ shards = N }` (N fires, each told its
/// index and N), or `"every-worker"` (one per live worker of the pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FanoutForm", into = "FanoutForm")]
pub enum Fanout {
    Shards(u32),
    EveryWorker,
}

impl Fanout {
    /// The fires of a step with this fan-out (every-worker: unknown here).
    pub fn shards(self) -> Option<u32> {
        match self {
            Fanout::Shards(n) => Some(n),
            Fanout::EveryWorker => None,
        }
    }
}

/// `{ "shards": N }` or `"every-worker"`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Fanout {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "shards",
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1))
                            .maximum(Some(MAX_SHARDS)),
                    )
                    .required("shards"),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["every-worker"])),
            )
            .description(Some(
                "N fires, each told its index (`{ \"shards\": 8 }`), or one fire on every live worker of the pool (`\"every-worker\"`)",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Fanout {}

/// How `fanout` is written: a table or a word.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum FanoutForm {
    Shards { shards: u32 },
    Word(String),
}

impl TryFrom<FanoutForm> for Fanout {
    type Error = String;
    fn try_from(f: FanoutForm) -> Result<Self, String> {
        match f {
            FanoutForm::Shards { shards } => Ok(Fanout::Shards(shards)),
            FanoutForm::Word(w) if w == "every-worker" => Ok(Fanout::EveryWorker),
            FanoutForm::Word(w) => Err(format!(
                "expected {{ shards = N }} or \"every-worker\", got \"{w}\""
            )),
        }
    }
}

impl From<Fanout> for FanoutForm {
    fn from(f: Fanout) -> Self {
        match f {
            Fanout::Shards(shards) => FanoutForm::Shards { shards },
            Fanout::EveryWorker => FanoutForm::Word("every-worker".into()),
        }
    }
}

/// When a step runs, given how the steps it waits for ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// One fire (absent), N shards, or one per worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<Fanout>,
}

/// One fire of a step: the step's only one, shard `k` of `n`, or the one
/// on a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fan<'a> {
    One,
    Shard(u32, u32),
    Worker(&'a str),
}

impl StepSpec {
    /// Its fires per occurrence, as far as the definition says: one, or
    /// each of `n` shards; none for `every-worker` (its set is the pool's
    /// live workers at fire time, recorded then).
    pub fn fans(&self) -> Vec<Fan<'static>> {
        match self.fanout {
            Some(Fanout::Shards(n)) => (0..n).map(|k| Fan::Shard(k, n)).collect(),
            Some(Fanout::EveryWorker) => Vec::new(),
            None => vec![Fan::One],
        }
    }

    /// Whether it runs once on every live worker of its pool.
    pub fn every_worker(&self) -> bool {
        self.fanout == Some(Fanout::EveryWorker)
    }
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
    /// A client cancelled it (`cancel`): what had not started never does.
    Cancelled,
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
    let base = if path.is_empty() {
        "steps".to_string()
    } else {
        format!("{path}.steps")
    };
    let at = |i: usize| format!("{base}[{i}]");
    if steps.is_empty() {
        return Err(ValidationError::new(
            base.clone(),
            "a workflow has at least one step",
        ));
    }
    if steps.len() > MAX_STEPS {
        return Err(ValidationError::new(
            base.clone(),
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

/// What a run record says of a step's fire (the history's `RunKind`, as
/// far as a workflow cares; `protocol::run` converts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Published by a scheduler (`fired`).
    Published,
    /// Started, or failed with a retry to come.
    Running,
    Succeeded,
    Dead,
    /// A worker's duplicate (`skipped`): changes nothing.
    Duplicate,
}

/// How one fire of a step stands, from its run records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FireState {
    /// No record yet.
    #[default]
    Unknown,
    /// Published (`fired`), started, or failed with a retry to come.
    Running,
    Succeeded,
    Dead,
}

impl FireState {
    /// The state after a record of `kind`: a success is final; a dead fire
    /// only changes by succeeding (a replay that succeeded counts); a
    /// worker's `skipped` (a duplicate delivery) changes nothing.
    fn after(self, seen: Seen) -> Self {
        match (self, seen) {
            (FireState::Succeeded, _) => FireState::Succeeded,
            (_, Seen::Succeeded) => FireState::Succeeded,
            (_, Seen::Dead) => FireState::Dead,
            (FireState::Dead, _) => FireState::Dead,
            (s, Seen::Duplicate) => s,
            (_, Seen::Published | Seen::Running) => FireState::Running,
        }
    }
}

/// What the history says of one step of an occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StepProgress {
    /// By shard index (0 for a step of one fire).
    fires: BTreeMap<u32, FireState>,
    /// By worker, for an every-worker step.
    workers: BTreeMap<String, FireState>,
    /// Published: by the one applying the decision, or seen in a record.
    published: bool,
    /// Published by the one applying the decision here (every fire of it):
    /// a step seen published by another (an owner before a takeover) may
    /// lack fires it never got to publish, which [`Progress::advance`]
    /// publishes again.
    ours: bool,
    /// Its skip is in the history already.
    skip_recorded: bool,
}

/// Where one workflow occurrence stands, built from the run records of its
/// step fires (and the records it writes itself: published steps, skips,
/// its ending), so that any scheduler reading the same history holds the
/// same progress and makes the same [`Progress::advance`]. Keyed by step
/// id, read against the job's steps when deciding (a definition changed
/// mid-occurrence is read as it is now).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    steps: BTreeMap<String, StepProgress>,
    /// The ending recorded in the history, if any.
    recorded: Option<Ending>,
}

/// The reason recorded on the steps a cancellation leaves unstarted, and
/// given to the workers asked to stop its running step fires.
pub const CANCELLED: &str = "occurrence cancelled";

/// What to do now for one occurrence: steps to publish (by index into the
/// steps, their fires not yet published), skips not yet recorded, and the
/// ending when it is newly reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advance {
    pub start: Vec<usize>,
    /// Fires of steps started elsewhere that no record mentions, as (step,
    /// shard index): published again (with the same ids).
    pub resume: Vec<(usize, u32)>,
    pub skip: Vec<(usize, String)>,
    pub ended: Option<Ending>,
}

impl Progress {
    /// A run record of `step`'s fire `shard` (0 for one fire).
    pub fn record(&mut self, step: &str, shard: u32, kind: impl Into<Seen>) {
        let seen = kind.into();
        let p = self.steps.entry(step.to_string()).or_default();
        let f = p.fires.entry(shard).or_default();
        *f = f.after(seen);
        if seen != Seen::Duplicate {
            p.published = true;
        }
    }

    /// A run record of the step fire `fire` (a step's fire id split).
    pub fn record_fire(&mut self, fire: &crate::fire_id::StepRef<'_>, kind: impl Into<Seen>) {
        let seen = kind.into();
        match fire.worker {
            None => self.record(fire.step, fire.shard.map_or(0, |(k, _)| k), seen),
            Some(w) => {
                let p = self.steps.entry(fire.step.to_string()).or_default();
                let f = p.workers.entry(w.to_string()).or_default();
                *f = f.after(seen);
                if seen != Seen::Duplicate {
                    p.published = true;
                }
            }
        }
    }

    /// The every-worker step `step` is being fired to `workers` (by the one
    /// applying the decision). Its set is known from now on, before the
    /// `fired` records come back through the history: a quick worker's
    /// success read first must not end the step as if it were the only one.
    pub fn fired_on(&mut self, step: &str, workers: &[String]) {
        let p = self.steps.entry(step.to_string()).or_default();
        for w in workers {
            let f = p.workers.entry(w.clone()).or_default();
            *f = f.after(Seen::Published);
        }
        p.published = true;
    }

    /// The fires of every-worker steps not ended, as (step, worker): the
    /// owner ends those whose worker went away.
    pub fn on_workers(&self) -> Vec<(&str, &str)> {
        self.steps
            .iter()
            .flat_map(|(id, p)| {
                p.workers
                    .iter()
                    .filter(|(_, f)| matches!(f, FireState::Running | FireState::Unknown))
                    .map(move |(w, _)| (id.as_str(), w.as_str()))
            })
            .collect()
    }

    /// `step` was recorded as skipped by the workflow (not a worker's
    /// duplicate): its skip is not written again.
    pub fn skip_recorded(&mut self, step: &str) {
        self.steps
            .entry(step.to_string())
            .or_default()
            .skip_recorded = true;
    }

    /// The occurrence's ending was recorded (its own `succeeded` or `dead`).
    pub fn ending_recorded(&mut self, ending: Ending) {
        self.recorded = Some(ending);
    }

    /// The ending recorded in the history, if any (a replay that succeeds
    /// may lead [`Progress::advance`] to record another, except after a
    /// cancellation).
    pub fn ended(&self) -> Option<Ending> {
        self.recorded
    }

    /// The occurrence was cancelled (its `cancelled` record): unless it
    /// had ended already, it ends so, for good, and [`Progress::advance`]
    /// only skips the steps not yet started. Returns whether it changed
    /// anything.
    pub fn cancel(&mut self) -> bool {
        if self.recorded.is_some() {
            return false;
        }
        self.recorded = Some(Ending::Cancelled);
        true
    }

    /// Each step's state for [`next`]: waiting until published; then
    /// running until every one of its fires ended; dead if one died.
    pub fn states(&self, steps: &[StepSpec]) -> Vec<StepState> {
        steps
            .iter()
            .map(|s| {
                let Some(p) = self.steps.get(&s.id).filter(|p| p.published) else {
                    return StepState::Waiting;
                };
                let fires: Vec<FireState> = if s.every_worker() {
                    // The set is what was recorded (fired, or dead for want
                    // of any worker); none yet: just published.
                    let all: Vec<FireState> = p
                        .workers
                        .values()
                        .chain(p.fires.values())
                        .copied()
                        .collect();
                    if all.is_empty() {
                        return StepState::Running;
                    }
                    all
                } else {
                    let n = s.fanout.and_then(Fanout::shards).unwrap_or(1);
                    (0..n)
                        .map(|k| p.fires.get(&k).copied().unwrap_or_default())
                        .collect()
                };
                if fires.iter().all(|f| *f == FireState::Succeeded) {
                    StepState::Succeeded
                } else if fires
                    .iter()
                    .all(|f| matches!(f, FireState::Succeeded | FireState::Dead))
                {
                    StepState::Dead
                } else {
                    StepState::Running
                }
            })
            .collect()
    }

    /// Applies [`next`] to the states: marks what starts as published (the
    /// caller publishes it now), returns the skips not yet recorded and the
    /// ending when it differs from the recorded one (marking both as
    /// recorded: the caller records them now).
    pub fn advance(&mut self, steps: &[StepSpec]) -> Advance {
        let mut out = Advance::default();
        if self.recorded == Some(Ending::Cancelled) {
            // Nothing starts or resumes; what never started is skipped.
            for (i, st) in steps.iter().enumerate() {
                let p = self.steps.entry(st.id.clone()).or_default();
                if !p.published && !p.skip_recorded {
                    p.skip_recorded = true;
                    out.skip.push((i, CANCELLED.to_string()));
                }
            }
            return out;
        }
        let d = next(steps, &self.states(steps));
        for (i, st) in steps.iter().enumerate() {
            let Some(p) = self.steps.get_mut(&st.id) else {
                continue;
            };
            if !p.published || p.ours {
                continue;
            }
            p.ours = true;
            if let Some(n) = st.fanout.and_then(Fanout::shards) {
                out.resume
                    .extend((0..n).filter(|k| !p.fires.contains_key(k)).map(|k| (i, k)));
            }
        }
        for i in d.start {
            let p = self.steps.entry(steps[i].id.clone()).or_default();
            p.published = true;
            p.ours = true;
            out.start.push(i);
        }
        for (i, st) in d.skip {
            let p = self.steps.entry(steps[i].id.clone()).or_default();
            if !p.skip_recorded {
                p.skip_recorded = true;
                if let StepState::Skipped { reason, .. } = st {
                    out.skip.push((i, reason));
                }
            }
        }
        if d.ended.is_some() && d.ended != self.recorded {
            self.recorded = d.ended;
            out.ended = d.ended;
        }
        out
    }

    /// How many fires of the occurrence are recorded, by state (for views).
    pub fn fires(&self) -> impl Iterator<Item = (&str, u32, FireState)> {
        self.steps
            .iter()
            .flat_map(|(id, p)| p.fires.iter().map(move |(k, f)| (id.as_str(), *k, *f)))
    }
}
