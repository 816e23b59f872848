//! Validation of a `JobSpec`: every rule names the field and says what it
//! expected, e.g. `retry.max_attempts: must be 1..=100, got 0`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Executor, JobSpec};
use crate::{
    error::{ScheduleError, ValidationError},
    schedule::{parse_zone, Schedule},
};

/// Longest id: fits a routing-key segment with room for the pool and kind.
pub(crate) const MAX_ID_LEN: usize = 128;
const MAX_POOL_LEN: usize = 64;
const MAX_ATTEMPTS: u32 = 100;
const MAX_BACKOFF_STEPS: usize = 16;
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);
const MAX_JITTER: Duration = Duration::from_secs(3600);
/// Bounds of a job's `sla`: below a second no scheduler can tell; beyond
/// six hours, the window schedulers keep of every occurrence for alerts
/// (ADR 0021).
const MIN_SLA: Duration = Duration::from_secs(1);
const MAX_SLA: Duration = Duration::from_secs(6 * 3600);
const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_CATCH_UP: u32 = 10_000;
const MAX_LABELS: usize = 64;
/// Pool names that other queues already use (`sundial.dead.control`).
const RESERVED_POOLS: &[&str] = &["control"];

fn err(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

/// `[a-z0-9._-]{1,max}`.
fn check_name(
    field: &str,
    value: &str,
    max: usize,
    allow_dot: bool,
) -> Result<(), ValidationError> {
    let ok_char = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '_'
            || c == '-'
            || (allow_dot && c == '.')
    };
    let chars = if allow_dot {
        "[a-z0-9._-]"
    } else {
        "[a-z0-9_-]"
    };
    if value.is_empty() || value.len() > max || !value.chars().all(ok_char) {
        return Err(err(
            field,
            format!(
                "must match {chars}{{1,{max}}}, got \"{}\"",
                crate::wire::headers::bounded_to(value, 80)
            ),
        ));
    }
    Ok(())
}

/// Checks a job id as an upsert does (`[a-z0-9._-]{1,128}`): ids reach the
/// broker inside routing keys, which AMQP bounds at 255 bytes.
pub fn check_job_id(field: &str, id: &str) -> Result<(), ValidationError> {
    check_name(field, id, MAX_ID_LEN, true)
}

/// Checks a worker id (`[A-Za-z0-9._-]{1,64}`, a host name fits): it
/// names the worker's own queue (`sundial.work.{pool}.@{worker}`) and ends
/// the fire ids of `every-worker` steps.
pub fn check_worker_id(field: &str, id: &str) -> Result<(), ValidationError> {
    if crate::fire_id::is_worker_id(id) {
        Ok(())
    } else {
        Err(err(
            field,
            format!(
                "must match [A-Za-z0-9._-]{{1,64}}, got \"{}\"",
                crate::wire::headers::bounded_to(id, 80)
            ),
        ))
    }
}

/// Checks a pool name as an upsert does (`[a-z0-9_-]{1,64}`): pools reach
/// the broker in queue names and routing keys (255 bytes at most), so every
/// pool that comes from outside (a command, a fire, an API path, a CLI
/// argument) is checked before it is used in one.
pub fn check_pool(field: &str, pool: &str) -> Result<(), ValidationError> {
    check_name(field, pool, MAX_POOL_LEN, false)?;
    if RESERVED_POOLS.contains(&pool) {
        return Err(err(field, format!("\"{pool}\" is reserved")));
    }
    Ok(())
}

