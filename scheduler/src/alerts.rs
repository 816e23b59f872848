//! Alerts (issue 25, ADR 0021): what the history says of every scheduled
//! occurrence, and the alerts already raised, as the history follower
//! (`workflows::advance`) reads them; and the check the owner of a shard
//! makes every `scheduler.alert_interval` over its jobs
//! ([`sundial_core::alert::Watch`]), appending what it raises to the
//! history stream (confirmed) in the batch's `alerts`.
//!
//! Every scheduler keeps the same view (it reads the same stream), so a
//! new owner after a takeover judges the same occurrences with the same
//! alerts raised, and raises nothing twice: an alert's id is
//! `{kind}:{fire_id}`. Two owners of one shard for a moment (a lease
//! changing hands) may raise the same id twice; a receiver drops repeats
//! by id.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use actix::Addr;
use chrono::{DateTime, Utc};
use lapin::Channel;
use sundial_core::{
    alert::{Alert, AlertKind, Raised, Seen, Watch},
    codec::encode,
    protocol::run::{RunBatch, RunEvent, RunKind},
    registry::JobEntry,
    topology::Topology,
    FireId,
};
use tracing::{info, warn};

use sundial_amqp::publish::publish_confirmed;

use crate::{
    error::Error,
    opening::Owned,
    registry::{JobsIn, Registry},
};

/// The reason a worker gives a duplicate it skipped (not a skip of the
/// occurrence).
const DUPLICATE: &str = "duplicate";
/// A skipped record whose reason starts so is a misfire policy's, after
/// an outage: the occurrence was missed.
const MISFIRE: &str = "misfire";
/// How far back a check looks beyond the job's deadlines (`sla`,
/// `misfire.grace`): checks that came late (a busy node) still see every
/// occurrence whose deadline passed since the last one.
const SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// The history as alerts need it, per job.
#[derive(Default)]
pub(crate) struct Watcher {
    /// Scheduled occurrences (not triggers, backfills or steps) by instant.
    seen: HashMap<String, BTreeMap<DateTime<Utc>, Seen>>,
    /// Alert ids raised, by job.
    raised: HashMap<String, BTreeSet<String>>,
}

/// What a check needs besides the view.
pub(crate) struct CheckParts<'a> {
    pub(crate) topo: &'a Topology,
    pub(crate) node: &'a str,
    pub(crate) registry: &'a Addr<Registry>,
    pub(crate) owned: &'a Owned,
    pub(crate) horizon: Duration,
    pub(crate) ch: &'a Channel,
}

impl Watcher {
    /// Takes in one message of the history stream.
    pub(crate) fn read(&mut self, batch: &RunBatch) {
        for r in &batch.records {
            self.record(r);
        }
        for a in &batch.alerts {
            self.raised
                .entry(a.alert.job_id.clone())
                .or_default()
                .insert(a.alert.id.clone());
        }
    }

    fn record(&mut self, r: &RunEvent) {
        if FireId::split_step(&r.fire_id).is_some() {
            return;
        }
        // Scheduled occurrences only: a trigger's or backfill's id does not
        // parse as `job@instant`.
        let Some((job, at)) = FireId::parse(&r.fire_id) else {
            return;
        };
        let s = self
            .seen
            .entry(job.to_string())
            .or_default()
            .entry(at)
            .or_default();
        match r.kind {
            RunKind::Fired | RunKind::Started | RunKind::Failed | RunKind::Retrying => {
                s.fired = true;
            }
            RunKind::Succeeded => {
                s.fired = true;
                s.succeeded.get_or_insert(r.at);
            }
            RunKind::Dead => {
                s.fired = true;
                s.dead = Some(r.reason.clone().unwrap_or_else(|| "dead".into()));
            }
            RunKind::Skipped if r.reason.as_deref() == Some(DUPLICATE) => {}
            RunKind::Skipped => {
                let why = r.reason.clone().unwrap_or_else(|| "skipped".into());
                let missed = why.starts_with(MISFIRE);
                s.skipped = Some((why, missed));
            }
            // A workflow occurrence a client cancelled: their choice.
            RunKind::Cancelled => {
                s.fired = true;
                s.skipped = Some((r.reason.clone().unwrap_or_default(), false));
            }
        }
    }

