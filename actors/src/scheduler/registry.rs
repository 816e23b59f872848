//! `Registry`: owns the registry view, executes control commands one at a
//! time (append to the stream with confirms, then apply, then answer) and
//! tells the timer shards what changed.

use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;
use lapin::Channel;
use sundial_core::{
    codec::encode,
    control::{decide, Decision},
    protocol::{
        control::{Command, Reply, ReplyError},
        registry::{RegistryIndex, RegistryRecord, StoredJob},
    },
    registry::{Change, RegistryView},
    settings::RegistrySettings,
    topology::Topology,
};
use tracing::{info, warn};

use super::{
    startup::Replayed,
    timer::{JobChange, TimerShard},
};
use crate::publish::publish_all_confirmed;

/// Definitions per snapshot part (~1 KB each: parts stay near 1 MB).
const SNAPSHOT_PART_JOBS: usize = 1_000;
/// How often the snapshot age is checked.
const SNAPSHOT_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

pub(crate) struct Registry {
    view: RegistryView,
    /// Bytes appended since the newest complete snapshot.
    bytes_since_snapshot: u64,
    /// When the newest complete snapshot was written.
    last_snapshot: Option<chrono::DateTime<Utc>>,
    /// Set while a snapshot is queued, so only one is.
    snapshot_pending: bool,
    settings: RegistrySettings,
    node: String,
    /// Confirm-mode channel for appends to the registry stream.
    channel: Channel,
    topo: Arc<Topology>,
    /// Timer shard actors, indexed by shard number.
    shards: Vec<Addr<TimerShard>>,
}

impl Registry {
    pub(crate) fn new(
        replayed: Replayed,
        channel: Channel,
        topo: Arc<Topology>,
        shards: Vec<Addr<TimerShard>>,
        settings: RegistrySettings,
        node: String,
    ) -> Self {
        Self {
            view: replayed.view,
            bytes_since_snapshot: replayed.bytes_since_snapshot,
            last_snapshot: replayed.last_snapshot,
            snapshot_pending: false,
            settings,
            node,
            channel,
            topo,
            shards,
        }
    }

    /// Compaction rule (docs/semantics.md §5): snapshot when the log since
    /// the last snapshot exceeds the threshold, or when the last snapshot is
    /// older than a quarter of the stream's retention (so retention can
    /// never delete the only copy of a live definition).
    fn snapshot_due(&self, now: chrono::DateTime<Utc>) -> bool {
        if self.snapshot_pending {
            return false;
        }
        let quarter =
            chrono::Duration::from_std(self.settings.max_age / 4).unwrap_or(chrono::Duration::MAX);
        let stale = self
            .last_snapshot
            .map_or(self.bytes_since_snapshot > 0, |t| now - t > quarter);
        self.bytes_since_snapshot > self.settings.snapshot_after_bytes || stale
    }

    fn maybe_snapshot(&mut self, ctx: &mut Context<Self>) {
        if self.snapshot_due(Utc::now()) {
            self.snapshot_pending = true;
            ctx.notify(WriteSnapshot);
        }
    }

    fn shard(&self, id: &str) -> Option<&Addr<TimerShard>> {
        let i = usize::try_from(self.topo.shard_of(id)).ok()?;
        self.shards.get(i)
    }

    fn entry(&self, id: &str) -> Option<Arc<sundial_core::registry::JobEntry>> {
        self.view.get(id).cloned().map(Arc::new)
    }

    fn apply(&mut self, record: &RegistryRecord) {
        let change = match self.view.apply(record) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "accepted record could not be applied");
                return;
            }
        };
        let (id, msg) = match change {
            Change::Upserted(id) => match self.entry(&id) {
                Some(e) => (id, JobChange::Upserted(e)),
                None => return,
            },
            Change::Deleted(id) => (id.clone(), JobChange::Deleted(id)),
            Change::Paused(id) => (id.clone(), JobChange::Paused(id)),
            Change::Resumed(id) => match self.entry(&id) {
                Some(e) => (id, JobChange::Resumed(e)),
                None => return,
            },
            Change::Reloaded | Change::None => return,
        };
        if let Some(shard) = self.shard(&id) {
            shard.do_send(msg);
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::gauge!(crate::metrics::REGISTRY_JOBS).set(self.view.len() as f64);
        ctx.run_interval(SNAPSHOT_CHECK, |act, ctx| act.maybe_snapshot(ctx));
    }
}

/// Append a complete snapshot of the view, then point the index at it.
#[derive(Message)]
#[rtype(result = "()")]
struct WriteSnapshot;

