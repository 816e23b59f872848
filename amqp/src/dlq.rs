//! Dead-letter queues as operators use them: read without consuming, replay
//! to the work queue with attempts reset, purge, tail new arrivals, and a
//! depth watcher for metrics and alerts.
//!
//! Reading uses `basic.get` without ack on a private channel; closing the
//! channel returns every message it did not ack to the queue. Replay and
//! purge ack only the selected messages (a replay only after the broker
//! confirmed the republished fire), so a crash in between loses nothing.
//!
//! One reader at a time (ADR 0022): a reader holds the letters it got until
//! it returns them, so two at once would each see part of the queue, and a
//! replay would not find letters another reader holds. Every listing,
//! replay and purge first takes the queue's reader lock — an exclusive
//! consumer on a small queue of its own, `{dead queue}.reader` — across
//! every process and node, released when its channel closes (or its
//! process dies); the others wait for it (a listing takes milliseconds).
//! Letters are listed in the order they died.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicGetOptions},
    types::AMQPValue,
    BasicProperties, Channel, Connection,
};
use sundial_core::{
    codec::{decode, encode},
    protocol::{
        fire::FireEvent,
        headers,
        run::{RunBatch, RunEvent, RunKind},
        Message,
    },
    topology::Topology,
};

use crate::{broker::meta_of, error::Error, publish::publish_raw_confirmed};

/// The `worker` of a replay's `fired` record (who asked is in its `by`).
pub const REPLAYED_BY: &str = "dlq-replay";
/// Most messages one command reads from a dead-letter queue.
pub const READ_LIMIT: usize = 100_000;
/// How long a reader waits for the reader lock before it says "busy".
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a reader waits for the letters it gave back to be in the
/// queue again before it lets the next reader in.
const RETURN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The most one broker call of a reader waits for its answer.
const CALL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// An unused reader-lock queue goes after this long.
const LOCK_QUEUE_EXPIRES_MS: i64 = 60_000;

/// One dead letter as an operator sees it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetter {
    /// The AMQP `message_id` (the fire id for fire events).
    pub fire_id: Option<String>,
    pub job_id: Option<String>,
    pub attempts: Option<i64>,
    /// `x-sundial-error`, or the broker's dead-letter reason
    /// (`delivery_limit`, `rejected`, `expired`) for messages the broker
    /// dead-lettered itself.
    pub error: String,
    /// When it was dead-lettered (last failure), if known.
    pub dead_at: Option<DateTime<Utc>>,
    /// Every header, as text.
    pub headers: BTreeMap<String, String>,
    /// The fire event, when the body decodes.
    pub fire: Option<FireEvent>,
    /// Why the body does not decode, when it does not.
    pub undecodable: Option<String>,
}

impl DeadLetter {
    fn read(props: &BasicProperties, body: &[u8]) -> Self {
        let headers: BTreeMap<String, String> = props
            .headers()
            .as_ref()
            .map(|h| {
                h.inner()
                    .iter()
                    .map(|(k, v)| (k.to_string(), text(v)))
                    .collect()
            })
            .unwrap_or_default();
        let (fire, undecodable) = match decode::<FireEvent>(&meta_of(props), body) {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let error = headers
            .get(headers::ERROR)
            .cloned()
            .or_else(|| {
                headers
                    .get("x-first-death-reason")
                    .map(|r| format!("dead-lettered by the broker: {r}"))
            })
            .unwrap_or_else(|| "unknown".into());
        let dead_at = headers
            .get(headers::LAST_FAILURE)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        Self {
            fire_id: props.message_id().as_ref().map(|m| m.to_string()),
            job_id: fire.as_ref().map(|f| f.job_id.clone()),
            attempts: headers
                .get(headers::ATTEMPTS)
                .and_then(|a| a.parse().ok())
                .or_else(|| fire.as_ref().map(|f| i64::from(f.attempt))),
            error,
            dead_at,
            headers,
            fire,
            undecodable,
        }
    }
}

/// What to do with the selected dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Republish as attempt 1 to `sundial.fire` (its work queue), then ack.
    Replay,
    /// Ack: the message is gone.
    Purge,
}

