//! Helpers for tests that drive workers: fire events as a scheduler would
//! publish them, a tap on every run event, an in-process worker with
//! handlers, and waits for consumers.

use std::{collections::BTreeMap, time::Duration};

use chrono::Utc;
use futures_util::StreamExt;
use lapin::{Channel, Connection, Consumer};
use sundial_amqp::publish::publish_all_confirmed;
use sundial_core::{
    codec::{decode, encode, Encoded},
    job::{Executor, Overlap, RetryPolicy, ShellExecutor},
    protocol::{
        fire::FireEvent,
        run::{RunEvent, RunKind},
    },
    topology::{shard_of, Topology},
    HumanDuration,
};
use sundial_worker::{Worker, WorkerBuilder, WorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::util::{bounded, test_topology, topology_apply, Vhost, TEST_SHARDS};

pub(crate) async fn connect(v: &Vhost) -> Connection {
    bounded(
        "connect",
        sundial_amqp::broker::connect(&v.url(), "it-worker"),
    )
    .await
    .expect("connects")
}

/// A fire event as the scheduler would publish it.
pub(crate) fn fire(job: &str, executor: Executor, max_attempts: u32, backoff: &[u64]) -> FireEvent {
    let now = Utc::now();
    FireEvent {
        fire_id: format!(
            "{job}@{}",
            now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        job_id: job.into(),
        pool: "default".into(),
        shard: shard_of(job, TEST_SHARDS),
        epoch: 1,
        scheduled_at: now,
        fired_at: now,
        attempt: 1,
        manual: false,
        executor,
        payload: serde_json::json!({ "job": job }),
        timeout: HumanDuration::from_secs(30),
        retry: RetryPolicy {
            max_attempts,
            backoff: backoff
                .iter()
                .map(|s| HumanDuration::from_secs(*s))
                .collect(),
        },
        overlap: Overlap::Allow,
        first_failure: None,
        signature: None,
    }
}

pub(crate) async fn publish(ch: &Channel, fires: &[FireEvent]) {
    let mut by_key: BTreeMap<String, Vec<Encoded>> = BTreeMap::new();
    for f in fires {
        by_key
            .entry(Topology::work_routing_key(&f.pool, f.shard))
            .or_default()
            .push(encode(f).expect("fire encodes"));
    }
    for (key, msgs) in by_key {
        bounded(
            "publish fires",
            publish_all_confirmed(ch, "sundial.fire", &key, &msgs),
        )
        .await
        .expect("fires confirmed");
    }
}

/// Every run record of the vhost from now on: from the history stream
/// (every record, batched: [`EventTap::new`]) or from `sundial.events`
/// bound with `#` (what `worker.run_events` publishes one by one:
/// [`EventTap::events`]).
pub(crate) struct EventTap {
    source: Source,
    /// Records of a batch not handed out yet.
    pending: std::collections::VecDeque<RunEvent>,
    /// Events read while waiting for another fire's, in arrival order.
    pub(crate) backlog: std::collections::VecDeque<RunEvent>,
}

/// Where a tap reads.
enum Source {
    /// The history stream (batches).
    History(sundial_amqp::history::Reader),
    /// `sundial.events`; the channel is held so the subscription lives as
    /// long as the tap.
    Events { _ch: Channel, events: Consumer },
}

impl EventTap {
    /// Every run record, from the history stream.
    pub(crate) async fn new(conn: &Connection) -> Self {
        let reader = bounded(
            "consume the history stream",
            sundial_amqp::history::Reader::open(
                conn,
                "sundial.history",
                sundial_amqp::history::StreamStart::Next,
                100,
            ),
        )
        .await
        .expect("history consumer");
        Self::of(Source::History(reader))
    }

    /// The run events published one by one on `sundial.events`.
    pub(crate) async fn events(conn: &Connection) -> Self {
        let (ch, events) = bounded(
            "subscribe to run events",
            sundial_amqp::broker::subscribe(conn, "sundial.events", &["#"]),
        )
        .await
        .expect("event subscription");
        Self::of(Source::Events { _ch: ch, events })
    }

    fn of(source: Source) -> Self {
        Self {
            source,
            pending: Default::default(),
            backlog: Default::default(),
        }
    }

    async fn receive(&mut self) -> RunEvent {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return ev;
            }
            match &mut self.source {
                Source::Events { events, .. } => {
                    let d = bounded("a run event", events.next())
                        .await
                        .expect("event stream open")
                        .expect("delivery");
                    let meta = sundial_amqp::broker::meta_of(&d.properties);
                    return decode::<RunEvent>(&meta, &d.data).expect("run event decodes");
                }
                Source::History(reader) => {
                    let m = bounded("a run record", reader.next())
                        .await
                        .expect("history read")
                        .expect("history stream open");
                    self.pending
                        .extend(m.batch.expect("run records decode").records);
                }
            }
        }
    }

    /// The next event of any fire.
    pub(crate) async fn next(&mut self) -> RunEvent {
        match self.backlog.pop_front() {
            Some(ev) => ev,
            None => self.receive().await,
        }
    }

    /// Events of `fire_id` until (and including) the first of kind `last`;
    /// other fires' events stay for later calls.
    pub(crate) async fn until(&mut self, fire_id: &str, last: RunKind) -> Vec<RunEvent> {
        let mut seen = Vec::new();
        let mut rest = std::collections::VecDeque::new();
        while let Some(ev) = self.backlog.pop_front() {
            if ev.fire_id != fire_id || seen.last().is_some_and(|e: &RunEvent| e.kind == last) {
                rest.push_back(ev);
            } else {
                seen.push(ev);
            }
        }
        self.backlog = rest;
        while seen.last().is_none_or(|e| e.kind != last) {
            let ev = self.receive().await;
            if ev.fire_id == fire_id {
                seen.push(ev);
            } else {
                self.backlog.push_back(ev);
            }
        }
        seen
    }
}

