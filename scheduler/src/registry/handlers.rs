//! The messages the registry answers besides shard routing: write a
//! snapshot, execute a control command, answer the API's job reads.

use super::*;
use sundial_core::registry::Kept;

/// Append a complete snapshot of the view, then point the index at it.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WriteSnapshot;

impl Handler<WriteSnapshot> for Registry {
    /// Atomic only until the first part is confirmed: the snapshot is the
    /// view at that part's place in the log (a reader applies the records
    /// after it again when the last part completes it, docs/semantics.md
    /// §5). The other parts are encoded off this thread and published while
    /// commands go on: at millions of jobs that takes a minute, which
    /// commands and the lease loop cannot wait.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: WriteSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        let now = Utc::now();
        let sid = format!("{}-{}", self.node, now.timestamp_millis());
        // The entries as they are now (shared, not copied), sorted by id.
        let entries: Arc<Vec<Kept>> = Arc::new(self.view.kept());
        let parts =
            u32::try_from(entries.len().div_ceil(SNAPSHOT_PART_JOBS).max(1)).unwrap_or(u32::MAX);
        // Its parts come back through the follower: skip them.
        self.own.extend((0..parts).map(|p| part_id(&sid, p)));
        let first = encode_parts(&sid, parts, &entries, 0..1);
        let ch = self.channel.clone();
        let stream = self.topo.registry_stream();
        let written = Written {
            // Timestamps are whole seconds on the stream: name the second
            // before the first part.
            index: RegistryIndex {
                snapshot_id: sid,
                written_at: now - chrono::Duration::seconds(1),
                jobs: entries.len() as u64,
            },
            parts,
            bytes_before: self.bytes_since_snapshot,
        };
        AtomicResponse::new(Box::pin(
            async move {
                let first = first?;
                publish_all_confirmed(&ch, "", &stream, &first)
                    .await
                    .map_err(|e| e.to_string())
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(()) => {
                    // A task of its own, not the actor's: the actor's
                    // futures wait while a command is in flight, and
                    // registration sends commands back to back.
                    let rest = act.write_parts(entries, &written);
                    let (addr, stopped) = (ctx.address(), act.failed.clone());
                    actix::spawn(async move {
                        let res = tokio::select! {
                            res = rest => res,
                            () = stopped.cancelled() => Err("the registry stopped".to_string()),
                        };
                        addr.do_send(SnapshotDone { written, res });
                    });
                }
                Err(e) => act.snapshot_done(&written, Err(e)),
            }),
        ))
    }
}

/// The parts after the first, and the index entry, were written (or not).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SnapshotDone {
    written: Written,
    res: Result<(), String>,
}

impl Handler<SnapshotDone> for Registry {
    type Result = ();

    fn handle(&mut self, done: SnapshotDone, _ctx: &mut Context<Self>) {
        self.snapshot_done(&done.written, done.res);
    }
}

/// A snapshot being written: its index entry, how many parts it has, and
/// the log bytes it sums up (those appended before its first part).
pub(super) struct Written {
    index: RegistryIndex,
    parts: u32,
    bytes_before: u64,
}

/// The message id of a snapshot part (known before it is published).
fn part_id(sid: &str, part: u32) -> String {
    format!("{sid}/{part}")
}

/// Parts `range` of a snapshot of `entries`, encoded and named.
fn encode_parts(
    sid: &str,
    parts: u32,
    entries: &[Kept],
    range: std::ops::Range<u32>,
) -> Result<Vec<sundial_core::codec::Encoded>, String> {
    range
        .map(|part| {
            let from = (part as usize * SNAPSHOT_PART_JOBS).min(entries.len());
            let to = (from + SNAPSHOT_PART_JOBS).min(entries.len());
            // A definition that does not encode fails the whole snapshot:
            // one that lacked it would lose it.
            let mut enc =
                sundial_core::registry::snapshot_part(sid, part, parts, &entries[from..to])?;
            enc.meta.message_id = Some(part_id(sid, part));
            Ok(enc)
        })
        .collect()
}

impl Registry {
    /// Parts 1.. of a snapshot whose part 0 is confirmed, then its index
    /// entry: encoded on the blocking pool a batch at a time (bounded
    /// memory), published with confirms.
    fn write_parts(
        &self,
        entries: Arc<Vec<Kept>>,
        written: &Written,
    ) -> impl std::future::Future<Output = Result<(), String>> + 'static {
        let ch = self.channel.clone();
        let stream = self.topo.registry_stream();
        let index_queue = self.topo.registry_index_queue();
        let sid = written.index.snapshot_id.clone();
        let parts = written.parts;
        let index = encode(&written.index).map_err(|e| e.to_string());
        async move {
            let batch = u32::try_from(SNAPSHOT_PUBLISH_BATCH).unwrap_or(1);
            let mut next = 1;
            while next < parts {
                let range = next..next.saturating_add(batch).min(parts);
                next = range.end;
                let (sid, entries) = (sid.clone(), entries.clone());
                let encoded =
                    tokio::task::spawn_blocking(move || encode_parts(&sid, parts, &entries, range))
                        .await
                        .map_err(|e| format!("encoding a snapshot part: {e}"))??;
                publish_all_confirmed(&ch, "", &stream, &encoded)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            publish_all_confirmed(&ch, "", &index_queue, std::slice::from_ref(&index?))
                .await
                .map_err(|e| e.to_string())
        }
    }

    fn snapshot_done(&mut self, written: &Written, res: Result<(), String>) {
        self.snapshot_pending = false;
        let sid = &written.index.snapshot_id;
        match res {
            Ok(()) => {
                // What was appended while it was written is after it.
                self.bytes_since_snapshot = self
                    .bytes_since_snapshot
                    .saturating_sub(written.bytes_before);
                self.last_snapshot = Some(written.index.written_at);
                info!(snapshot_id = %sid, jobs = written.index.jobs, parts = written.parts, "registry snapshot written");
            }
            Err(e) => {
                // Parts that never reach the stream never come back.
                for p in 0..written.parts {
                    self.own.remove(&part_id(sid, p));
                }
                warn!(snapshot_id = %sid, error = %e, "registry snapshot failed; will retry");
            }
        }
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

/// The jobs of these timer shards (the alert check of their owner), in id
/// order.
#[derive(Message)]
#[rtype(result = "Vec<Arc<sundial_core::registry::Fired>>")]
pub(crate) struct JobsIn(pub(crate) std::collections::BTreeSet<u32>);

impl Handler<JobsIn> for Registry {
    type Result = MessageResult<JobsIn>;

    fn handle(&mut self, JobsIn(shards): JobsIn, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.view.fired_in(&shards))
    }
}

impl Handler<JobOf> for Registry {
    type Result = Option<Arc<sundial_core::registry::JobEntry>>;

    fn handle(&mut self, JobOf(id): JobOf, _ctx: &mut Context<Self>) -> Self::Result {
        self.entry(&id)
    }
}