/// The outcome of a replay or purge.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Settled {
    /// Fire ids replayed or purged.
    pub done: Vec<String>,
    /// Selected but left in the queue, with the reason (undecodable bodies
    /// cannot be replayed).
    pub skipped: Vec<(String, String)>,
    /// Replayed, but the history has no record of who replayed them (why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecorded: Option<String>,
}

/// Who replays dead letters and why: recorded in the history with each
/// letter replayed.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    pub by: Option<String>,
    pub reason: Option<String>,
    /// The process that acts, for the audit trail (a node name, `cli`).
    pub node: Option<String>,
}

/// One pool's dead-letter queue.
pub struct Dlq<'a> {
    conn: &'a Connection,
    topo: &'a Topology,
    pool: String,
    /// A replay's payload instead of each letter's, and the key that signs
    /// the changed fire (`control.hmac_key`).
    payload: Option<(serde_json::Value, Option<std::sync::Arc<[u8]>>)>,
    asked: Asked,
}

impl<'a> Dlq<'a> {
    pub fn new(conn: &'a Connection, topo: &'a Topology, pool: &str) -> Self {
        Self {
            conn,
            topo,
            pool: pool.to_string(),
            payload: None,
            asked: Asked::default(),
        }
    }

    /// Replays are recorded in the history as asked by `asked.by`, for
    /// `asked.reason`.
    pub fn asked(mut self, asked: Asked) -> Self {
        self.asked = asked;
        self
    }

    /// Replays send `payload` instead of each letter's own, signed with
    /// `key` when there is one (a signed fire whose payload changed is
    /// signed again, or workers with the key would refuse it).
    pub fn with_payload(
        mut self,
        payload: serde_json::Value,
        key: Option<std::sync::Arc<[u8]>>,
    ) -> Self {
        self.payload = Some((payload, key));
        self
    }

    fn queue(&self) -> String {
        self.topo.dead_queue(&self.pool)
    }

    /// Every dead letter (up to [`READ_LIMIT`]), left in the queue.
    pub async fn list(&self) -> Result<Vec<DeadLetter>, Error> {
        self.first(READ_LIMIT).await
    }

    /// The first `limit` dead letters of the queue (at most
    /// [`READ_LIMIT`]), left in it, in the order they died (the time of
    /// their last failure; letters without one last, in queue order).
    pub async fn first(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        let limit = limit.min(READ_LIMIT);
        let lock = self.lock().await?;
        let before = self.ready().await;
        let limit = limit.min(Self::to_read(before));
        let ch = crate::broker::open_channel(self.conn).await?;
        let mut out = Vec::new();
        let mut last = None;
        while out.len() < limit {
            let Some(m) = self.get(&ch).await? else { break };
            last = Some(m.delivery.delivery_tag);
            out.push(DeadLetter::read(&m.delivery.properties, &m.delivery.data));
        }
        self.give_back(ch, last).await;
        self.wait_back(before.unwrap_or(0)).await;
        lock.release().await;
        out.sort_by_key(|l| (l.dead_at.is_none(), l.dead_at));
        Ok(out)
    }

    /// Letters ready in the queue now (`None` when it cannot be asked).
    async fn ready(&self) -> Option<u32> {
        bounded(
            "queue.declare passive of a dead-letter queue: no answer within 10s",
            crate::broker::passive_declare(self.conn, &self.queue()),
        )
        .await
        .ok()
        .flatten()
        .map(|(ready, _)| ready)
    }

    /// How many letters a reader takes: those in the queue when it
    /// started, not what dies meanwhile (a replayed letter that fails at
    /// once comes back, and must not be replayed again by the same replay).
    fn to_read(before: Option<u32>) -> usize {
        before.map_or(READ_LIMIT, |n| (n as usize).min(READ_LIMIT))
    }

