//! The control consumer: reads `sundial.control`, has the Registry execute
//! each command, replies to `reply_to` with the same `correlation_id`, and
//! dead-letters every refused command with the reason. Bad input never stops
//! it; every delivery is acked exactly once, after its reply and dead letter.

use actix::Addr;
use futures_util::{FutureExt, StreamExt};
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions},
    types::{FieldTable, ShortString},
    BasicProperties, Channel, Connection,
};
use sundial_core::{
    codec::{decode, encode},
    protocol::control::{Command, Reply, ReplyError},
    sign::{self, SignError},
    topology::{Topology, CONTROL_DEAD_KEY},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::registry::{Execute, Registry};
use sundial_amqp::broker::meta_of;

use crate::error::Error;

/// Commands read ahead of the one being executed.
const CONTROL_PREFETCH: u16 = 16;

/// This consumer's part in `/readyz`: ready once it is attached.
pub(crate) const HEALTH_PART: &str = "control";

/// Consumes until `shutdown` is cancelled (`Ok`) or the channel fails (`Err`).
/// Pools named by commands are probed through `probe`, never on `conn`.
// Each argument is one thing the consumer uses; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    conn: &Connection,
    probe: &sundial_amqp::broker::Probe,
    topo: &Topology,
    node: &str,
    registry: Addr<Registry>,
    key: Option<std::sync::Arc<[u8]>>,
    health: &sundial_runtime::Health,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut seen = Signatures::default();
    let mut pools = PoolCheck::new(probe, topo);
    let ch = sundial_amqp::broker::confirming_channel(conn).await?;
    ch.basic_qos(CONTROL_PREFETCH, BasicQosOptions::default())
        .await
        .map_err(Error::broker("basic.qos"))?;
    let mut consumer = ch
        .basic_consume(
            topo.control_queue().as_str().into(),
            format!("control-{node}").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("basic.consume control"))?;
    health.set(HEALTH_PART, None);
    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => {
                // Closed here, not by drop: a drop-close racing the
                // connection's close makes lapin report a connection error.
                let _ = ch.close(200, "control stopping".into()).await;
                return Ok(());
            }
            d = consumer.next() => d,
        };
        let Some(delivery) = delivery else {
            return Err(Error::stream_ended("control consumer"));
        };
        let delivery = delivery.map_err(Error::broker("control delivery"))?;
        let checked = match &key {
            Some(k) => seen.check(k, &delivery),
            None => Ok(()),
        };
        // A panic here is a bug that the same command repeats: it ends this
        // command (dead-lettered with the reason, acked), not the scheduler
        // (which would take it again at every restart).
        let handled = std::panic::AssertUnwindSafe(handle(
            &ch, topo, &registry, &mut pools, &delivery, checked,
        ))
        .catch_unwind()
        .await;
        match handled {
            Ok(r) => r?,
            Err(panic) => {
                let what = sundial_runtime::panic::panic_text(&*panic);
                let reason =
                    format!("scheduler panicked on this command (a bug; please report it): {what}");
                tracing::error!(%reason, "control command dead-lettered");
                dead_letter(&ch, topo, &delivery, &reason).await?;
                if let Some(reply_to) = delivery.properties.reply_to() {
                    let reply = Reply::error(
                        command_name(&delivery.data),
                        ReplyError {
                            field: "body".into(),
                            message: reason,
                        },
                    );
                    let correlation = delivery.properties.correlation_id().clone();
                    send_reply(&ch, reply_to.as_str(), correlation, &reply).await;
                }
            }
        }
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(Error::broker("basic.ack control"))?;
    }
}

async fn handle(
    ch: &Channel,
    topo: &Topology,
    registry: &Addr<Registry>,
    pools: &mut PoolCheck<'_>,
    d: &Delivery,
    signature: Result<(), SignError>,
) -> Result<(), Error> {
    let meta = meta_of(&d.properties);
    let reply = match signature.map(|()| decode::<Command>(&meta, &d.data)) {
        Err(e) => Reply::error(
            command_name(&d.data),
            ReplyError {
                field: "signature".into(),
                message: e.to_string(),
            },
        ),
        Ok(Ok(cmd)) => {
            let missing_pools = pools.missing(&cmd).await?;
            registry.send(Execute { cmd, missing_pools }).await?
        }
        Ok(Err(e)) => Reply::error(
            command_name(&d.data),
            ReplyError {
                field: e.field(),
                message: e.reply_message(),
            },
        ),
    };
    let command = reply.command.clone().unwrap_or_else(|| "?".into());
    let outcome = if reply.ok { "ok" } else { "error" };
    metrics::counter!(sundial_runtime::metrics::CONTROL_COMMANDS_TOTAL, "command" => command.clone(), "outcome" => outcome).increment(1);
    if let Some(err) = &reply.error {
        if !reply.ok {
            dead_letter(ch, topo, d, &format!("{}: {}", err.field, err.message)).await?;
        }
    }
    match d.properties.reply_to() {
        Some(reply_to) => {
            send_reply(
                ch,
                reply_to.as_str(),
                d.properties.correlation_id().clone(),
                &reply,
            )
            .await
        }
        None => {
            if reply.ok {
                info!(command = %command, "control command done (no reply_to)");
            } else {
                warn!(command = %command, error = ?reply.error, "control command refused (no reply_to)");
            }
        }
    }
    Ok(())
}

