//! The messages the registry answers besides shard routing: write a
//! snapshot, execute a control command, answer the API's job reads.

use super::*;

/// Append a complete snapshot of the view, then point the index at it.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WriteSnapshot;

impl Handler<WriteSnapshot> for Registry {
    /// Atomic: no command is applied between building the snapshot and
    /// appending it, so it is exactly the state at its place in the log.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: WriteSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        let now = Utc::now();
        let snapshot_id = format!("{}-{}", self.node, now.timestamp_millis());
        // The entries as they are now (shared, not copied); definitions are
        // copied and encoded one part at a time while publishing.
        // Sorted by id (the view's order).
        let entries: Vec<sundial_core::registry::Kept> =
            self.view.iter_held().map(|(_, h)| h.kept()).collect();
        let jobs = entries.len() as u64;
        let parts =
            u32::try_from(entries.len().div_ceil(SNAPSHOT_PART_JOBS).max(1)).unwrap_or(u32::MAX);
        // Timestamps are whole seconds on the stream; name the second before.
        let written_at = now - chrono::Duration::seconds(1);
        let index = RegistryIndex {
            snapshot_id: snapshot_id.clone(),
            written_at,
            jobs,
        };
        let ch = self.channel.clone();
        let stream = self.topo.registry_stream();
        let index_queue = self.topo.registry_index_queue();
        let sid = snapshot_id.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let mut ids = Vec::with_capacity(parts as usize);
                let mut batch = Vec::new();
                for part in 0..parts {
                    let from = part as usize * SNAPSHOT_PART_JOBS;
                    let to = (from + SNAPSHOT_PART_JOBS).min(entries.len());
                    let record = RegistryRecord::Snapshot {
                        snapshot_id: sid.clone(),
                        part,
                        parts,
                        // A definition that does not decode fails the
                        // whole snapshot: one that lacked it would lose it.
                        jobs: entries[from.min(to)..to]
                            .iter()
                            .map(sundial_core::registry::Kept::stored)
                            .collect::<Result<Vec<StoredJob>, String>>()?,
                    };
                    let enc =
                        sundial_amqp::broker::encode_stamped(&record).map_err(|e| e.to_string())?;
                    ids.extend(enc.meta.message_id.clone());
                    batch.push(enc);
                    // Confirms awaited every few megabytes: bounded memory.
                    if batch.len() == SNAPSHOT_PUBLISH_BATCH || part + 1 == parts {
                        publish_all_confirmed(&ch, "", &stream, &batch)
                            .await
                            .map_err(|e| e.to_string())?;
                        batch.clear();
                    }
                }
                let index_enc = encode(&index).map_err(|e| e.to_string())?;
                publish_all_confirmed(&ch, "", &index_queue, std::slice::from_ref(&index_enc))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(ids)
            }
            .into_actor(self)
            .map(move |res: Result<Vec<String>, String>, act, _| {
                act.snapshot_pending = false;
                match res {
                    Ok(ids) => {
                        // Its parts come back through the follower (after
                        // this: the actor waits for this future): skip them.
                        act.own.extend(ids);
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
pub(crate) struct Execute {
    pub(crate) cmd: Command,
    /// Pools of the command's jobs that have no work queues (refused).
    pub(crate) missing_pools: std::collections::BTreeSet<String>,
}

impl Handler<Execute> for Registry {
    /// Atomic: one command at a time, so records are appended and applied
    /// in the order they were decided.
    type Result = AtomicResponse<Self, Reply>;

    fn handle(
        &mut self,
        Execute { cmd, missing_pools }: Execute,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        let name = cmd.name();
        let done: ResponseActFuture<Self, Reply> = match decide(
            &cmd,
            &self.view,
            &missing_pools,
            Utc::now(),
        ) {
            Decision::Reply(reply) => Box::pin(fut::ready(reply)),
            Decision::Trigger { id, manual, reply } => {
                let Some(entry) = self.entry(&id) else {
                    return AtomicResponse::new(Box::pin(fut::ready(reply)));
                };
                Box::pin(self.trigger(&entry, manual, reply).into_actor(self))
            }
            Decision::Cancel {
                id,
                fire_id,
                reason,
                by,
                reply,
            } => {
                let Some(entry) = self.entry(&id) else {
                    return AtomicResponse::new(Box::pin(fut::ready(reply)));
                };
                Box::pin(
                    self.cancel(&entry, fire_id, reason, by, reply)
                        .into_actor(self),
                )
            }
            Decision::Backfill { id, at, reply } => {
                let Some(entry) = self.entry(&id) else {
                    return AtomicResponse::new(Box::pin(fut::ready(reply)));
                };
                Box::pin(self.backfill(&entry, at, reply).into_actor(self))
            }
            Decision::Append { records, reply } => {
                let encoded: Result<Vec<_>, _> = records
                    .iter()
                    .map(sundial_amqp::broker::encode_stamped)
                    .collect();
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
                let ids: Vec<String> = encoded
                    .iter()
                    .filter_map(|e| e.meta.message_id.clone())
                    .collect();
                self.own.extend(ids.iter().cloned());
                self.appender = true;
                let ch = self.channel.clone();
                let stream = self.topo.registry_stream();
                let appended: u64 = encoded.iter().map(|e| e.body.len() as u64).sum();
                Box::pin(
                    async move { publish_all_confirmed(&ch, "", &stream, &encoded).await }
                        .into_actor(self)
                        .map(move |res, act, ctx| match res {
                            Ok(()) => {
                                let count = records.len();
                                for r in records {
                                    act.apply(r);
                                }
                                act.bytes_since_snapshot += appended;
                                act.maybe_snapshot(ctx);
                                metrics::gauge!(sundial_runtime::metrics::REGISTRY_JOBS).set(act.view.len() as f64);
                                info!(command = name, records = count, jobs = act.view.len(), "registry updated");
                                reply
                            }
                            Err(e) => {
                                // If some did reach the stream after all, the
                                // follower applies them, as every node does.
                                for id in &ids {
                                    act.own.remove(id);
                                }
                                warn!(command = name, error = %e, "registry append failed; nothing changed");
                                Reply::error(
                                    Some(name),
                                    ReplyError { field: "registry".into(), message: format!("not stored, try again: {e}") },
                                )
                            }
                        }),
                )
            }
        };
        // Who did what (ADR 0023): appended once the write is done; a
        // refusal or a no-op writes nothing.
        let ch = self.channel.clone();
        let topo = self.topo.clone();
        let node = self.node.clone();
        AtomicResponse::new(Box::pin(done.then(move |reply, act, _ctx| {
            async move {
                if let Some(mut entry) = audit_of(&cmd, &reply, Utc::now()) {
                    entry.node = Some(node);
                    let job_id = entry.job_id.clone().unwrap_or_default();
                    if let Err(e) = sundial_amqp::audit::record(&ch, &topo, entry).await {
                        warn!(command = name, job_id, error = %e, "the write is done, but its audit entry was not stored");
                    }
                }
                reply
            }
            .into_actor(act)
        })))
    }
}

/// A read of the view for the HTTP API (`/api/v1/jobs`): answered on the
/// registry's own thread, between commands, so it sees a consistent view.
impl Handler<crate::reads::JobsRead> for Registry {
    type Result = MessageResult<crate::reads::JobsRead>;

    fn handle(
        &mut self,
        crate::reads::JobsRead(q): crate::reads::JobsRead,
        _: &mut Context<Self>,
    ) -> Self::Result {
        MessageResult(sundial_core::registry_read::answer(
            &self.view,
            &q,
            Utc::now(),
        ))
    }
}

/// The job `0`, as the registry holds it now (the workflow advancer reads
/// a workflow's steps with it).
#[derive(Message)]
#[rtype(result = "Option<Arc<sundial_core::registry::JobEntry>>")]
pub(crate) struct JobOf(pub(crate) String);

/// The jobs of these timer shards (the alert check of their owner).
#[derive(Message)]
#[rtype(result = "Vec<Arc<sundial_core::registry::JobEntry>>")]
pub(crate) struct JobsIn(pub(crate) std::collections::BTreeSet<u32>);

impl Handler<JobsIn> for Registry {
    type Result = MessageResult<JobsIn>;

    fn handle(&mut self, JobsIn(shards): JobsIn, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.view.entries_in(&shards))
    }
}

impl Handler<JobOf> for Registry {
    type Result = Option<Arc<sundial_core::registry::JobEntry>>;

    fn handle(&mut self, JobOf(id): JobOf, _ctx: &mut Context<Self>) -> Self::Result {
        self.entry(&id)
    }
}