    /// Waits (at most [`RETURN_WAIT`]) until the queue holds `want` ready
    /// letters again: a quorum queue takes back the letters of a closed
    /// channel a moment later, and the next reader must find them all.
    async fn wait_back(&self, want: u32) {
        let deadline = std::time::Instant::now() + RETURN_WAIT;
        loop {
            // Not askable: nothing to wait for.
            let Some(ready) = self.ready().await else {
                return;
            };
            if ready >= want {
                return;
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(queue = %self.queue(), ready, want, "dead letters not all back in the queue yet; releasing it anyway");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Returns every letter `ch` got and did not ack to the queue (`last`:
    /// the last one not acked), then closes it: before the reader lock
    /// goes, so the next reader finds them all.
    async fn give_back(&self, ch: Channel, last: Option<u64>) {
        if let Some(tag) = last {
            let _ = tokio::time::timeout(
                CALL_WAIT,
                ch.basic_nack(
                    tag,
                    lapin::options::BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    },
                ),
            )
            .await;
        }
        let _ = tokio::time::timeout(CALL_WAIT, ch.close(200, "dlq read done".into())).await;
    }

    /// Takes the queue's reader lock: waits (at most [`LOCK_WAIT`]) while
    /// another listing, replay or purge of the queue holds it.
    async fn lock(&self) -> Result<ReaderLock, Error> {
        use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
        let name = format!("{}.reader", self.queue());
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            let ch = crate::broker::open_channel(self.conn).await?;
            let mut args = lapin::types::FieldTable::default();
            args.insert(
                "x-expires".into(),
                AMQPValue::LongLongInt(LOCK_QUEUE_EXPIRES_MS),
            );
            let declared = tokio::time::timeout(
                CALL_WAIT,
                ch.queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        durable: false,
                        ..QueueDeclareOptions::default()
                    },
                    args,
                ),
            )
            .await
            .map_err(|_| {
                Error::ConnectionLost("queue.declare of a reader lock: no answer within 10s")
            })?;
            if let Err(e) = declared {
                let e = Error::broker(format!("queue.declare {name}"))(e);
                if e.is_access_refused() {
                    // A user who may read dead letters but not declare
                    // (the monitor of deploy/rabbitmq before this lock):
                    // it reads unlocked, as before, and says so once.
                    if !UNLOCKED_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!(queue = %name, "no permission to declare the dead-letter reader lock: reading without it (a listing may miss letters another reader holds; deploy/rabbitmq/definitions.json grants it)");
                    }
                    return Ok(ReaderLock(None));
                }
                return Err(e);
            }
            let consumed = tokio::time::timeout(
                CALL_WAIT,
                ch.basic_consume(
                    name.as_str().into(),
                    "".into(),
                    BasicConsumeOptions {
                        exclusive: true,
                        no_ack: true,
                        ..BasicConsumeOptions::default()
                    },
                    lapin::types::FieldTable::default(),
                ),
            )
            .await
            .map_err(|_| {
                Error::ConnectionLost("basic.consume of a reader lock: no answer within 10s")
            })?;
            match consumed {
                // The consumer is kept: lapin cancels a dropped one.
                Ok(consumer) => return Ok(ReaderLock(Some((ch, consumer)))),
                // 403: another reader's exclusive consumer; 404: its queue
                // expired between the declare and the consume.
                Err(e) if started.elapsed() < LOCK_WAIT && conn_alive(self.conn) => {
                    tracing::debug!(queue = %name, error = %e, "dead-letter queue held by another reader; waiting");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(250));
                }
                Err(e) if conn_alive(self.conn) => {
                    tracing::debug!(queue = %name, error = %e, "reader lock not taken");
                    return Err(Error::Busy {
                        queue: self.queue(),
                        waited: LOCK_WAIT.as_secs(),
                    });
                }
                Err(e) => return Err(Error::broker(format!("reader lock {name}"))(e)),
            }
        }
    }

    /// Applies `action` to every dead letter `select` accepts; the others
    /// stay in the queue. `on_read` is called after each letter read (for
    /// progress).
    pub async fn settle(
        &self,
        action: Action,
        select: impl Fn(&DeadLetter) -> bool,
        mut on_read: impl FnMut(),
    ) -> Result<Settled, Error> {
        let lock = self.lock().await?;
        let before = self.ready().await;
        let limit = Self::to_read(before);
        let ch = crate::broker::confirming_channel(self.conn).await?;
        let mut settled = Settled::default();
        let mut last = None;
        // A replay's records: who replayed each letter, when, with what.
        let mut records = Vec::new();
        // The jobs of the letters settled, for the audit entry.
        let mut jobs = std::collections::BTreeSet::new();
        let mut read = 0;
        while read < limit {
            let Some(m) = self.get(&ch).await? else { break };
            read += 1;
            // The last letter *not* acked: give_back nacks up to it, and a
            // nack of an acked tag is a channel error (unknown delivery tag).
            let tag = m.delivery.delivery_tag;
            on_read();
            let dl = DeadLetter::read(&m.delivery.properties, &m.delivery.data);
            if !select(&dl) {
                last = Some(tag);
                continue;
            }
            let id = dl
                .fire_id
                .clone()
                .unwrap_or_else(|| "(no message id)".into());
            let job = dl.job_id.clone();
            if action == Action::Replay {
                let Some(mut fire) = dl.fire else {
                    let why = dl.undecodable.unwrap_or_default();
                    settled
                        .skipped
                        .push((id, format!("not a fire event: {why}")));
                    last = Some(tag);
                    continue;
                };
                if let Err(e) = fire.check_names() {
                    settled
                        .skipped
                        .push((id, format!("not a valid fire event: {e}")));
                    last = Some(tag);
                    continue;
                }
                fire.attempt = 1;
                fire.first_failure = None;
                if let Some((payload, key)) = &self.payload {
                    fire.payload = payload.clone();
                    fire.signature = key
                        .as_deref()
                        .map(|k| sundial_core::sign::sign_fire(k, &fire));
                }
                let enc = encode(&fire)?;
                let props = crate::broker::properties(&enc.meta);
                let mut h = props.headers().clone().unwrap_or_default();
                // Milliseconds, as the header says it (the runs carry it).
                let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
                h.insert(
                    headers::REPLAY.into(),
                    AMQPValue::LongString(sundial_core::protocol::timestamp(now).as_str().into()),
                );
                records.push(RunEvent {
                    replay: Some(now),
                    payload: self.payload.as_ref().map(|(p, _)| p.clone()),
                    by: self.asked.by.clone(),
                    reason: self.asked.reason.clone(),
                    ..RunEvent::new(
                        RunKind::Fired,
                        &fire.fire_id,
                        &fire.job_id,
                        &fire.pool,
                        REPLAYED_BY,
                        now,
                    )
                });
                publish_raw_confirmed(
                    &ch,
                    &self.topo.fire_exchange(),
                    // An every-worker fire goes back to its worker's queue.
                    &fire.routing_key(),
                    &enc.body,
                    props.with_headers(h),
                )
                .await
                .map_err(Error::not_stored(format!("replay of {id}")))?;
            }
            bounded("basic.ack of a dead letter: no answer within 10s", async {
                m.delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(Error::broker("basic.ack"))
            })
            .await?;
            settled.done.push(id);
            jobs.insert(job.unwrap_or_default());
        }
        if let Err(e) = self.record(&ch, records).await {
            tracing::warn!(pool = %self.pool, error = %e, "dead letters replayed, but who replayed them was not recorded");
            settled.unrecorded = Some(e.to_string());
        }
        if !settled.done.is_empty() {
            if let Err(e) = self.audit(&ch, action, &settled.done, jobs).await {
                tracing::warn!(pool = %self.pool, error = %e, "dead letters settled, but the audit entry was not stored");
                settled.unrecorded.get_or_insert(e.to_string());
            }
        }
        self.give_back(ch, last).await;
        let gone = u32::try_from(settled.done.len()).unwrap_or(u32::MAX);
        self.wait_back(before.unwrap_or(0).saturating_sub(gone))
            .await;
        lock.release().await;
        Ok(settled)
    }

    /// The audit entry of a replay or purge of `done` (ADR 0023): the job
    /// when they are all one job's.
    async fn audit(
        &self,
        ch: &Channel,
        action: Action,
        done: &[String],
        jobs: std::collections::BTreeSet<String>,
    ) -> Result<(), Error> {
        let verb = match action {
            Action::Replay => "replay",
            Action::Purge => "purge",
        };
        let mut entry = sundial_core::protocol::audit::AuditEntry::new(verb, chrono::Utc::now())
            .naming(&format!("letters of {}", self.queue()), done);
        entry.by = self.asked.by.clone();
        entry.reason = self.asked.reason.clone();
        entry.node = self.asked.node.clone();
        let jobs: Vec<String> = jobs.into_iter().filter(|j| !j.is_empty()).collect();
        entry = entry.of_jobs(&jobs);
        crate::audit::record(ch, self.topo, entry).await
    }

    /// Appends `records` to the history stream, confirmed, in batches that
    /// stay under its message size (a replaced payload may be 48 KiB).
    async fn record(&self, ch: &Channel, records: Vec<RunEvent>) -> Result<(), Error> {
        let limit = RunBatch::MAX_SIZE - 8 * 1024;
        let mut batch: Vec<RunEvent> = Vec::new();
        let mut size = 0;
        let mut batches = Vec::new();
        for r in records {
            let n = serde_json::to_vec(&r).map_or(limit, |v| v.len());
            if !batch.is_empty() && size + n > limit {
                batches.push(std::mem::take(&mut batch));
                size = 0;
            }
            size += n;
            batch.push(r);
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        for records in batches {
            let enc = encode(&RunBatch::of(records))?;
            crate::publish::publish_confirmed(ch, &self.topo.history_exchange(), "", &enc, || {})
                .await
                .map_err(Error::not_stored("replay records"))?;
        }
        Ok(())
    }

    async fn get(&self, ch: &Channel) -> Result<Option<lapin::message::BasicGetMessage>, Error> {
        bounded(
            "basic.get of a dead-letter queue: no answer within 10s",
            async {
                ch.basic_get(
                    self.queue().as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .map_err(Error::broker(format!("basic.get {}", self.queue())))
            },
        )
        .await
    }

    /// Calls `each` with every new dead letter of the pool until `stop`
    /// (a private queue bound to the dead-letter exchange sees copies; the
    /// dead-letter queue itself is not consumed).
    pub async fn watch(
        &self,
        stop: tokio_util::sync::CancellationToken,
        mut each: impl FnMut(DeadLetter),
    ) -> Result<(), Error> {
        let (_ch, mut consumer) =
            crate::broker::subscribe(self.conn, &self.topo.dead_exchange(), &[&self.pool]).await?;
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                d = consumer.next() => match d {
                    Some(Ok(d)) => each(DeadLetter::read(&d.properties, &d.data)),
                    Some(Err(e)) => return Err(Error::broker("dlq watch delivery")(e)),
                    None => return Err(Error::StreamEnded("dlq watch")),
                },
            }
        }
    }

    /// The number of messages in the dead-letter queue (`None`: the queue
    /// is not declared).
    pub async fn depth(&self) -> Result<Option<u32>, Error> {
        let counts = crate::broker::passive_declare(self.conn, &self.queue()).await?;
        Ok(counts.map(|(messages, _)| messages))
    }
}

