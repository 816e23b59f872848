//! Fire events (timer → `sundial.fire` → worker) and shard watermarks. These
//! are the hot path, so their primary format is bincode; they also read and
//! write JSON for tools and non-Rust consumers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Format, Message, MIB};
use crate::{
    duration::HumanDuration,
    job::{Executor, Overlap, RetryPolicy},
};

/// One occurrence of a job, with the job snapshot a worker needs to run it
/// without asking anyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FireEvent {
    /// `{job_id}@{scheduled_instant_utc}`; also the AMQP `message_id`.
    pub fire_id: String,
    pub job_id: String,
    pub pool: String,
    pub shard: u32,
    /// Owner epoch of the shard when fired; bumps on every handover.
    pub epoch: u64,
    /// The occurrence's instant (before jitter).
    pub scheduled_at: DateTime<Utc>,
    /// When the timer handed it to the broker.
    pub fired_at: DateTime<Utc>,
    /// 1 for the first attempt; retries republish with `attempt + 1`.
    pub attempt: u32,
    /// True for a manual `trigger`, outside the schedule.
    pub manual: bool,
    pub executor: Executor,
    #[serde(with = "json_value")]
    pub payload: serde_json::Value,
    pub timeout: HumanDuration,
    pub retry: RetryPolicy,
    pub overlap: Overlap,
    /// First failed attempt's time, carried across retries for the dead letter.
    pub first_failure: Option<DateTime<Utc>>,
    /// HMAC over the event when fire signing is on (operations issue).
    pub signature: Option<String>,
}

/// Where a fire comes from: a timer shard's occurrence, or a manual trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Occurrence `scheduled` of the job, fired by shard `shard`'s owner at
    /// `epoch`.
    Scheduled {
        scheduled: DateTime<Utc>,
        shard: u32,
        epoch: u64,
    },
    /// `trigger` at `now`: its own fire id, epoch 0 (no shard owner is
    /// involved).
    Manual { shard: u32 },
    /// `backfill` of occurrence `scheduled`: manual, epoch 0, its own id.
    Backfill {
        scheduled: DateTime<Utc>,
        shard: u32,
    },
}

impl Origin {
    /// The occurrence it makes of job `job_id` at `now`: its fire id, its
    /// instant, the job's shard, the owner epoch and whether it is manual.
    pub fn occurrence(
        self,
        job_id: &str,
        now: DateTime<Utc>,
    ) -> (crate::FireId, DateTime<Utc>, u32, u64, bool) {
        match self {
            Origin::Scheduled {
                scheduled,
                shard,
                epoch,
            } => (
                crate::FireId::new(job_id, scheduled),
                scheduled,
                shard,
                epoch,
                false,
            ),
            Origin::Manual { shard } => {
                (crate::FireId::for_trigger(job_id, now), now, shard, 0, true)
            }
            Origin::Backfill { scheduled, shard } => (
                crate::FireId::for_backfill(job_id, scheduled),
                scheduled,
                shard,
                0,
                true,
            ),
        }
    }
}

impl FireEvent {
    /// Checks the names a worker puts on the broker (routing keys of its
    /// retries and run events, the message id: the upsert's rules for job
    /// ids and pools; a publish executor's exchange and routing key: AMQP's
    /// 255 bytes): a fire from anyone who may publish to a work queue is
    /// input like any other. Errors name the field, as an upsert's do.
    pub fn check_names(&self) -> Result<(), crate::error::ValidationError> {
        crate::job::check_job_id("job_id", &self.job_id)?;
        crate::job::check_pool("pool", &self.pool)?;
        // What reaches the broker from the executor: a publish job's
        // exchange and routing key (other executor rules are the
        // executor's own, checked when it runs).
        if let Executor::Publish(p) = &self.executor {
            crate::job::validate::check_publish_names(p, "executor")?;
        }
        if self.fire_id.is_empty() || self.fire_id.len() > 255 {
            return Err(crate::error::ValidationError::new(
                "fire_id",
                format!("must be 1-255 bytes, got {}", self.fire_id.len()),
            ));
        }
        Ok(())
    }

    /// The one place a fire event is built, from the job's definition:
    /// attempt 1, the job snapshot a worker runs without asking anyone,
    /// signed when `key` is set (docs/protocol.md §6, §10).
    pub fn of(
        job: &crate::job::JobSpec,
        origin: Origin,
        now: DateTime<Utc>,
        key: Option<&[u8]>,
    ) -> Self {
        let (fire_id, scheduled, shard, epoch, manual) = origin.occurrence(&job.id, now);
        let mut ev = FireEvent {
            fire_id: fire_id.to_string(),
            job_id: job.id.clone(),
            pool: job.pool.clone(),
            shard,
            epoch,
            scheduled_at: scheduled,
            fired_at: now,
            attempt: 1,
            manual,
            // A workflow's fires are its steps' (`of_step`): callers never
            // fire a workflow job as one.
            executor: job.executor.clone().unwrap_or(Executor::Noop),
            payload: job.payload.clone(),
            timeout: job.timeout,
            retry: job.retry.clone(),
            overlap: job.overlap,
            first_failure: None,
            signature: None,
        };
        if let Some(k) = key {
            ev.signature = Some(crate::sign::sign_fire(k, &ev));
        }
        ev
    }
}

