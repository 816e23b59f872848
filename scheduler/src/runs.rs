//! `runs::track` (the run tracker): follows run events to know which jobs are running now, so
//! timer shards can apply each job's `overlap` policy (`forbid` skips a fire
//! while the previous run runs; `replace` cancels it).
//!
//! The tracker reads the history stream from its end (run records, batched
//! by the workers), so a restarted scheduler starts with no knowledge of
//! runs already going: until their next record, their jobs behave as
//! `allow` (documented in docs/semantics.md). A run whose end it never hears of (a worker killed
//! and the fire dead-lettered by the broker) is forgotten at its deadline.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use lapin::Connection;
use sundial_core::{
    codec::encode,
    protocol::run::{CancelRun, RunEvent, RunKind},
    topology::Topology,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use sundial_amqp::{
    history::{Reader, StreamStart},
    publish::publish_event,
};

use crate::error::Error;

/// When a `started` event carries no deadline, the run is forgotten after
/// this long without news.
const DEFAULT_STALE: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// History stream messages in flight to the tracker.
const PREFETCH: u16 = 200;
/// Grace after a run's deadline before it is forgotten (the worker needs a
/// moment to kill it and report).
const DEADLINE_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// One run in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Running {
    pub(crate) fire_id: String,
    pub(crate) worker: String,
    /// Forgotten after this instant.
    until: DateTime<Utc>,
}

/// The jobs running now, shared by the tracker (writer) and the timer
/// shards (readers; only for jobs whose overlap is not `allow`).
#[derive(Debug, Default)]
pub(crate) struct RunningJobs {
    by_job: Mutex<HashMap<String, Running>>,
}

impl RunningJobs {
    /// The run of `job` in progress at `now`, if any.
    pub(crate) fn running(&self, job: &str, now: DateTime<Utc>) -> Option<Running> {
        let mut map = self.by_job.lock().ok()?;
        match map.get(job) {
            Some(r) if r.until > now => Some(r.clone()),
            Some(_) => {
                map.remove(job);
                None
            }
            None => None,
        }
    }

    /// Applies one run event. The fires of a workflow's steps are not runs
    /// of the job: its occurrence's own records are (opened, ended).
    pub(crate) fn apply(&self, ev: &RunEvent) {
        if sundial_core::FireId::split_step(&ev.fire_id).is_some() {
            return;
        }
        let Ok(mut map) = self.by_job.lock() else {
            return;
        };
        match ev.kind {
            RunKind::Started => {
                let until = ev
                    .deadline
                    .map_or(ev.at + DEFAULT_STALE, |d| d + DEADLINE_GRACE);
                map.insert(
                    ev.job_id.clone(),
                    Running {
                        fire_id: ev.fire_id.clone(),
                        worker: ev.worker.clone(),
                        until,
                    },
                );
            }
            RunKind::Succeeded
            | RunKind::Failed
            | RunKind::Retrying
            | RunKind::Dead
            | RunKind::Cancelled => {
                // Only the run we track ends; a late event of an older run
                // must not clear a newer one.
                if map.get(&ev.job_id).is_some_and(|r| r.fire_id == ev.fire_id) {
                    map.remove(&ev.job_id);
                }
            }
            RunKind::Fired | RunKind::Skipped => {}
        }
    }
}

/// Follows the run records of the history stream (from now on) into
/// `runs`, until `shutdown` (Ok) or the channel fails (Err).
pub(crate) async fn track(
    conn: &Connection,
    topo: &Topology,
    runs: Arc<RunningJobs>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut reader =
        Reader::open(conn, &topo.history_stream(), StreamStart::Next, PREFETCH).await?;
    loop {
        let m = tokio::select! {
            () = shutdown.cancelled() => {
                reader.close("run tracker stopping").await;
                return Ok(());
            }
            m = reader.next() => m?,
        };
        let Some(m) = m else {
            return Err(Error::stream_ended("run tracker's history consumer"));
        };
        match m.batch {
            Ok(batch) => batch.records.iter().for_each(|r| runs.apply(r)),
            // The history index counts and logs these.
            Err(e) => debug!(error = %e, "history record not understood; ignored"),
        }
    }
}

/// Asks the worker running `run` to cancel it (overlap `replace`).
pub(crate) async fn cancel(
    ch: &lapin::Channel,
    topo: &Topology,
    job_id: &str,
    run: &Running,
    by_fire: &str,
) -> Result<(), Error> {
    let msg = CancelRun {
        fire_id: run.fire_id.clone(),
        job_id: job_id.to_string(),
        reason: format!("replaced by {by_fire}"),
    };
    let enc = encode(&msg)?;
    let confirm = publish_event(ch, &topo.cancel_exchange(), &run.worker, &enc)
        .await
        .map_err(Error::not_stored("cancel request"))?;
    confirm.await.map_err(Error::not_stored("cancel request"))?;
    info!(job_id, fire_id = %run.fire_id, worker = %run.worker, replaced_by = by_fire, "asked the worker to cancel the running attempt (overlap replace)");
    Ok(())
}