/// Republishes the command to the dead-letter exchange with the reason.
async fn dead_letter(
    ch: &Channel,
    topo: &Topology,
    d: &Delivery,
    reason: &str,
) -> Result<(), Error> {
    let why = sundial_amqp::publish::DeadReason {
        error: reason,
        attempts: 1,
        ..Default::default()
    };
    sundial_amqp::publish::dead_letter(
        ch,
        &topo.dead_exchange(),
        CONTROL_DEAD_KEY,
        &d.data,
        &d.properties,
        &why,
    )
    .await?;
    warn!(reason, "control command dead-lettered");
    Ok(())
}

async fn send_reply(
    ch: &Channel,
    reply_to: &str,
    correlation_id: Option<ShortString>,
    reply: &Reply,
) {
    let Ok(enc) = encode(reply) else { return };
    // Persistent, as every Sundial message (docs/protocol.md §1); a reply
    // queue that is not durable drops it anyway on a broker restart.
    let mut props: BasicProperties =
        sundial_amqp::broker::properties(&enc.meta).with_delivery_mode(2);
    if let Some(c) = correlation_id {
        props = props.with_correlation_id(c);
    }
    // Not mandatory and not awaited: the client may have gone away, which
    // must not block the control queue.
    if let Err(e) = ch
        .basic_publish(
            "".into(),
            reply_to.into(),
            BasicPublishOptions::default(),
            &enc.body,
            props,
        )
        .await
    {
        warn!(reply_to, error = %e, "reply not sent");
    }
}

/// The command a body names, when it names a known one: replies to
/// commands that could not be read still say which command they answer.
fn command_name(body: &[u8]) -> Option<&'static str> {
    if body.len() > sundial_core::protocol::MIB {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let name = v.get("command")?.as_str()?;
    Command::NAMES.iter().copied().find(|n| *n == name)
}

/// Which pools have work queues, found by a passive declare of the pool's
/// first work queue (needs no configure permission: the scheduler's
/// least-privilege user can do it). Pools found are remembered; a missing
/// one is asked again at its next command (a worker may have declared it
/// meanwhile).
struct PoolCheck<'a> {
    probe: &'a sundial_amqp::broker::Probe,
    topo: Topology,
    known: std::collections::HashSet<String>,
}

impl<'a> PoolCheck<'a> {
    fn new(probe: &'a sundial_amqp::broker::Probe, topo: &Topology) -> Self {
        Self {
            probe,
            topo: topo.clone(),
            known: topo.pools.iter().cloned().collect(),
        }
    }

    /// Pools of `cmd`'s jobs without work queues.
    async fn missing(
        &mut self,
        cmd: &Command,
    ) -> Result<std::collections::BTreeSet<String>, Error> {
        let pools: std::collections::BTreeSet<&str> = match cmd {
            Command::Upsert { job, .. } => job.pools().map(|(_, p)| p).collect(),
            Command::UpsertMany { jobs, .. } => jobs
                .iter()
                .flat_map(|j| j.pools().map(|(_, p)| p))
                .collect(),
            _ => return Ok(Default::default()),
        };
        let mut missing = std::collections::BTreeSet::new();
        for pool in pools {
            // A name that is no pool is refused by the job's validation,
            // naming the field; it never becomes a queue name.
            if self.known.contains(pool) || sundial_core::job::check_pool("pool", pool).is_err() {
                continue;
            }
            let queue = self.topo.work_queue(pool, 0);
            match self.probe.passive_declare(&queue).await {
                Ok(Some(_)) => {
                    self.known.insert(pool.to_string());
                }
                Ok(None) => {
                    info!(pool, %queue, "job refused: its pool has no queues");
                    missing.insert(pool.to_string());
                }
                // A broker that refuses even a passive declare: take the
                // pool as declared (a fire that stays unroutable is still
                // set aside by its timer shard).
                Err(e) if e.is_access_refused() => {
                    warn!(pool, %queue, error = %e, "cannot check the pool's queues; accepting its jobs");
                    self.known.insert(pool.to_string());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(missing)
    }
}

/// Signatures accepted within the last [`sign::MAX_AGE`]: the same signed
/// command delivered again is a replay.
#[derive(Default)]
struct Signatures {
    /// signature → signed_at.
    seen: std::collections::HashMap<String, i64>,
}

impl Signatures {
    fn check(&mut self, key: &[u8], d: &Delivery) -> Result<(), SignError> {
        let headers = d.properties.headers().as_ref();
        let get = |name: &str| headers.and_then(|h| h.inner().get(name));
        let signature = sundial_amqp::broker::header_string(&d.properties, sign::SIGNATURE_HEADER);
        let signed_at = get(sign::SIGNED_AT_HEADER).and_then(sundial_amqp::broker::integer);
        let nonce = sundial_amqp::broker::header_string(&d.properties, sign::NONCE_HEADER);
        let now = chrono::Utc::now().timestamp();
        sign::verify_command(
            key,
            signature.as_deref(),
            signed_at,
            nonce.as_deref(),
            &d.data,
            now,
        )?;
        let max_age = i64::try_from(sign::MAX_AGE.as_secs()).unwrap_or(i64::MAX);
        self.seen.retain(|_, at| now - *at <= max_age);
        let signature = signature.unwrap_or_default();
        if self.seen.contains_key(&signature) {
            return Err(SignError::Replayed);
        }
        self.seen.insert(signature, signed_at.unwrap_or(now));
        Ok(())
    }
}