    /// Forgets what is older than the horizon.
    pub(crate) fn forget(&mut self, now: DateTime<Utc>, horizon: Duration) {
        let edge =
            now - chrono::TimeDelta::from_std(horizon).unwrap_or(chrono::TimeDelta::hours(24));
        self.seen.retain(|_, m| {
            m.retain(|at, _| *at >= edge);
            !m.is_empty()
        });
        self.raised.retain(|_, ids| {
            ids.retain(|id| {
                AlertKind::of_id(id)
                    .and_then(|(_, f)| FireId::parse(f))
                    .is_some_and(|(_, at)| at >= edge)
            });
            !ids.is_empty()
        });
    }

    /// Judges the jobs of the shards this node owns and appends what they
    /// raise to the history stream (marked raised here at once, so the
    /// next check does not raise them again before they are read back).
    pub(crate) async fn check(&mut self, p: CheckParts<'_>) -> Result<usize, Error> {
        let shards = p.owned.shards();
        if shards.is_empty() {
            return Ok(0);
        }
        let now = Utc::now();
        let jobs = p.registry.send(JobsIn(shards)).await?;
        let horizon =
            chrono::TimeDelta::from_std(p.horizon).unwrap_or(chrono::TimeDelta::hours(24));
        let empty_seen = BTreeMap::new();
        let empty_raised = BTreeSet::new();
        let mut alerts: Vec<Alert> = Vec::new();
        for job in &jobs {
            let from = now - lookback(job).min(horizon);
            let w = Watch {
                job,
                sla: job
                    .spec
                    .sla
                    .and_then(|s| chrono::TimeDelta::from_std(s.get()).ok()),
                seen: self.seen.get(&job.spec.id).unwrap_or(&empty_seen),
                raised: self.raised.get(&job.spec.id).unwrap_or(&empty_raised),
                paused: &[],
            };
            alerts.extend(w.check(from, now));
        }
        metrics::gauge!(sundial_runtime::metrics::LAST_ALERT_CHECK)
            .set(now.timestamp_millis() as f64 / 1000.0);
        if alerts.is_empty() {
            return Ok(0);
        }
        for a in &alerts {
            info!(job_id = %a.job_id, fire_id = %a.fire_id, alert = %a.id, reason = %a.reason, "alert raised");
            metrics::counter!(sundial_runtime::metrics::ALERTS, "kind" => a.kind.as_str())
                .increment(1);
        }
        let n = alerts.len();
        let batch = RunBatch {
            records: Vec::new(),
            alerts: alerts
                .iter()
                .map(|alert| Raised {
                    alert: alert.clone(),
                    at: now,
                    node: p.node.to_string(),
                })
                .collect(),
        };
        let enc = encode(&batch)?;
        if let Err(e) = publish_confirmed(p.ch, &p.topo.history_exchange(), "", &enc, || {}).await {
            warn!(alerts = n, error = %e, "alerts not recorded; the next check raises them again");
            return Err(Error::not_stored("alerts")(e));
        }
        for a in alerts {
            self.raised.entry(a.job_id).or_default().insert(a.id);
        }
        Ok(n)
    }
}

/// How far back a check of `job` looks: its longest deadline (its `sla`,
/// its misfire grace) and some slack.
fn lookback(job: &Arc<JobEntry>) -> chrono::TimeDelta {
    let d = |d: Duration| chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
    let grace = d(job.spec.misfire.grace.get());
    let sla = job
        .spec
        .sla
        .map_or(chrono::TimeDelta::zero(), |s| d(s.get()));
    grace
        .max(sla)
        .checked_add(&SLACK)
        .unwrap_or(chrono::TimeDelta::MAX)
}
