//! How an occurrence starts (`opening`: a lone job's fire, or a
//! workflow's opening record) and which timer shards this node holds
//! (`Owned`): what the timer shards, the registry and the workflow
//! advancer share, below all three.

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, Utc};
use sundial_core::{
    codec::{encode, Encoded},
    job::JobSpec,
    protocol::{
        fire::{FireEvent, Origin},
        run::{RunBatch, RunEvent, RunKind},
    },
    topology::Topology,
    CodecError,
};

/// The `reason` of the record that opens a workflow occurrence (its
/// `started`, written by a scheduler), which tells it apart from a lone
/// job's `started`.
pub(crate) const OPENED: &str = "workflow";

/// What a publish of an occurrence's first message needs: where, and what.
pub(crate) struct Outbound {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) enc: Encoded,
    pub(crate) fire_id: String,
    pub(crate) pool: String,
}

/// What starts an occurrence of `job` from `origin`: a lone job's fire
/// (to its work queue), or a workflow's `started` record (to the history
/// stream; the owner of the job's shard publishes the first steps when it
/// reads it).
pub(crate) fn opening(
    job: &JobSpec,
    origin: Origin,
    now: DateTime<Utc>,
    key: Option<&[u8]>,
    topo: &Topology,
    node: &str,
    asked: Option<&sundial_core::control::Manual>,
) -> Result<Outbound, CodecError> {
    if job.workflow().is_none() {
        let ev = FireEvent::of(job, origin, now, key);
        let shard = ev.shard;
        return Ok(Outbound {
            exchange: topo.fire_exchange(),
            routing_key: Topology::work_routing_key(&ev.pool, shard),
            enc: encode(&ev)?,
            fire_id: ev.fire_id,
            pool: ev.pool,
        });
    }
    let (fire_id, scheduled, ..) = origin.occurrence(&job.id, now);
    let record = RunEvent {
        reason: Some(OPENED.into()),
        scheduled_at: Some(scheduled),
        // A trigger's payload reaches the steps through this record.
        payload: asked.and_then(|m| m.payload.clone()),
        by: asked.and_then(|m| m.by.clone()),
        ..RunEvent::new(
            RunKind::Started,
            fire_id.as_str(),
            &job.id,
            &job.pool,
            node,
            now,
        )
    };
    Ok(Outbound {
        exchange: topo.history_exchange(),
        routing_key: String::new(),
        enc: encode(&RunBatch::of(vec![record]))?,
        fire_id: fire_id.into(),
        pool: job.pool.clone(),
    })
}

/// The timer shards this node holds now, with their owner epochs: written
/// by each `ShardActor` as it starts and stops, read by the advancer.
#[derive(Debug, Default)]
pub(crate) struct Owned {
    /// Epoch, and since when.
    shards: Mutex<HashMap<u32, (u64, std::time::Instant)>>,
}

impl Owned {
    pub(crate) fn hold(&self, shard: u32, epoch: u64) {
        if let Ok(mut m) = self.shards.lock() {
            m.insert(shard, (epoch, std::time::Instant::now()));
        }
    }

    pub(crate) fn release(&self, shard: u32, epoch: u64) {
        if let Ok(mut m) = self.shards.lock() {
            if m.get(&shard).map(|(e, _)| *e) == Some(epoch) {
                m.remove(&shard);
            }
        }
    }

    pub(crate) fn epoch(&self, shard: u32) -> Option<u64> {
        self.shards.lock().ok()?.get(&shard).map(|(e, _)| *e)
    }

    /// The shards held now.
    pub(crate) fn shards(&self) -> std::collections::BTreeSet<u32> {
        self.held_for(std::time::Duration::ZERO)
    }

    /// The shards held for at least `at_least`.
    pub(crate) fn held_for(
        &self,
        at_least: std::time::Duration,
    ) -> std::collections::BTreeSet<u32> {
        self.shards
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, (_, since))| since.elapsed() >= at_least)
                    .map(|(s, _)| *s)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Where the workflow occurrences stand, as this node's advancer read
/// them: the registry answers a `cancel` from it.
#[derive(Default)]
pub(crate) struct Occurrences {
    /// By fire id: `None` while open, else its ending.
    known: std::sync::Mutex<HashMap<String, Option<sundial_core::workflow::Ending>>>,
    /// The advancer has read the history up to its start.
    caught_up: std::sync::atomic::AtomicBool,
}

/// An occurrence as [`Occurrences`] knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Open,
    Ended(sundial_core::workflow::Ending),
    /// Never opened within the horizon, forgotten, or not read yet.
    Unknown {
        caught_up: bool,
    },
}

impl Occurrences {
    pub(crate) fn get(&self, fire_id: &str) -> Known {
        let caught_up = self.caught_up.load(std::sync::atomic::Ordering::Relaxed);
        match self.known.lock().ok().and_then(|m| m.get(fire_id).copied()) {
            Some(None) => Known::Open,
            Some(Some(e)) => Known::Ended(e),
            None => Known::Unknown { caught_up },
        }
    }

    /// An advancer starts reading again (after a restart of the run): it
    /// knows nothing until it has caught up.
    pub(crate) fn reset(&self) {
        self.caught_up
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut m) = self.known.lock() {
            m.clear();
        }
    }

    pub(crate) fn caught_up(&self) {
        self.caught_up
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn set(&self, fire_id: &str, state: Option<sundial_core::workflow::Ending>) {
        if let Ok(mut m) = self.known.lock() {
            m.insert(fire_id.to_string(), state);
        }
    }

    /// Forgets the occurrences `keep` says no to.
    pub(crate) fn keep(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut m) = self.known.lock() {
            m.retain(|id, _| keep(id));
        }
    }
}