fn check_range(
    field: &str,
    d: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ValidationError> {
    if d < min || d > max {
        return Err(err(
            field,
            format!(
                "must be between {} and {}, got {}",
                humantime::format_duration(min),
                humantime::format_duration(max),
                humantime::format_duration(d)
            ),
        ));
    }
    Ok(())
}

impl JobSpec {
    /// What is valid but will not do what it says, one line each naming the
    /// field: a `timeout` past the broker's `consumer_timeout` (a longer run
    /// is redelivered and runs twice), a `retry.backoff` delay shorter than
    /// the shortest retry tier (the retry waits for the tier).
    pub fn advisories(
        &self,
        consumer_timeout: Duration,
        retry_tiers: &[crate::HumanDuration],
    ) -> Vec<String> {
        let mut out = Vec::new();
        if self.timeout.get() > consumer_timeout {
            out.push(format!(
                "timeout: {} exceeds the broker's consumer_timeout ({}): a run that long is redelivered and runs twice; raise consumer_timeout in rabbitmq.conf and worker.consumer_timeout",
                self.timeout,
                crate::HumanDuration(consumer_timeout)
            ));
        }
        if self.retry.max_attempts > 1 {
            for (i, d) in self.retry.backoff.iter().enumerate() {
                if let Some(tier) = crate::backoff::tier_for(d.get(), retry_tiers) {
                    if tier.get() > d.get() {
                        out.push(format!(
                            "retry.backoff[{i}]: {d} is shorter than the shortest retry tier that fits ({tier}): the retry waits {tier} (topology.retry_tiers)"
                        ));
                    }
                }
            }
        }
        out
    }

    /// Checks every rule and returns the parsed schedule. `created_at` anchors
    /// `@every` when there is no `start_at`; `now` is when the definition is
    /// submitted (an expression that never fires after `now` is refused).
    pub fn validate(
        &self,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Schedule, ValidationError> {
        check_job_id("id", &self.id)?;
        check_pool("pool", &self.pool)?;
        let tz = parse_zone(&self.timezone).map_err(|e| err("timezone", e.to_string()))?;
        check_range(
            "timeout",
            self.timeout.get(),
            Duration::from_secs(1),
            MAX_TIMEOUT,
        )?;
        validate_retry(&self.retry, "")?;
        let m = &self.misfire;
        check_range("misfire.grace", m.grace.get(), Duration::ZERO, MAX_GRACE)?;
        if !(1..=MAX_CATCH_UP).contains(&m.max_catch_up) {
            return Err(err(
                "misfire.max_catch_up",
                format!("must be 1..={MAX_CATCH_UP}, got {}", m.max_catch_up),
            ));
        }
        if let Some(j) = self.jitter {
            check_range("jitter", j.get(), Duration::ZERO, MAX_JITTER)?;
        }
        if let Some(s) = self.sla {
            check_range("sla", s.get(), MIN_SLA, MAX_SLA)?;
        }
        if let (Some(s), Some(e)) = (self.start_at, self.end_at) {
            if e <= s {
                return Err(err("end_at", "must be after start_at"));
            }
        }
        self.validate_labels()?;
        self.validate_work()?;

        let anchor = self.start_at.unwrap_or(created_at);
        let schedule = Schedule::parse(&self.schedule, tz, anchor).map_err(schedule_err)?;
        // The first instant that may fire: not before start_at, not before now.
        let from = self.start_at.map_or(now, |s| s.max(now));
        let first = schedule
            .next_after(from - chrono::Duration::milliseconds(1))
            .filter(|o| self.end_at.is_none_or(|e| o.at < e));
        if first.is_none() {
            return Err(schedule_err(ScheduleError::NeverFires {
                expr: self.schedule.clone(),
                after: from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }));
        }
        Ok(schedule)
    }

    /// What the job runs: one `executor` (perhaps fanned out), or `steps`.
    fn validate_work(&self) -> Result<(), ValidationError> {
        match (&self.executor, self.steps.is_empty()) {
            (Some(e), true) => validate_executor(e, "executor")?,
            (None, false) => {
                if self.fanout.is_some() {
                    return Err(err(
                        "fanout",
                        "a job with steps fans out per step: put fanout on the steps",
                    ));
                }
                super::workflow::check(&self.steps, "")?;
                for (i, st) in self.steps.iter().enumerate() {
                    let at = format!("steps[{i}]");
                    validate_executor(&st.executor, &format!("{at}.executor"))?;
                    if let Some(t) = st.timeout {
                        check_range(
                            &format!("{at}.timeout"),
                            t.get(),
                            Duration::from_secs(1),
                            MAX_TIMEOUT,
                        )?;
                    }
                    if let Some(r) = &st.retry {
                        validate_retry(r, &format!("{at}."))?;
                    }
                    if let Some(p) = &st.pool {
                        check_pool(&format!("{at}.pool"), p)?;
                    }
                    if let Some(f) = st.fanout {
                        check_fanout(&format!("{at}.fanout"), f)?;
                    }
                }
            }
            (Some(_), false) => {
                return Err(err(
                    "executor",
                    "a job has one executor or steps (each with its own), not both",
                ))
            }
            (None, true) => {
                return Err(err(
                    "executor",
                    "missing: a job runs one executor, or steps",
                ))
            }
        }
        if let Some(f) = self.fanout {
            check_fanout("fanout", f)?;
        }
        if self.workflow().is_some() && self.overlap == super::Overlap::Replace {
            return Err(err(
                "overlap",
                "\"replace\" is not available for workflows (steps or fanout): use \"forbid\" or \"allow\"",
            ));
        }
        Ok(())
    }

    fn validate_labels(&self) -> Result<(), ValidationError> {
        if self.labels.len() > MAX_LABELS {
            return Err(err(
                "labels",
                format!("at most {MAX_LABELS} labels, got {}", self.labels.len()),
            ));
        }
        for (k, v) in &self.labels {
            check_name(&format!("labels.{k}"), k, 63, true)?;
            if v.len() > 256 {
                return Err(err(
                    format!("labels.{k}"),
                    "value must be at most 256 bytes",
                ));
            }
        }
        Ok(())
    }
}

/// `prefix` is empty for the job's own retry, `steps[i].` for a step's.
fn validate_retry(r: &super::RetryPolicy, prefix: &str) -> Result<(), ValidationError> {
    if !(1..=MAX_ATTEMPTS).contains(&r.max_attempts) {
        return Err(err(
            format!("{prefix}retry.max_attempts"),
            format!("must be 1..={MAX_ATTEMPTS}, got {}", r.max_attempts),
        ));
    }
    if r.max_attempts > 1 && r.backoff.is_empty() {
        return Err(err(
            format!("{prefix}retry.backoff"),
            "must list at least one delay when max_attempts > 1",
        ));
    }
    if r.backoff.len() > MAX_BACKOFF_STEPS {
        return Err(err(
            format!("{prefix}retry.backoff"),
            format!(
                "must list at most {MAX_BACKOFF_STEPS} delays, got {}",
                r.backoff.len()
            ),
        ));
    }
    for (i, d) in r.backoff.iter().enumerate() {
        check_range(
            &format!("{prefix}retry.backoff[{i}]"),
            d.get(),
            Duration::from_secs(1),
            MAX_BACKOFF,
        )?;
        if d.get().subsec_nanos() != 0 {
            return Err(err(
                format!("{prefix}retry.backoff[{i}]"),
                "must be a whole number of seconds",
            ));
        }
    }
    Ok(())
}

/// N shards: 1 to [`MAX_SHARDS`](super::workflow::MAX_SHARDS).
fn check_fanout(field: &str, f: super::workflow::Fanout) -> Result<(), ValidationError> {
    if let Some(n) = f.shards() {
        if !(1..=super::workflow::MAX_SHARDS).contains(&n) {
            return Err(err(
                format!("{field}.shards"),
                format!("must be 1..={}, got {n}", super::workflow::MAX_SHARDS),
            ));
        }
    }
    Ok(())
}

fn schedule_err(e: ScheduleError) -> ValidationError {
    match e {
        ScheduleError::UnknownZone(_) => err("timezone", e.to_string()),
        _ => err("schedule", e.to_string()),
    }
}

/// A publish executor's exchange and routing key fit an AMQP short string
/// (255 bytes): checked at upsert and again on every fire a worker takes.
pub(crate) fn check_publish_names(
    p: &super::PublishExecutor,
    at: &str,
) -> Result<(), ValidationError> {
    for (field, value) in [
        (format!("{at}.exchange"), &p.exchange),
        (format!("{at}.routing_key"), &p.routing_key),
    ] {
        if value.len() > 255 {
            return Err(err(
                field,
                format!("must be at most 255 bytes, got {}", value.len()),
            ));
        }
    }
    Ok(())
}

/// `at` is where the executor is (`executor`, `steps[2].executor`).
fn validate_executor(e: &Executor, at: &str) -> Result<(), ValidationError> {
    let field = |name: &str| format!("{at}.{name}");
    match e {
        Executor::Noop => Ok(()),
        Executor::Shell(s) => {
            let Some(program) = s.command.first() else {
                return Err(err(
                    field("command"),
                    "must name a program: [\"/path/to/program\", args...]",
                ));
            };
            if !program.starts_with('/') {
                return Err(err(field("command"),
                    format!("program must be an absolute path (workers allow-list paths), got \"{program}\""),
                ));
            }
            if let Some(cwd) = &s.cwd {
                if !cwd.starts_with('/') {
                    return Err(err(field("cwd"), "must be an absolute path"));
                }
            }
            Ok(())
        }
        Executor::Http(h) => {
            const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
            if !METHODS.contains(&h.method.as_str()) {
                return Err(err(
                    field("method"),
                    format!(
                        "must be one of {}, got \"{}\"",
                        METHODS.join(", "),
                        h.method
                    ),
                ));
            }
            let rest = h
                .url
                .strip_prefix("https://")
                .or_else(|| h.url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err(err(
                    field("url"),
                    format!(
                        "must be an http:// or https:// URL with a host, got \"{}\"",
                        h.url
                    ),
                ));
            }
            if let Some(bad) = h.expect.iter().find(|s| !(100..=599).contains(*s)) {
                return Err(err(
                    field("expect"),
                    format!("statuses must be 100-599, got {bad}"),
                ));
            }
            Ok(())
        }
        Executor::Publish(p) => {
            check_publish_names(p, at)?;
            if p.exchange.starts_with("amq.") {
                return Err(err(field("exchange"), "must not be an amq.* exchange"));
            }
            Ok(())
        }
        Executor::Handler { name } => {
            if name.is_empty() || name.len() > 128 {
                return Err(err(field("name"), "must be 1-128 bytes"));
            }
            Ok(())
        }
    }
}
