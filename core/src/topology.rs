//! Names and arguments of every exchange, queue and binding (docs/protocol.md
//! §2), under a configurable prefix. Pure data: `sundial-amqp` declares it.
//!
//! These names are the wire contract with clients in other languages; they
//! are documented in `docs/protocol.md`.

use std::collections::BTreeMap;

use crate::duration::HumanDuration;

/// Routing key of the control DLQ on the dead-letter exchange; `control` is a
/// reserved pool name for this reason.
pub const CONTROL_DEAD_KEY: &str = "control";
/// Registry stream segment size (retention deletes whole segments).
pub const REGISTRY_SEGMENT_BYTES: i64 = 8 * 1024 * 1024;
/// Segment size of the history stream: retention drops whole segments.
pub const HISTORY_SEGMENT_BYTES: i64 = 64 * 1024 * 1024;
/// Header on retry publishes that selects the retry tier queue.
/// Not `x-` prefixed: RabbitMQ's headers exchange ignores `x-` headers when
/// matching, so such a binding would match every message (every tier).
pub const RETRY_TIER_HEADER: &str = "sundial-retry-tier";

/// A queue or binding argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

pub type Args = BTreeMap<String, ArgValue>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDecl {
    pub name: String,
    pub kind: ExchangeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDecl {
    pub name: String,
    pub args: Args,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingDecl {
    pub queue: String,
    pub exchange: String,
    pub routing_key: String,
    pub args: Args,
}

/// Everything `topology apply` declares, in dependency order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declarations {
    pub exchanges: Vec<ExchangeDecl>,
    pub queues: Vec<QueueDecl>,
    pub bindings: Vec<BindingDecl>,
    /// `(queue, argument, what it costs to keep the old queue)`: an argument
    /// added to that queue after the first release. A queue an older Sundial
    /// declared without it is kept as it is, with a warning saying what to
    /// do (the broker cannot change a queue's arguments, only a policy can).
    pub added_later: Vec<(String, &'static str, &'static str)>,
}

/// Why an older delivery-limit-less dead-letter queue matters.
pub const OLD_DEAD_LETTER_QUEUE: &str = "before running RabbitMQ 4.x apply the dead-letter policy of docs/operations.md (Upgrades), or reading dead letters more than 20 times may drop them";
/// Why an older queue without replication arguments matters.
pub const OLD_UNREPLICATED_QUEUE: &str = "declared before replication settings (topology.replicas, balanced leaders): on a cluster it keeps its old placement; docs/operations.md (Cluster) says how to recreate it";
/// Why an older classic last-value queue matters.
pub const OLD_CLASSIC_LAST_VALUE: &str = "a classic queue lives on one node: on a cluster, losing that node loses the value (docs/operations.md, Cluster: delete it once while no scheduler runs, then `sundial topology apply`)";

/// The delivery limit of the dead-letter queues: reading a dead letter
/// (`basic.get`, then returned) counts as a delivery on RabbitMQ 3.x and
/// 4.0–4.2, and 4.x gives quorum queues a default limit of 20, past which
/// the letter would be dropped. Set, the default does not apply; this high,
/// reading never reaches it. (`-1`, which 4.x reads as "no limit", makes 3.10
/// drop a message on its first return.)
pub const DEAD_LETTER_DELIVERY_LIMIT: i64 = i32::MAX as i64;

/// A dead-letter queue's arguments.
fn dead_letter_queue() -> Args {
    let mut a = quorum();
    a.insert(
        "x-delivery-limit".into(),
        ArgValue::Int(DEAD_LETTER_DELIVERY_LIMIT),
    );
    a
}

/// A worker's own queue goes this long after its worker stopped consuming.
pub const WORKER_QUEUE_EXPIRES_MS: i64 = 3_600_000;

/// The topology of one Sundial installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Prefix of every name (`sundial`); lets several installations share a vhost.
    pub prefix: String,
    /// Number of timer shards and work queues per pool. Changing it moves jobs
    /// between shards, so it is fixed per installation.
    pub shards: u32,
    /// Pools whose work and dead-letter queues are declared.
    pub pools: Vec<String>,
    /// Retry delays with a tier queue each.
    pub retry_tiers: Vec<HumanDuration>,
    /// `x-delivery-limit` of work and control queues: the last guard against a
    /// redelivery loop (quorum queues have no default limit in 3.10).
    pub delivery_limit: u32,
    /// Age after which registry stream segments may be deleted. Safe because
    /// the scheduler writes a complete snapshot at least every quarter of it
    /// (docs/semantics.md §5).
    pub registry_max_age: std::time::Duration,
    /// History stream retention by age (`x-max-age`).
    pub history_max_age: std::time::Duration,
    /// History stream retention by size (`x-max-length-bytes`).
    pub history_max_bytes: u64,
    /// Members of every quorum queue and stream (`topology.replicas`; the
    /// broker caps it at the nodes it has).
    pub replicas: u32,
}