/// The workflow occurrence a step's fire belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Occurrence<'a> {
    /// Its fire id (`job@instant`, or a trigger's or backfill's).
    pub fire_id: &'a str,
    pub scheduled: DateTime<Utc>,
    /// The job's timer shard, and the owner epoch that publishes the step.
    pub shard: u32,
    pub epoch: u64,
    pub manual: bool,
    /// A trigger's payload, instead of the job's.
    pub payload: Option<&'a serde_json::Value>,
}

impl FireEvent {
    /// The fire of step `step` of `job`'s occurrence `occ` (one fire, shard
    /// `k` of `n`, or the one on a worker): the step's executor, timeout,
    /// retry and pool (the job's where the step has none), the trigger's
    /// payload or the job's; id `{occurrence}/{step}[#k/n | @worker]`, the
    /// same on every scheduler.
    pub fn of_step(
        job: &crate::job::JobSpec,
        step: &crate::job::workflow::StepSpec,
        occ: &Occurrence<'_>,
        fan: crate::job::workflow::Fan<'_>,
        now: DateTime<Utc>,
        key: Option<&[u8]>,
    ) -> Self {
        let fire_id = match fan {
            crate::job::workflow::Fan::One => crate::FireId::for_step(occ.fire_id, &step.id, None),
            crate::job::workflow::Fan::Shard(k, n) => {
                crate::FireId::for_step(occ.fire_id, &step.id, Some((k, n)))
            }
            crate::job::workflow::Fan::Worker(w) => {
                crate::FireId::for_worker(occ.fire_id, &step.id, w)
            }
        };
        let mut ev = FireEvent {
            fire_id: fire_id.to_string(),
            job_id: job.id.clone(),
            pool: step.pool.clone().unwrap_or_else(|| job.pool.clone()),
            shard: occ.shard,
            epoch: occ.epoch,
            scheduled_at: occ.scheduled,
            fired_at: now,
            attempt: 1,
            manual: occ.manual,
            executor: step.executor.clone(),
            payload: occ.payload.unwrap_or(&job.payload).clone(),
            timeout: step.timeout.unwrap_or(job.timeout),
            retry: step.retry.clone().unwrap_or_else(|| job.retry.clone()),
            overlap: Overlap::Allow,
            first_failure: None,
            signature: None,
        };
        if let Some(k) = key {
            ev.signature = Some(crate::sign::sign_fire(k, &ev));
        }
        ev
    }

    /// The step and shard this fire runs, for a workflow step's fire.
    pub fn step(&self) -> Option<crate::fire_id::StepRef<'_>> {
        crate::FireId::split_step(&self.fire_id)
    }

    /// Where this fire goes on the fire exchange (first time and retries):
    /// its worker's own queue for an every-worker step's fire, else its
    /// pool's shard queue.
    pub fn routing_key(&self) -> String {
        match self.step().and_then(|s| s.worker) {
            Some(w) => crate::topology::Topology::worker_routing_key(&self.pool, w),
            None => crate::topology::Topology::work_routing_key(&self.pool, self.shard),
        }
    }
}

impl Message for FireEvent {
    const KIND: &'static str = "sundial.fire";
    const PRIMARY: Format = Format::Bincode;
    const FORMATS: &'static [Format] = &[Format::Bincode, Format::Json];
    /// Payloads are capped by the 1 MiB control body, plus the envelope.
    const MAX_SIZE: usize = 2 * MIB;

    fn natural_id(&self) -> Option<String> {
        Some(self.fire_id.clone())
    }

    /// A step's fire is version 2: a worker older than workflows refuses it.
    fn version(&self) -> i64 {
        if self.step().is_some() {
            super::MAX_VERSION
        } else {
            super::VERSION
        }
    }
}

/// "Shard `shard` fired and had confirmed everything due ≤ `up_to`", written
/// by the owner at `epoch` to `sundial.watermark.{shard}` (last value wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watermark {
    pub shard: u32,
    pub epoch: u64,
    pub up_to: DateTime<Utc>,
    pub owner: String,
}

impl Message for Watermark {
    const KIND: &'static str = "sundial.watermark";
    const PRIMARY: Format = Format::Bincode;
    const FORMATS: &'static [Format] = &[Format::Bincode, Format::Json];
    const MAX_SIZE: usize = 4096;

    fn natural_id(&self) -> Option<String> {
        Some(format!(
            "watermark:{}:{}:{}",
            self.shard,
            self.epoch,
            self.up_to.timestamp_millis()
        ))
    }
}

/// A JSON value inside a message: nested as-is in JSON, carried as its JSON
/// text in binary formats (bincode cannot decode self-describing values).
mod json_value {
    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.serialize(s)
        } else {
            let text = serde_json::to_string(v).map_err(serde::ser::Error::custom)?;
            s.serialize_str(&text)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<serde_json::Value, D::Error> {
        if d.is_human_readable() {
            serde_json::Value::deserialize(d)
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text).map_err(D::Error::custom)
        }
    }
}

impl crate::sign::SignedFire for FireEvent {
    /// The fire id, the job id, the executor and the payload: what the job
    /// will do (docs/protocol.md §10).
    fn signed_content(&self) -> Vec<u8> {
        serde_json::to_vec(&(&self.fire_id, &self.job_id, &self.executor, &self.payload))
            .unwrap_or_default()
    }

    fn signature(&self) -> Option<&str> {
        self.signature.as_deref()
    }
}
