//! `JobSpec`: a job definition as users write it (TOML or JSON; README
//! "Defining jobs", docs/protocol.md §4), and its validation. The field
//! names are a user-facing contract: renaming a Rust field must never rename
//! a file key (serde names are explicit where they differ).

mod executor;
mod file;
pub(crate) mod validate;
pub mod workflow;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

pub use executor::{Executor, HttpExecutor, PublishExecutor, ShellExecutor};
pub use file::{parse_job_file, FileFormat};
pub use validate::{check_job_id, check_pool, check_worker_id};

/// One job definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobSpec {
    /// `[a-z0-9._-]{1,128}`; the registry key and the first half of every fire id.
    pub id: String,
    /// Cron expression, `@every <duration>` or `@at <RFC 3339>`.
    pub schedule: String,
    /// IANA zone the cron expression is read in.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Worker pool whose queues receive this job's fires.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// Longest a single attempt may run before the worker kills it.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub overlap: Overlap,
    /// Any JSON value, handed to the executor.
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What one fire runs; absent for a workflow (`steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Executor>,
    /// A workflow: steps that wait for each other (issue 24, ADR 0020),
    /// instead of one `executor`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<workflow::StepSpec>,
    /// Fan-out of the job's one executor: `{ shards = N }` (a workflow of
    /// one step, `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<workflow::Fanout>,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub misfire: MisfirePolicy,
    /// Random delay in `[0, jitter)`, deterministic per fire id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<HumanDuration>,
    /// An occurrence not succeeded this long after its scheduled instant
    /// raises a `late` alert (docs/semantics.md §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<HumanDuration>,
    /// No occurrence before this instant; also the `@every` anchor.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant")]
    pub start_at: Option<DateTime<Utc>>,
    /// No occurrence at or after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant")]
    pub end_at: Option<DateTime<Utc>>,
    /// A paused job fires nothing until resumed.
    #[serde(default)]
    pub paused: bool,
}

impl JobSpec {
    /// The steps of a workflow job (its `steps`, or the one step `main` of
    /// a job with `fanout`); `None` for a job of one executor and one fire.
    pub fn workflow(&self) -> Option<std::borrow::Cow<'_, [workflow::StepSpec]>> {
        if !self.steps.is_empty() {
            return Some(std::borrow::Cow::Borrowed(&self.steps));
        }
        let fanout = self.fanout?;
        Some(std::borrow::Cow::Owned(vec![workflow::StepSpec {
            id: workflow::MAIN_STEP.to_string(),
            executor: self.executor.clone().unwrap_or(Executor::Noop),
            timeout: None,
            retry: None,
            pool: None,
            after: Vec::new(),
            when: workflow::When::Success,
            fanout: Some(fanout),
        }]))
    }

    /// Every pool this job's fires go to: its own and its steps'.
    pub fn pools(&self) -> impl Iterator<Item = (String, &str)> {
        std::iter::once(("pool".to_string(), self.pool.as_str())).chain(
            self.steps
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.pool.as_deref().map(|p| (format!("steps[{i}].pool"), p))),
        )
    }
}

/// What to do when a fire is due while the previous run of the job still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// Run concurrently (Kubernetes CronJob's default `Allow`).
    #[default]
    Allow,
    /// Skip the new fire while a run is in progress; counted.
    Forbid,
    /// Cancel the running attempt and start the new one.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before attempt n+1 is `backoff[min(n-1, len-1)]`; each distinct
    /// delay is one retry tier queue.
    #[serde(default = "default_backoff")]
    pub backoff: Vec<HumanDuration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            backoff: default_backoff(),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Option<HumanDuration> {
        let idx = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff
            .get(idx)
            .or_else(|| self.backoff.last())
            .copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Misfire {
    /// One fire for the latest missed occurrence, if within `grace`.
    #[default]
    FireOnce,
    /// Missed occurrences are counted and logged, not fired.
    Skip,
    /// Every missed occurrence, oldest first, at most `max_catch_up`.
    CatchUp,
}

impl Misfire {
    /// The name used in job files and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::FireOnce => "fire-once",
            Misfire::Skip => "skip",
            Misfire::CatchUp => "catch-up",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MisfirePolicy {
    #[serde(default)]
    pub policy: Misfire,
    #[serde(default = "default_grace")]
    pub grace: HumanDuration,
    #[serde(default = "default_max_catch_up")]
    pub max_catch_up: u32,
}

impl Default for MisfirePolicy {
    fn default() -> Self {
        Self {
            policy: Misfire::default(),
            grace: default_grace(),
            max_catch_up: default_max_catch_up(),
        }
    }
}

pub const DEFAULT_POOL: &str = "default";

fn default_timezone() -> String {
    "UTC".to_string()
}
fn default_pool() -> String {
    DEFAULT_POOL.to_string()
}
/// 20 minutes: below RabbitMQ's default `consumer_timeout` (30 minutes),
/// with room to settle the outcome, so a default job never outlives its
/// delivery (a longer one would be redelivered and run twice).
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(20 * 60)
}
fn default_max_attempts() -> u32 {
    3
}
fn default_backoff() -> Vec<HumanDuration> {
    vec![HumanDuration::from_secs(10), HumanDuration::from_secs(60)]
}
fn default_grace() -> HumanDuration {
    HumanDuration::from_secs(600)
}
fn default_max_catch_up() -> u32 {
    100
}

/// Optional instants written as RFC 3339 strings, or as TOML's native
/// offset date-times (`start_at = 2026-12-01T03:00:00Z`, unquoted).
mod instant {
    use chrono::{DateTime, Utc};
    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Toml(toml::value::Datetime),
    }

    pub(super) fn serialize<S: Serializer>(
        v: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        let Some(raw) = Option::<Raw>::deserialize(d)? else {
            return Ok(None);
        };
        let text = match raw {
            Raw::Text(s) => s,
            Raw::Toml(dt) => dt.to_string(),
        };
        DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                D::Error::custom(format!(
                    "expected an RFC 3339 instant with an offset, such as 2026-12-01T03:00:00Z, got \"{text}\" ({e})"
                ))
            })
    }
}