impl Topology {
    pub fn control_exchange(&self) -> String {
        format!("{}.control", self.prefix)
    }
    pub fn control_queue(&self) -> String {
        format!("{}.control", self.prefix)
    }
    pub fn registry_stream(&self) -> String {
        format!("{}.registry", self.prefix)
    }
    /// The run history stream: every run record, in batches (ADR 0015).
    pub fn history_stream(&self) -> String {
        format!("{}.history", self.prefix)
    }
    /// The fanout exchange run records are published to (bound to the
    /// stream of the same name): a worker's user may write to it without
    /// being allowed the default exchange, which reaches every queue.
    pub fn history_exchange(&self) -> String {
        format!("{}.history", self.prefix)
    }
    /// Last-value queue naming the newest complete registry snapshot.
    pub fn registry_index_queue(&self) -> String {
        format!("{}.registry.index", self.prefix)
    }
    pub fn fire_exchange(&self) -> String {
        format!("{}.fire", self.prefix)
    }
    pub fn work_queue(&self, pool: &str, shard: u32) -> String {
        format!("{}.work.{pool}.{shard}", self.prefix)
    }
    /// Routing key of a fire on the fire exchange.
    pub fn work_routing_key(pool: &str, shard: u32) -> String {
        format!("{pool}.{shard}")
    }
    /// A worker's own queue (`fanout = "every-worker"` fires for it),
    /// declared by the worker; removed by the broker an hour after its
    /// worker stopped consuming.
    pub fn worker_queue(&self, pool: &str, worker: &str) -> String {
        format!("{}.work.{pool}.@{worker}", self.prefix)
    }
    /// Routing key of a fire for one worker.
    pub fn worker_routing_key(pool: &str, worker: &str) -> String {
        format!("{pool}.@{worker}")
    }
    /// What a worker declares for its own queue: a quorum queue like the
    /// pool's work queues (replicated, so it survives the loss of a node
    /// and the worker's reconnects; poison fires dead-lettered after the
    /// delivery limit), removed by the broker an hour after its worker
    /// stopped consuming (`x-expires`, which quorum queues take since
    /// RabbitMQ 3.10); bound to the fire exchange by `{pool}.@{worker}`.
    pub fn worker_declarations(&self, pool: &str, worker: &str) -> Declarations {
        let queue = self.worker_queue(pool, worker);
        let mut args = self.dead_lettering_quorum(pool);
        args.insert("x-expires".into(), ArgValue::Int(WORKER_QUEUE_EXPIRES_MS));
        let mut d = Declarations {
            exchanges: vec![ExchangeDecl {
                name: self.fire_exchange(),
                kind: ExchangeKind::Direct,
            }],
            queues: vec![QueueDecl {
                name: queue.clone(),
                args,
            }],
            bindings: vec![BindingDecl {
                queue,
                exchange: self.fire_exchange(),
                routing_key: Self::worker_routing_key(pool, worker),
                args: Args::new(),
            }],
            added_later: Vec::new(),
        };
        self.replicate(&mut d);
        d.added_later.clear();
        d
    }
    pub fn retry_exchange(&self) -> String {
        format!("{}.retry", self.prefix)
    }
    pub fn retry_queue(&self, tier: HumanDuration) -> String {
        format!("{}.retry.{}", self.prefix, tier_name(tier))
    }
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    pub fn dead_queue(&self, pool: &str) -> String {
        format!("{}.dead.{pool}", self.prefix)
    }
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }
    /// Routing key of a run event: `{pool}.{job_id}.{kind}`.
    pub fn event_routing_key(pool: &str, job_id: &str, kind: &str) -> String {
        format!("{pool}.{job_id}.{kind}")
    }
    pub fn lease_queue(&self, shard: u32) -> String {
        format!("{}.lease.{shard}", self.prefix)
    }
    pub fn watermark_queue(&self, shard: u32) -> String {
        format!("{}.watermark.{shard}", self.prefix)
    }
    /// Direct exchange for run cancellations (`overlap = "replace"`);
    /// routing key = worker id, each worker binds a private queue.
    pub fn cancel_exchange(&self) -> String {
        format!("{}.cancel", self.prefix)
    }
    /// Fanout exchange for scheduler heartbeats.
    pub fn nodes_exchange(&self) -> String {
        format!("{}.nodes", self.prefix)
    }
    /// Fanout exchange for worker heartbeats (read by `sundial status`).
    pub fn workers_exchange(&self) -> String {
        format!("{}.workers", self.prefix)
    }

    /// `shard = fnv1a64(job_id) mod shards`. FNV-1a is fixed here forever:
    /// changing it would move every job to another shard.
    pub fn shard_of(&self, job_id: &str) -> u32 {
        shard_of(job_id, self.shards)
    }

    /// Every exchange, queue and binding, in the order to declare them.
    pub fn declarations(&self) -> Declarations {
        let mut d = Declarations::default();
        let ex = |name: String, kind| ExchangeDecl { name, kind };
        d.exchanges = vec![
            ex(self.control_exchange(), ExchangeKind::Fanout),
            ex(self.fire_exchange(), ExchangeKind::Direct),
            ex(self.retry_exchange(), ExchangeKind::Headers),
            ex(self.dead_exchange(), ExchangeKind::Direct),
            ex(self.events_exchange(), ExchangeKind::Topic),
            ex(self.nodes_exchange(), ExchangeKind::Fanout),
            ex(self.cancel_exchange(), ExchangeKind::Direct),
            ex(self.history_exchange(), ExchangeKind::Fanout),
            ex(self.workers_exchange(), ExchangeKind::Fanout),
        ];

        let bind = |queue: &str, exchange: String, key: String| BindingDecl {
            queue: queue.to_string(),
            exchange,
            routing_key: key,
            args: Args::new(),
        };

        let control = self.control_queue();
        // One scheduler at a time decides commands (in stream order, against
        // an up-to-date view); the others follow the registry stream.
        let mut control_args = self.dead_lettering_quorum(CONTROL_DEAD_KEY);
        control_args.insert("x-single-active-consumer".into(), ArgValue::Bool(true));
        d.queues.push(QueueDecl {
            name: control.clone(),
            args: control_args,
        });
        d.bindings
            .push(bind(&control, self.control_exchange(), String::new()));

        let registry = self.registry_stream();
        d.queues.push(QueueDecl {
            name: registry,
            args: Args::from([
                ("x-queue-type".into(), ArgValue::Str("stream".into())),
                // Retention acts on whole segments: keep them small enough
                // that old records actually go.
                (
                    "x-stream-max-segment-size-bytes".into(),
                    ArgValue::Int(REGISTRY_SEGMENT_BYTES),
                ),
                (
                    "x-max-age".into(),
                    ArgValue::Str(format!("{}s", self.registry_max_age.as_secs().max(1))),
                ),
            ]),
        });
        d.queues.push(QueueDecl {
            name: self.history_stream(),
            args: Args::from([
                ("x-queue-type".into(), ArgValue::Str("stream".into())),
                (
                    "x-stream-max-segment-size-bytes".into(),
                    ArgValue::Int(HISTORY_SEGMENT_BYTES),
                ),
                (
                    "x-max-age".into(),
                    ArgValue::Str(format!("{}s", self.history_max_age.as_secs().max(1))),
                ),
                (
                    "x-max-length-bytes".into(),
                    ArgValue::Int(i64::try_from(self.history_max_bytes).unwrap_or(i64::MAX)),
                ),
            ]),
        });
        d.bindings.push(bind(
            &self.history_stream(),
            self.history_exchange(),
            String::new(),
        ));
        let index = self.registry_index_queue();
        d.queues.push(QueueDecl {
            name: index.clone(),
            args: last_value_queue(),
        });
        for arg in LAST_VALUE_ARGS {
            d.added_later
                .push((index.clone(), arg, OLD_CLASSIC_LAST_VALUE));
        }

        let dead_control = self.dead_queue(CONTROL_DEAD_KEY);
        d.queues.push(QueueDecl {
            name: dead_control.clone(),
            args: dead_letter_queue(),
        });
        d.added_later.push((
            dead_control.clone(),
            "x-delivery-limit",
            OLD_DEAD_LETTER_QUEUE,
        ));
        d.bindings.push(bind(
            &dead_control,
            self.dead_exchange(),
            CONTROL_DEAD_KEY.into(),
        ));

        for pool in &self.pools {
            let dead = self.dead_queue(pool);
            d.queues.push(QueueDecl {
                name: dead.clone(),
                args: dead_letter_queue(),
            });
            d.added_later
                .push((dead.clone(), "x-delivery-limit", OLD_DEAD_LETTER_QUEUE));
            d.bindings
                .push(bind(&dead, self.dead_exchange(), pool.clone()));
            for shard in 0..self.shards {
                let q = self.work_queue(pool, shard);
                d.queues.push(QueueDecl {
                    name: q.clone(),
                    args: self.dead_lettering_quorum(pool),
                });
                d.bindings.push(bind(
                    &q,
                    self.fire_exchange(),
                    Self::work_routing_key(pool, shard),
                ));
            }
        }

        for &tier in &self.retry_tiers {
            let q = self.retry_queue(tier);
            // Expired messages go back to the fire exchange with their original
            // routing key `{pool}.{shard}`. A fixed TTL per queue, because a
            // per-message TTL only expires at the head of the queue.
            let mut args = quorum();
            args.insert(
                "x-message-ttl".into(),
                ArgValue::Int(i64::try_from(tier.as_millis_u64()).unwrap_or(i64::MAX)),
            );
            args.insert(
                "x-dead-letter-exchange".into(),
                ArgValue::Str(self.fire_exchange()),
            );
            args.insert(
                "x-dead-letter-strategy".into(),
                ArgValue::Str("at-least-once".into()),
            );
            args.insert("x-overflow".into(), ArgValue::Str("reject-publish".into()));
            d.queues.push(QueueDecl {
                name: q.clone(),
                args,
            });
            d.bindings.push(BindingDecl {
                queue: q,
                exchange: self.retry_exchange(),
                routing_key: String::new(),
                args: Args::from([
                    ("x-match".into(), ArgValue::Str("all".into())),
                    (RETRY_TIER_HEADER.into(), ArgValue::Str(tier_name(tier))),
                ]),
            });
        }

        for shard in 0..self.shards {
            let q = self.watermark_queue(shard);
            d.queues.push(QueueDecl {
                name: q.clone(),
                args: last_value_queue(),
            });
            for arg in LAST_VALUE_ARGS {
                d.added_later.push((q.clone(), arg, OLD_CLASSIC_LAST_VALUE));
            }
        }
        self.replicate(&mut d);
        d
    }

    /// Every quorum queue and stream gets `replicas` members (the broker
    /// takes as many as the cluster has nodes, so 3 is right for one node
    /// too) and leaders spread over the nodes.
    fn replicate(&self, d: &mut Declarations) {
        for q in &mut d.queues {
            let size_arg = match q.args.get("x-queue-type") {
                Some(ArgValue::Str(t)) if t == "quorum" => "x-quorum-initial-group-size",
                Some(ArgValue::Str(t)) if t == "stream" => "x-initial-cluster-size",
                _ => continue,
            };
            q.args
                .insert(size_arg.into(), ArgValue::Int(i64::from(self.replicas)));
            q.args.insert(
                "x-queue-leader-locator".into(),
                ArgValue::Str(LEADER_LOCATOR.into()),
            );
            for arg in [size_arg, "x-queue-leader-locator"] {
                d.added_later
                    .push((q.name.clone(), arg, OLD_UNREPLICATED_QUEUE));
            }
        }
    }

    /// A quorum queue that dead-letters at-least-once to the dead exchange
    /// with `dead_key`, and stops redelivering after `delivery_limit`.
    fn dead_lettering_quorum(&self, dead_key: &str) -> Args {
        let mut a = quorum();
        a.insert(
            "x-delivery-limit".into(),
            ArgValue::Int(i64::from(self.delivery_limit)),
        );
        a.insert(
            "x-dead-letter-exchange".into(),
            ArgValue::Str(self.dead_exchange()),
        );
        a.insert(
            "x-dead-letter-routing-key".into(),
            ArgValue::Str(dead_key.to_string()),
        );
        // At-least-once dead-lettering requires reject-publish overflow.
        a.insert(
            "x-dead-letter-strategy".into(),
            ArgValue::Str("at-least-once".into()),
        );
        a.insert("x-overflow".into(), ArgValue::Str("reject-publish".into()));
        a
    }
}