impl Handler<WriteSnapshot> for Registry {
    /// Atomic: no command is applied between building the snapshot and
    /// appending it, so it is exactly the state at its place in the log.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: WriteSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        let now = Utc::now();
        let snapshot_id = format!("{}-{}", self.node, now.timestamp_millis());
        let mut stored: Vec<StoredJob> = self
            .view
            .iter()
            .map(|j| StoredJob {
                job: j.spec.clone(),
                created_at: j.created_at,
            })
            .collect();
        stored.sort_by(|a, b| a.job.id.cmp(&b.job.id));
        let jobs = stored.len() as u64;
        let chunks: Vec<Vec<StoredJob>> = stored
            .chunks(SNAPSHOT_PART_JOBS)
            .map(<[StoredJob]>::to_vec)
            .collect();
        let parts = u32::try_from(chunks.len().max(1)).unwrap_or(u32::MAX);
        let records: Vec<RegistryRecord> = if chunks.is_empty() {
            vec![RegistryRecord::Snapshot {
                snapshot_id: snapshot_id.clone(),
                part: 0,
                parts: 1,
                jobs: Vec::new(),
            }]
        } else {
            chunks
                .into_iter()
                .enumerate()
                .map(|(i, jobs)| RegistryRecord::Snapshot {
                    snapshot_id: snapshot_id.clone(),
                    part: u32::try_from(i).unwrap_or(u32::MAX),
                    parts,
                    jobs,
                })
                .collect()
        };
        // Timestamps are whole seconds on the stream; name the second before.
        let written_at = now - chrono::Duration::seconds(1);
        let index = RegistryIndex {
            snapshot_id: snapshot_id.clone(),
            written_at,
            jobs,
        };
        let encoded: Result<Vec<_>, _> = records.iter().map(encode).collect();
        let index_enc = encode(&index);
        let ch = self.channel.clone();
        let stream = self.topo.registry_stream();
        let index_queue = self.topo.registry_index_queue();
        AtomicResponse::new(Box::pin(
            async move {
                let encoded = encoded.map_err(|e| e.to_string())?;
                let index_enc = index_enc.map_err(|e| e.to_string())?;
                publish_all_confirmed(&ch, "", &stream, &encoded)
                    .await
                    .map_err(|e| e.to_string())?;
                publish_all_confirmed(&ch, "", &index_queue, std::slice::from_ref(&index_enc))
                    .await
                    .map_err(|e| e.to_string())
            }
            .into_actor(self)
            .map(move |res: Result<(), String>, act, _| {
                act.snapshot_pending = false;
                match res {
                    Ok(()) => {
                        act.bytes_since_snapshot = 0;
                        act.last_snapshot = Some(written_at);
                        info!(snapshot_id = %snapshot_id, jobs, parts, "registry snapshot written");
                    }
                    Err(e) => warn!(error = %e, "registry snapshot failed; will retry"),
                }
            }),
        ))
    }
}

/// Execute one control command; answers with the reply to send.
#[derive(Message)]
#[rtype(result = "Reply")]
pub(crate) struct Execute(pub(crate) Command);

impl Handler<Execute> for Registry {
    /// Atomic: one command at a time, so records are appended and applied
    /// in the order they were decided.
    type Result = AtomicResponse<Self, Reply>;

    fn handle(&mut self, Execute(cmd): Execute, _ctx: &mut Context<Self>) -> Self::Result {
        let name = cmd.name();
        match decide(&cmd, &self.view, Utc::now()) {
            Decision::Reply(reply) => AtomicResponse::new(Box::pin(fut::ready(reply))),
            Decision::Trigger { id, reply } => {
                if let (Some(entry), Some(shard)) = (self.entry(&id), self.shard(&id)) {
                    shard.do_send(JobChange::Trigger(entry));
                }
                AtomicResponse::new(Box::pin(fut::ready(reply)))
            }
            Decision::Append { records, reply } => {
                let encoded: Result<Vec<_>, _> = records.iter().map(encode).collect();
                let encoded = match encoded {
                    Ok(e) => e,
                    Err(e) => {
                        let r = Reply::error(
                            Some(name),
                            ReplyError {
                                field: "body".into(),
                                message: e.to_string(),
                            },
                        );
                        return AtomicResponse::new(Box::pin(fut::ready(r)));
                    }
                };
                let ch = self.channel.clone();
                let stream = self.topo.registry_stream();
                let appended: u64 = encoded.iter().map(|e| e.body.len() as u64).sum();
                AtomicResponse::new(Box::pin(
                    async move { publish_all_confirmed(&ch, "", &stream, &encoded).await }
                        .into_actor(self)
                        .map(move |res, act, ctx| match res {
                            Ok(()) => {
                                for r in &records {
                                    act.apply(r);
                                }
                                act.bytes_since_snapshot += appended;
                                act.maybe_snapshot(ctx);
                                metrics::gauge!(crate::metrics::REGISTRY_JOBS).set(act.view.len() as f64);
                                info!(command = name, records = records.len(), jobs = act.view.len(), "registry updated");
                                reply
                            }
                            Err(e) => {
                                warn!(command = name, error = %e, "registry append failed; nothing changed");
                                Reply::error(
                                    Some(name),
                                    ReplyError { field: "registry".into(), message: format!("not stored, try again: {e}") },
                                )
                            }
                        }),
                ))
            }
        }
    }
}