/// A vhost with the topology, a connection, an event tap and a confirming
/// channel to publish fires on.
pub(crate) struct Setup {
    pub(crate) v: Vhost,
    pub(crate) conn: Connection,
    pub(crate) tap: EventTap,
    pub(crate) ch: Channel,
}

pub(crate) async fn setup(tag: &str) -> Setup {
    let v = Vhost::new(tag);
    topology_apply(&v);
    let conn = connect(&v).await;
    let tap = EventTap::new(&conn).await;
    let ch = sundial_amqp::broker::confirming_channel(&conn)
        .await
        .expect("channel");
    Setup { v, conn, tap, ch }
}

pub(crate) fn shell(argv: &[&str]) -> Executor {
    Executor::Shell(ShellExecutor {
        command: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        cwd: None,
    })
}

pub(crate) fn kinds(evs: &[RunEvent], kind: RunKind) -> Vec<&RunEvent> {
    evs.iter().filter(|e| e.kind == kind).collect()
}

/// A fire of a no-op job.
pub(crate) fn noop_fire(job: &str) -> FireEvent {
    fire(job, Executor::Noop, 1, &[])
}

/// An in-process worker with `handlers`, stopped on drop.
pub(crate) struct InProcess {
    stop: CancellationToken,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    pub(crate) fn start(
        v: &Vhost,
        shell_allow: &[&str],
        build: impl FnOnce(WorkerBuilder) -> WorkerBuilder,
    ) -> Self {
        let cfg = WorkerConfig {
            broker: sundial_core::settings::BrokerSettings::from_url(v.url()),
            topology: test_topology(),
            pool: "default".into(),
            concurrency: 8,
            shutdown_deadline: Duration::from_secs(5),
            shell_allow: shell_allow.iter().map(|s| s.to_string()).collect(),
            id: "in-process".into(),
            consumer_timeout: Duration::from_secs(1800),
            health: sundial_runtime::Health::new(),
            hmac_key: None,
            supervisor: sundial_core::settings::SupervisorSettings {
                max_restarts: 10,
                within: Duration::from_secs(60),
            },
            run_events: sundial_core::settings::RunEvents::All,
            history_batch_max: 500,
            heartbeat_interval: Duration::from_secs(1),
        };
        let worker = build(Worker::builder(cfg)).build();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let done = tokio::spawn(async move {
            worker.run(token).await.expect("worker runs");
        });
        Self {
            stop,
            done: Some(done),
        }
    }

    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(d) = self.done.take() {
            bounded("worker stop", d).await.expect("worker task");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Waits until every work queue of the default pool has `n` consumers.
pub(crate) async fn wait_for_consumers(v: &Vhost, n: usize) {
    bounded("workers consuming", async {
        loop {
            let rows = v.list("list_queues", &["name", "consumers"]);
            let ready = rows
                .iter()
                .filter(|r| r.starts_with("sundial.work.default.") && !r.contains(".@"))
                .filter(|r| r.split_whitespace().nth(1) == Some(&n.to_string()))
                .count();
            if ready == TEST_SHARDS as usize {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

/// Declares `name`: a full queue that rejects every publish (max length 0,
/// `reject-publish`). Bound beside a real queue, it makes the broker nack
/// each message routed to it while the connection stays fine.
pub(crate) async fn declare_rejecting_queue(ch: &lapin::Channel, name: &str) {
    use lapin::types::{AMQPValue, FieldTable, LongString};
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("reject-publish")),
    );
    ch.queue_declare(
        name.into(),
        lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("declare the rejecting queue");
}