/// Where quorum queue and stream leaders go: the node with the fewest
/// (RabbitMQ 3.10 accepts `client-local` and `balanced`).
pub const LEADER_LOCATOR: &str = "balanced";

/// The arguments a last-value queue gained when it became a quorum queue.
const LAST_VALUE_ARGS: [&str; 4] = [
    "x-queue-type",
    "x-overflow",
    "x-delivery-limit",
    "x-max-length",
];

/// A replicated "last value" (a watermark, the registry index): a quorum
/// queue that keeps its newest message only. Read by `basic.get` and
/// returned (a delivery each time): the limit is one reading never reaches.
fn last_value_queue() -> Args {
    let mut a = quorum();
    a.insert("x-max-length".into(), ArgValue::Int(1));
    a.insert("x-overflow".into(), ArgValue::Str("drop-head".into()));
    a.insert(
        "x-delivery-limit".into(),
        ArgValue::Int(DEAD_LETTER_DELIVERY_LIMIT),
    );
    a
}

fn quorum() -> Args {
    Args::from([("x-queue-type".into(), ArgValue::Str("quorum".into()))])
}

/// The name of a retry tier in queue names and the tier header: humantime
/// without spaces (`10s`, `1m`, `1h30m`).
pub fn tier_name(tier: HumanDuration) -> String {
    tier.to_string().replace(' ', "")
}

/// FNV-1a 64 of the id's UTF-8 bytes, modulo `shards` (which must be > 0).
pub fn shard_of(job_id: &str, shards: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let h = job_id
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    u32::try_from(h % u64::from(shards.max(1))).unwrap_or(0)
}
