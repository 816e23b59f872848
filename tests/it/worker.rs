//! Workers as users run them: fire events published straight to
//! `sundial.fire` (as a scheduler would), outcomes observed on
//! `sundial.events` and in the dead-letter queue. Handler jobs run in an
//! in-process worker (the embedding API); process-level behaviour (several
//! workers, SIGKILL) runs `sundial worker` processes.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::Utc;
use futures_util::StreamExt;
use lapin::{options::BasicPublishOptions, BasicProperties, Channel, Connection, Consumer};
use sundial_actors::{
    dlq::Dlq,
    publish::publish_all_confirmed,
    worker::{JobError, Worker, WorkerBuilder, WorkerConfig},
};
use sundial_core::{
    codec::{decode, encode, Encoded},
    job::{Executor, Overlap, RetryPolicy, ShellExecutor},
    protocol::{
        fire::FireEvent,
        headers,
        run::{RunEvent, RunKind},
    },
    topology::{shard_of, Topology},
    HumanDuration,
};
use tokio_util::sync::CancellationToken;

use crate::util::{
    bounded, stderr, stdout, sundial, test_topology, topology_apply, Daemon, HttpSink, Vhost,
    TEST_SHARDS,
};

pub(crate) async fn connect(v: &Vhost) -> Connection {
    bounded(
        "connect",
        sundial_actors::broker::connect(&v.url(), "it-worker"),
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

/// Every run event of the vhost, from a private queue bound with `#`.
pub(crate) struct EventTap {
    events: Consumer,
    /// Held so the subscription's channel lives as long as the tap.
    _ch: Channel,
    /// Events read while waiting for another fire's, in arrival order.
    backlog: std::collections::VecDeque<RunEvent>,
}

impl EventTap {
    pub(crate) async fn new(conn: &Connection) -> Self {
        let (ch, events) = bounded(
            "subscribe to run events",
            sundial_actors::broker::subscribe(conn, "sundial.events", &["#"]),
        )
        .await
        .expect("event subscription");
        Self {
            events,
            _ch: ch,
            backlog: Default::default(),
        }
    }

    async fn receive(&mut self) -> RunEvent {
        let d = bounded("a run event", self.events.next())
            .await
            .expect("event stream open")
            .expect("delivery");
        decode::<RunEvent>(&sundial_actors::broker::meta_of(&d.properties), &d.data)
            .expect("run event decodes")
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
    let ch = sundial_actors::broker::confirming_channel(&conn)
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

fn kinds(evs: &[RunEvent], kind: RunKind) -> Vec<&RunEvent> {
    evs.iter().filter(|e| e.kind == kind).collect()
}

/// A fire of a no-op job.
pub(crate) fn noop_fire(job: &str) -> FireEvent {
    fire(job, Executor::Noop, 1, &[])
}

/// An in-process worker with `handlers`, stopped on drop.
struct InProcess {
    stop: CancellationToken,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    fn start(
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
            health: sundial_actors::http::Health::new(),
            hmac_key: None,
            supervisor: sundial_core::settings::SupervisorSettings {
                max_restarts: 10,
                within: Duration::from_secs(60),
            },
            run_events: sundial_core::settings::RunEvents::All,
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

    async fn stop(mut self) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_failing_twice_succeeds_on_third_attempt_after_backoff() {
    let Setup {
        v,
        conn,
        mut tap,
        ch,
    } = setup("w-flaky").await;
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let w = InProcess::start(&v, &[], move |w| {
        w.handler("flaky", move |ctx, _payload| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                if ctx.attempt < 3 {
                    Err(JobError::retry(format!("flaky attempt {}", ctx.attempt)))
                } else {
                    Ok(())
                }
            }
        })
    });
    let f = fire(
        "flaky",
        Executor::Handler {
            name: "flaky".into(),
        },
        5,
        &[1, 2],
    );
    publish(&ch, std::slice::from_ref(&f)).await;

    let evs = tap.until(&f.fire_id, RunKind::Succeeded).await;
    let started: Vec<u32> = kinds(&evs, RunKind::Started)
        .iter()
        .map(|e| e.attempt)
        .collect();
    assert_eq!(started, vec![1, 2, 3], "three attempts in order: {evs:?}");
    let retrying = kinds(&evs, RunKind::Retrying);
    assert_eq!(retrying.len(), 2, "two retries: {evs:?}");
    assert!(
        kinds(&evs, RunKind::Skipped).is_empty(),
        "no duplicate deliveries: {evs:?}"
    );
    assert_eq!(kinds(&evs, RunKind::Succeeded).len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Backoff respected: attempt n+1 starts at least the tier delay after
    // attempt n failed (1 s, then 2 s).
    let start_of = |a: u32| {
        kinds(&evs, RunKind::Started)
            .into_iter()
            .find(|e| e.attempt == a)
            .map(|e| e.at)
            .expect("started")
    };
    let gap1 = start_of(2) - retrying[0].at;
    let gap2 = start_of(3) - retrying[1].at;
    assert!(
        gap1 >= chrono::Duration::milliseconds(950),
        "first backoff {gap1}"
    );
    assert!(
        gap2 >= chrono::Duration::milliseconds(1950),
        "second backoff {gap2}"
    );

    let depth = Dlq::new(&conn, &test_topology(), "default")
        .depth()
        .await
        .expect("dlq depth");
    assert_eq!(depth, 0, "nothing dead-lettered");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_job_is_dead_lettered_with_headers_and_replays() {
    let Setup {
        v,
        conn,
        mut tap,
        ch,
    } = setup("w-dead").await;
    let w = InProcess::start(&v, &[], |w| {
        w.handler("broken", |_ctx, _payload| async {
            Err(JobError::retry("upstream says no"))
        })
    });
    let f = fire(
        "broken",
        Executor::Handler {
            name: "broken".into(),
        },
        3,
        &[1],
    );
    publish(&ch, std::slice::from_ref(&f)).await;

    let evs = tap.until(&f.fire_id, RunKind::Dead).await;
    let started: Vec<u32> = kinds(&evs, RunKind::Started)
        .iter()
        .map(|e| e.attempt)
        .collect();
    assert_eq!(started, vec![1, 2, 3], "exactly three attempts: {evs:?}");
    assert!(
        kinds(&evs, RunKind::Skipped).is_empty(),
        "no duplicate deliveries: {evs:?}"
    );
    let dead = kinds(&evs, RunKind::Dead);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason.as_deref(), Some("upstream says no"));

    let topo = test_topology();
    let dlq = Dlq::new(&conn, &topo, "default");
    let letters = dlq.list().await.expect("list");
    assert_eq!(letters.len(), 1, "one dead letter: {letters:?}");
    let d = &letters[0];
    assert_eq!(d.fire_id.as_deref(), Some(f.fire_id.as_str()));
    assert_eq!(d.error, "upstream says no");
    assert_eq!(d.attempts, Some(3));
    for h in [
        headers::ERROR,
        headers::ATTEMPTS,
        headers::FIRST_FAILURE,
        headers::LAST_FAILURE,
        headers::WORKER,
    ] {
        assert!(d.headers.contains_key(h), "header {h} in {:?}", d.headers);
    }
    assert_eq!(d.headers[headers::WORKER], "in-process");
    assert!(d.headers[headers::FIRST_FAILURE] < d.headers[headers::LAST_FAILURE]);

    // The CLI lists it and replays it: attempted again from attempt 1.
    let out = sundial()
        .args(["dlq", "list", "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("dlq list runs");
    assert!(out.status.success(), "dlq list: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&f.fire_id) && stdout(&out).contains("upstream says no"),
        "{}",
        stdout(&out)
    );
    let out = sundial()
        .args(["dlq", "replay", &f.fire_id, "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("dlq replay runs");
    assert!(out.status.success(), "dlq replay: {}", stderr(&out));
    let again = tap.until(&f.fire_id, RunKind::Started).await;
    assert_eq!(again.last().map(|e| e.attempt), Some(1), "attempts reset");
    let dead_again = tap.until(&f.fire_id, RunKind::Dead).await;
    assert_eq!(
        kinds(&dead_again, RunKind::Started).len(),
        2,
        "attempts 2 and 3 after the replay: {dead_again:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_refused_shell_and_garbage_are_dead_lettered_and_worker_goes_on() {
    let Setup {
        v,
        conn,
        mut tap,
        ch,
    } = setup("w-poison").await;
    let w = InProcess::start(&v, &[], |w| {
        w.handler("strict", |_ctx, _payload| async {
            Err(JobError::Abort("payload is not a report".into()))
        })
    });
    let abort = fire(
        "strict",
        Executor::Handler {
            name: "strict".into(),
        },
        5,
        &[1],
    );
    let shell = fire("shelly", shell(&["/bin/echo", "hi"]), 5, &[1]);
    publish(&ch, &[abort.clone(), shell.clone()]).await;
    // Garbage: no type, no version, not bincode.
    ch.basic_publish(
        "sundial.fire".into(),
        "default.0".into(),
        BasicPublishOptions::default(),
        b"definitely not a fire event",
        BasicProperties::default().with_message_id("garbage-1".into()),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");

    let a = tap.until(&abort.fire_id, RunKind::Dead).await;
    assert_eq!(kinds(&a, RunKind::Started).len(), 1, "abort: no retry");
    let s = tap.until(&shell.fire_id, RunKind::Dead).await;
    assert!(
        s.last()
            .and_then(|e| e.reason.as_deref())
            .is_some_and(|r| r.starts_with("executor-not-allowed")),
        "{s:?}"
    );

    // Still consuming: a good fire succeeds.
    let ok = fire("fine", Executor::Noop, 1, &[]);
    publish(&ch, std::slice::from_ref(&ok)).await;
    tap.until(&ok.fire_id, RunKind::Succeeded).await;

    let letters = Dlq::new(&conn, &test_topology(), "default")
        .list()
        .await
        .expect("list");
    let reasons: HashMap<String, String> = letters
        .iter()
        .map(|d| (d.fire_id.clone().unwrap_or_default(), d.error.clone()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[&abort.fire_id], "payload is not a report");
    assert!(reasons[&shell.fire_id].contains("/bin/echo is not in"));
    assert!(
        reasons["garbage-1"].starts_with("undecodable fire event"),
        "{reasons:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_fire_is_dropped_and_reported() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-dup").await;
    let w = InProcess::start(&v, &[], |w| w);
    let f = fire("twice", Executor::Noop, 1, &[]);
    publish(&ch, std::slice::from_ref(&f)).await;
    tap.until(&f.fire_id, RunKind::Succeeded).await;
    publish(&ch, std::slice::from_ref(&f)).await;
    let evs = tap.until(&f.fire_id, RunKind::Skipped).await;
    assert_eq!(
        evs.last().and_then(|e| e.reason.as_deref()),
        Some("duplicate")
    );
    assert!(
        kinds(&evs, RunKind::Started).is_empty(),
        "not run again: {evs:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_group() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-timeout").await;
    let w = InProcess::start(&v, &["/bin/sh"], |w| w);
    let pidfile = std::env::temp_dir().join(format!("{}-grandchild.pid", v.name));
    let _ = std::fs::remove_file(&pidfile);
    let mut f = fire(
        "hang",
        shell(&[
            "/bin/sh",
            "-c",
            &format!("sleep 300 & echo $! > {}; wait", pidfile.display()),
        ]),
        1,
        &[],
    );
    f.timeout = HumanDuration::from_secs(1);
    publish(&ch, std::slice::from_ref(&f)).await;
    let evs = tap.until(&f.fire_id, RunKind::Dead).await;
    assert_eq!(
        evs.last().and_then(|e| e.reason.as_deref()),
        Some("timed out after 1s"),
        "{evs:?}"
    );
    let pid = std::fs::read_to_string(&pidfile).expect("the job wrote its child's pid");
    let pid = pid.trim();
    // Gone, or a zombie waiting for an init that does not reap.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let alive = state
        .as_deref()
        .and_then(|s| s.rsplit(')').next())
        .map(|rest| rest.trim_start().starts_with(|c| c != 'Z' && c != 'X'))
        .unwrap_or(false);
    assert!(!alive, "grandchild {pid} still running: {state:?}");
    let _ = std::fs::remove_file(&pidfile);
    w.stop().await;
}

/// Waits until every work queue of the default pool has `n` consumers.
pub(crate) async fn wait_for_consumers(v: &Vhost, n: usize) {
    bounded("workers consuming", async {
        loop {
            let rows = v.list("list_queues", &["name", "consumers"]);
            let ready = rows
                .iter()
                .filter(|r| r.starts_with("sundial.work.default."))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_pool_and_run_each_fire_once() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-three").await;
    let _workers: Vec<Daemon> = (1..=3)
        .map(|i| Daemon::worker(&v, &format!("w{i}"), &[]))
        .collect();
    wait_for_consumers(&v, 3).await;

    let fires: Vec<FireEvent> = (0..3000)
        .map(|i| fire(&format!("bulk-{i}"), Executor::Noop, 1, &[]))
        .collect();
    publish(&ch, &fires).await;

    let mut done: HashMap<String, u32> = HashMap::new();
    let mut by_worker: HashMap<String, u32> = HashMap::new();
    while done.len() < fires.len() {
        let ev = tap.next().await;
        if ev.kind == RunKind::Succeeded {
            *done.entry(ev.fire_id).or_default() += 1;
            *by_worker.entry(ev.worker).or_default() += 1;
        }
    }
    assert!(done.values().all(|&n| n == 1), "each fire once");
    assert!(
        fires.iter().all(|f| done.contains_key(&f.fire_id)),
        "every fire processed"
    );
    assert_eq!(by_worker.len(), 3, "every worker ran some: {by_worker:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_run_is_redelivered_to_another_worker() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-kill").await;
    let allow = [("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sleep")];
    let mut first = Daemon::worker(&v, "doomed", &allow);
    wait_for_consumers(&v, 1).await;
    let f = fire("slow", shell(&["/bin/sleep", "2"]), 1, &[]);
    publish(&ch, std::slice::from_ref(&f)).await;
    let started = tap.until(&f.fire_id, RunKind::Started).await;
    assert_eq!(started.last().map(|e| e.worker.as_str()), Some("doomed"));
    first.kill9();

    let _second = Daemon::worker(&v, "survivor", &allow);
    let evs = tap.until(&f.fire_id, RunKind::Succeeded).await;
    let done = evs.last().expect("succeeded");
    assert_eq!(done.worker, "survivor", "{evs:?}");
    assert_eq!(done.attempt, 1, "a redelivery is the same attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_attempt_finish() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-term").await;
    let mut w = Daemon::worker(
        &v,
        "graceful",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sleep")],
    );
    wait_for_consumers(&v, 1).await;
    let f = fire("nap", shell(&["/bin/sleep", "2"]), 1, &[]);
    publish(&ch, std::slice::from_ref(&f)).await;
    tap.until(&f.fire_id, RunKind::Started).await;
    // SIGTERM mid-run: the attempt completes, then the process exits 0.
    w.stop();
    let evs = tap.until(&f.fire_id, RunKind::Succeeded).await;
    assert_eq!(evs.last().map(|e| e.worker.as_str()), Some("graceful"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_job_retries_a_5xx_and_succeeds_on_2xx() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-http").await;
    let mut sink = HttpSink::start(vec![503]).await;
    let w = InProcess::start(&v, &[], |w| w);
    let f = fire(
        "hook",
        Executor::Http(sundial_core::job::HttpExecutor {
            method: "post".into(),
            url: format!("{}/hook", sink.url),
            headers: BTreeMap::from([("x-token".into(), "t1".into())]),
            body: Some("{\"n\":1}".into()),
            expect: vec![],
        }),
        3,
        &[1],
    );
    publish(&ch, std::slice::from_ref(&f)).await;
    let evs = tap.until(&f.fire_id, RunKind::Succeeded).await;
    let retry = kinds(&evs, RunKind::Retrying);
    assert_eq!(retry.len(), 1, "{evs:?}");
    assert!(
        retry[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("503")),
        "{retry:?}"
    );
    for _ in 0..2 {
        let (head, body) = sink.next().await;
        assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
        assert!(head.to_ascii_lowercase().contains("x-token: t1"), "{head}");
        assert_eq!(body, "{\"n\":1}");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_watcher_alerts_the_webhook_when_dead_letters_grow() {
    let Setup {
        v, conn: _conn, ch, ..
    } = setup("w-alert").await;
    let mut sink = HttpSink::start(vec![]).await;
    let _w = Daemon::worker(
        &v,
        "watched",
        &[
            (
                "SUNDIAL__WORKER__DLQ_WEBHOOK",
                &format!("{}/alert", sink.url),
            ),
            ("SUNDIAL__WORKER__DLQ_CHECK_INTERVAL", "1s"),
        ],
    );
    wait_for_consumers(&v, 1).await;
    let f = fire(
        "doomed",
        Executor::Handler {
            name: "nobody".into(),
        },
        1,
        &[],
    );
    publish(&ch, std::slice::from_ref(&f)).await;
    let (head, body) = sink.next().await;
    assert!(head.starts_with("POST /alert"), "{head}");
    let alert: serde_json::Value = serde_json::from_str(&body).expect("JSON alert");
    assert_eq!(alert["alert"], "dead-letters-growing");
    assert_eq!(alert["pool"], "default");
    assert_eq!(alert["queue"], "sundial.dead.default");
    assert_eq!(alert["depth"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_job_hands_the_payload_to_your_queue() {
    let Setup {
        v,
        conn,
        mut tap,
        ch,
    } = setup("w-publish").await;
    let w = InProcess::start(&v, &[], |w| w);
    let target = conn.create_channel().await.expect("channel");
    target
        .queue_declare(
            "it.target".into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("target queue");
    let to = |exchange: &str| {
        Executor::Publish(sundial_core::job::PublishExecutor {
            exchange: exchange.into(),
            routing_key: "it.target".into(),
        })
    };
    // Through the default exchange to the queue named by the routing key.
    let good = fire("forward", to(""), 1, &[]);
    // A missing exchange fails the attempt (retried), not the worker.
    let bad = fire("misrouted", to("no.such.exchange"), 2, &[1]);
    publish(&ch, &[good.clone(), bad.clone()]).await;
    tap.until(&good.fire_id, RunKind::Succeeded).await;
    let got = target
        .basic_get(
            "it.target".into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic.get")
        .expect("the payload arrived");
    let body: serde_json::Value = serde_json::from_slice(&got.delivery.data).expect("JSON");
    assert_eq!(body, good.payload);
    assert_eq!(
        got.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string()),
        Some(good.fire_id.clone())
    );
    let evs = tap.until(&bad.fire_id, RunKind::Dead).await;
    assert_eq!(kinds(&evs, RunKind::Retrying).len(), 1, "{evs:?}");
    assert!(
        evs.last()
            .and_then(|e| e.reason.as_deref())
            .is_some_and(|r| r.contains("no.such.exchange")),
        "{evs:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_show_purge_and_watch() {
    let Setup {
        v,
        conn,
        mut tap,
        ch,
    } = setup("w-dlqcli").await;
    let w = InProcess::start(&v, &[], |w| {
        w.handler("refuse", |_ctx, _payload| async {
            Err(JobError::Abort("refused on purpose".into()))
        })
    });
    let refuse = || Executor::Handler {
        name: "refuse".into(),
    };
    let (p1, p2) = (fire("p1", refuse(), 1, &[]), fire("p2", refuse(), 1, &[]));
    publish(&ch, &[p1.clone(), p2.clone()]).await;
    tap.until(&p1.fire_id, RunKind::Dead).await;
    tap.until(&p2.fire_id, RunKind::Dead).await;
    let cli = |args: &[&str]| {
        sundial()
            .arg("dlq")
            .args(args)
            .args(["--broker", &v.url()])
            .output()
            .expect("sundial dlq runs")
    };

    let out = cli(&["show", &p1.fire_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("error:    refused on purpose"), "{text}");
    assert!(text.contains("x-sundial-attempts: 1"), "{text}");
    assert!(
        text.contains("\"job_id\": \"p1\""),
        "the fire event: {text}"
    );
    let out = cli(&["show", "nope@2026-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(1), "unknown fire id fails");

    let out = cli(&["purge", "--job", "p1"]);
    assert_eq!(out.status.code(), Some(2), "purge needs --yes");
    let out = cli(&["purge", "--job", "p1", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 purged"), "{}", stdout(&out));
    let topo = test_topology();
    let left: Vec<Option<String>> = Dlq::new(&conn, &topo, "default")
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.job_id)
        .collect();
    assert_eq!(left, vec![Some("p2".to_string())], "only p1 purged");

    // `dlq watch` prints new dead letters as they arrive.
    let mut watch = sundial()
        .args(["dlq", "watch", "--json", "--broker", &v.url()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dlq watch starts");
    let out = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The watch queue must exist before the dead letter: send new fires
    // (new ids: a repeated one is dropped as a duplicate) until one is seen.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut tries = 0;
    let line = loop {
        tries += 1;
        let mut p3 = fire("p3", refuse(), 1, &[]);
        p3.fire_id = format!("p3@try-{tries}");
        publish(&ch, std::slice::from_ref(&p3)).await;
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(3)) {
            break line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dlq watch printed nothing"
        );
    };
    let _ = watch.kill();
    let _ = watch.wait();
    let seen: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert!(
        seen["fire_id"]
            .as_str()
            .is_some_and(|f| f.starts_with("p3@try-")),
        "{seen}"
    );
    assert_eq!(seen["job_id"], "p3");
    assert_eq!(seen["error"], "refused on purpose");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_env_secrets_come_from_the_workers_environment() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-secret").await;
    let _w = Daemon::worker(
        &v,
        "keeper",
        &[
            ("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh"),
            ("IT_DB_PASSWORD", "s3cret"),
        ],
    );
    wait_for_consumers(&v, 1).await;
    let job = |id: &str, var: &str| {
        let mut f = fire(
            id,
            shell(&["/bin/sh", "-c", "test \"$PASSWORD\" = s3cret"]),
            1,
            &[],
        );
        if let Executor::Shell(s) = &mut f.executor {
            s.env.insert("PASSWORD".into(), format!("${{{var}}}"));
        }
        f
    };
    let (ok, missing) = (
        job("uses-secret", "IT_DB_PASSWORD"),
        job("no-secret", "IT_NOT_SET"),
    );
    publish(&ch, &[ok.clone(), missing.clone()]).await;
    tap.until(&ok.fire_id, RunKind::Succeeded).await;
    let evs = tap.until(&missing.fire_id, RunKind::Dead).await;
    let reason = evs
        .last()
        .and_then(|e| e.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("${IT_NOT_SET} is not set in this worker's environment"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_outcome_events_only_started_is_sent_just_where_overlap_needs_it() {
    let v = Vhost::new("w-outcomes");
    crate::util::topology_apply(&v);
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    let _w = Daemon::worker(&v, "quiet", &[("SUNDIAL__WORKER__RUN_EVENTS", "outcomes")]);
    wait_for_consumers(&v, 1).await;
    let plain = noop_fire("plain");
    let mut guarded = noop_fire("guarded");
    guarded.overlap = sundial_core::job::Overlap::Forbid;
    let ch = sundial_actors::broker::confirming_channel(&conn)
        .await
        .expect("channel");
    publish(&ch, &[plain.clone(), guarded.clone()]).await;
    let g = tap.until(&guarded.fire_id, RunKind::Succeeded).await;
    assert_eq!(
        g.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [RunKind::Started, RunKind::Succeeded],
        "forbid needs the started event (and its deadline)"
    );
    let p = tap.until(&plain.fire_id, RunKind::Succeeded).await;
    assert_eq!(
        p.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [RunKind::Succeeded],
        "an overlap-allow job reports its outcome only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_failure_events_only_a_successful_run_is_silent() {
    let v = Vhost::new("w-failures");
    crate::util::topology_apply(&v);
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    // One run at a time: a fire is taken only after the previous one was
    // settled (its events confirmed, then acked).
    let env = [
        ("SUNDIAL__WORKER__RUN_EVENTS", "failures"),
        ("SUNDIAL__WORKER__CONCURRENCY", "1"),
    ];
    let _w = Daemon::worker(&v, "quiet", &env);
    wait_for_consumers(&v, 1).await;
    let ch = sundial_actors::broker::confirming_channel(&conn)
        .await
        .expect("channel");

    // A silent success leaves nothing to await: a manual trigger of the same
    // job, queued behind it on its shard queue, runs after it and reports.
    let plain = noop_fire("plain");
    let mut after_plain = noop_fire("plain");
    after_plain.fire_id = format!("{}-manual", plain.fire_id);
    after_plain.manual = true;
    publish(&ch, &[plain.clone(), after_plain.clone()]).await;
    let of = |evs: Vec<RunEvent>| evs.iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(
        of(tap.until(&after_plain.fire_id, RunKind::Succeeded).await),
        [RunKind::Started, RunKind::Succeeded],
        "a manual trigger reports every step"
    );

    let mut guarded = noop_fire("guarded");
    guarded.overlap = sundial_core::job::Overlap::Forbid;
    let mut manual = noop_fire("manual");
    manual.manual = true;
    let broken = fire(
        "broken",
        Executor::Handler {
            name: "missing".into(),
        },
        1,
        &[],
    );
    publish(&ch, &[guarded.clone(), manual.clone(), broken.clone()]).await;
    assert_eq!(
        of(tap.until(&guarded.fire_id, RunKind::Succeeded).await),
        [RunKind::Started, RunKind::Succeeded],
        "the run tracker needs a forbid job's start and end"
    );
    assert_eq!(
        of(tap.until(&manual.fire_id, RunKind::Succeeded).await),
        [RunKind::Started, RunKind::Succeeded],
        "a manual trigger reports every step"
    );
    let dead = tap.until(&broken.fire_id, RunKind::Dead).await;
    assert_eq!(of(dead.clone()), [RunKind::Failed, RunKind::Dead]);
    assert!(
        dead[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("handler-not-registered")),
        "{dead:?}"
    );
    // Any event of the plain run was queued before all of these.
    assert!(
        tap.backlog.iter().all(|e| e.fire_id != plain.fire_id),
        "a successful overlap-allow run published {:?}",
        tap.backlog
    );
}