/// A dead-letter queue's reader lock: held while its channel is open
/// (`None`: not taken, for lack of permission).
struct ReaderLock(Option<(Channel, lapin::Consumer)>);

impl ReaderLock {
    async fn release(self) {
        if let Some((ch, _consumer)) = self.0 {
            let _ = tokio::time::timeout(CALL_WAIT, ch.close(200, "dlq reader done".into())).await;
        }
    }
}

/// `fut`, or a connection error naming `what` after [`CALL_WAIT`].
async fn bounded<T>(
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(CALL_WAIT, fut)
        .await
        .unwrap_or(Err(Error::ConnectionLost(what)))
}

/// Whether the missing permission for the reader lock was logged.
static UNLOCKED_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn conn_alive(conn: &Connection) -> bool {
    conn.status().connected()
}

/// A header value as text: strings as they are, tables and arrays (the
/// broker's `x-death`) as JSON.
fn text(v: &AMQPValue) -> String {
    match json(v) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A header value as JSON.
fn json(v: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match v {
        AMQPValue::FieldTable(t) => Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.to_string(), json(v)))
                .collect(),
        ),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(json).collect()),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ByteArray(b) => Value::String(format!("{} bytes", b.as_slice().len())),
        AMQPValue::Void => Value::Null,
        other => Value::String(scalar(other)),
    }
}

/// A scalar header value as text.
fn scalar(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Timestamp(t) => {
            DateTime::<Utc>::from_timestamp(i64::try_from(*t).unwrap_or(0), 0)
                .map_or_else(|| t.to_string(), sundial_core::protocol::timestamp)
        }
        AMQPValue::Float(f) => f.to_string(),
        AMQPValue::Double(f) => f.to_string(),
        AMQPValue::DecimalValue(d) => format!("{}e-{}", d.value, d.scale),
        // Tables, arrays and bytes go through `json`.
        other => format!("{other:?}"),
    }
}
