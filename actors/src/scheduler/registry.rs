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
        registry::RegistryRecord,
    },
    registry::{Change, RegistryView},
    topology::Topology,
};
use tracing::{info, warn};

use super::timer::{JobChange, TimerShard};
use crate::publish::publish_all_confirmed;

pub(crate) struct Registry {
    view: RegistryView,
    /// Confirm-mode channel for appends to the registry stream.
    channel: Channel,
    topo: Arc<Topology>,
    /// Timer shard actors, indexed by shard number.
    shards: Vec<Addr<TimerShard>>,
}

impl Registry {
    pub(crate) fn new(
        view: RegistryView,
        channel: Channel,
        topo: Arc<Topology>,
        shards: Vec<Addr<TimerShard>>,
    ) -> Self {
        Self {
            view,
            channel,
            topo,
            shards,
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
                AtomicResponse::new(Box::pin(
                    async move { publish_all_confirmed(&ch, "", &stream, &encoded).await }
                        .into_actor(self)
                        .map(move |res, act, _| match res {
                            Ok(()) => {
                                for r in &records {
                                    act.apply(r);
                                }
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
