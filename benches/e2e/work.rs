//! End-to-end phases: raw lapin publish + consume with acks, and fires
//! published to `sundial.fire` run by k `sundial worker` processes (no-op
//! executor), to the same kind of queues. Throughput: N published pipelined
//! with confirms, first publish → last completion; latency at a paced 500/s.

use std::{
    collections::{HashMap, VecDeque},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use futures_util::StreamExt;
use lapin::{options::*, types::FieldTable, BasicProperties};
use sundial_amqp::broker::{connect, meta_of, subscribe};
use sundial_core::{
    codec::{decode, encode},
    job::{Executor, Overlap, RetryPolicy},
    protocol::{
        fire::FireEvent,
        run::{RunEvent, RunKind},
    },
    topology::{shard_of, Topology},
    HumanDuration,
};

use crate::common::{cpu, raw_queues, Vhost};

/// Shards of the benchmark's installation: 64 (the default), or
/// `SUNDIAL_BENCH_SHARDS` (to measure what fewer shards cost).
pub(crate) fn shards() -> u32 {
    static SHARDS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SHARDS.get_or_init(|| {
        std::env::var("SUNDIAL_BENCH_SHARDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|n| (1..=1024).contains(n))
            .unwrap_or(64)
    })
}
/// Worker concurrency, and the raw consumers' prefetch: the same number.
pub(crate) const CONCURRENCY: u16 = 128;
/// Confirms in flight while publishing pipelined (both sides).
const WINDOW: usize = 1_000;
pub(crate) const PACED_RATE: u32 = 500;
/// The untimed warm-up before each pipelined run: this part of its count.
const WARM_UP_PART: usize = 4;

fn topology() -> Topology {
    Topology {
        prefix: "sundial".into(),
        shards: shards(),
        pools: vec!["default".into()],
        retry_tiers: vec![HumanDuration::from_secs(10)],
        delivery_limit: 10,
        registry_max_age: Duration::from_secs(7 * 86_400),
        history_max_age: sundial_core::settings::HistorySettings::default().max_age,
        history_max_bytes: sundial_core::settings::HistorySettings::default().max_bytes,
        replicas: 3,
    }
}

fn fire(i: usize, run: &str) -> FireEvent {
    let job = format!("{run}-{}", i % 5_000);
    let now = Utc::now();
    FireEvent {
        fire_id: format!("{job}@{i}"),
        shard: shard_of(&job, shards()),
        job_id: job,
        pool: "default".into(),
        epoch: 1,
        scheduled_at: now,
        fired_at: now,
        attempt: 1,
        manual: false,
        executor: Executor::Noop,
        payload: serde_json::Value::Null,
        timeout: HumanDuration::from_secs(30),
        retry: RetryPolicy::default(),
        overlap: Overlap::Allow,
        first_failure: None,
        signature: None,
    }
}

/// What a consumer side saw: when the last message was handled, and the
/// latency samples (seconds).
#[derive(Default)]
struct Seen {
    done: usize,
    last: Option<Instant>,
    latency: Vec<f64>,
}

/// Publishes `n` fires pipelined (or paced at `rate`/s when given) and
/// returns when the side has seen all of them: (elapsed s, latencies).
async fn drive(
    ch: &lapin::Channel,
    n: usize,
    rate: Option<u32>,
    seen: &Arc<Mutex<Seen>>,
    mut send: impl FnMut(usize) -> (String, String, Vec<u8>, BasicProperties),
) -> (f64, Vec<f64>) {
    if let Ok(mut s) = seen.lock() {
        *s = Seen::default();
    }
    let start = Instant::now();
    let mut pending = VecDeque::new();
    let mut tick = rate.map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(r))));
    for i in 0..n {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        let (exchange, key, body, props) = send(i);
        let c = ch
            .basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                props,
            )
            .await
            .expect("publish");
        pending.push_back(c);
        if pending.len() >= WINDOW {
            let c = pending.pop_front().expect("non-empty");
            assert!(c.await.expect("confirm").is_ack(), "publish acked");
        }
    }
    for c in pending {
        assert!(c.await.expect("confirm").is_ack(), "publish acked");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (done, last) = seen.lock().map(|s| (s.done, s.last)).unwrap_or((0, None));
        if done >= n {
            let elapsed = last.map_or(0.0, |l| (l - start).as_secs_f64());
            let lat = seen
                .lock()
                .map(|mut s| std::mem::take(&mut s.latency))
                .unwrap_or_default();
            return (elapsed, lat);
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {n} handled within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Raw lapin: 64 quorum queues, one connection consuming all of them with
/// prefetch CONCURRENCY each, every delivery acked in its own task.
pub(crate) async fn raw(v: &Vhost, n: usize, paced: usize) -> Measured {
    let conn = connect(&v.url(), "bench-raw").await.expect("connect");
    let ch = raw_queues(&conn, shards()).await;
    let consumer_conn = connect(&v.url(), "bench-raw-consumer")
        .await
        .expect("connect");
    let cch = consumer_conn.create_channel().await.expect("channel");
    cch.basic_qos(CONCURRENCY, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumers = Vec::new();
    for q in 0..shards() {
        let name = format!("raw.{q}");
        consumers.push(
            cch.basic_consume(
                name.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume"),
        );
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = Instant::now();
    {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut all = futures_util::stream::select_all(consumers);
            while let Some(Ok(d)) = all.next().await {
                let sent_ns = d
                    .data
                    .get(..16)
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .map_or(0, u128::from_le_bytes);
                let now = Instant::now();
                if let Ok(mut s) = seen.lock() {
                    s.done += 1;
                    s.last = Some(now);
                    let lat = (now - base).as_nanos().saturating_sub(sent_ns);
                    s.latency.push(lat as f64 / 1e9);
                }
                tokio::spawn(async move {
                    let _ = d.acker.ack(BasicAckOptions::default()).await;
                });
            }
        });
    }
    let props = BasicProperties::default().with_delivery_mode(2);
    let body_for = move || {
        let mut body = vec![7u8; 256];
        body[..16].copy_from_slice(&(Instant::now() - base).as_nanos().to_le_bytes());
        body
    };
    // One message of each run: to `raw.{i mod shards}`, the send time first.
    let send = |i: usize| {
        (
            String::new(),
            format!("raw.{}", i as u32 % shards()),
            body_for(),
            props.clone(),
        )
    };
    // Untimed warm-up, as on the Sundial side: both consumers have grown
    // their heaps and buffers before the timed run.
    drive(&ch, n / WARM_UP_PART, None, &seen, send).await;
    let cpu_before = cpu::now(&[]);
    let thr = drive(&ch, n, None, &seen, send).await;
    let cpu = cpu::now(&[]) - cpu_before;
    let lat = drive(&ch, paced, Some(PACED_RATE), &seen, send).await;
    let _ = conn.close(200, "".into()).await;
    let _ = consumer_conn.close(200, "".into()).await;
    Measured {
        thr,
        lat,
        cpu,
        history: (0, 0),
    }
}

/// What a publish+consume phase measured: (elapsed s, latencies) of the
/// pipelined run and of the paced one, and the CPU the pipelined run took
/// (broker, workers, harness).
pub(crate) struct Measured {
    pub thr: (f64, Vec<f64>),
    pub lat: (f64, Vec<f64>),
    pub cpu: cpu::Split,
    /// History stream messages the workers sent during the pipelined run
    /// (from its start until every run was counted), and their records.
    pub history: (u64, u64),
}

/// The binary the worker processes run: this build's `sundial`, or
/// `SUNDIAL_BENCH_BIN` (to compare two builds in one session: before/after).
fn worker_bin() -> std::ffi::OsString {
    std::env::var_os("SUNDIAL_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_sundial").into())
}

/// A `sundial worker` process and the address of its `/metrics`.
struct WorkerProc {
    child: Child,
    http: String,
}

/// Starts `k` worker processes and waits until each consumes every queue.
fn workers(v: &Vhost, k: usize, env: &[(&str, &str)]) -> Vec<WorkerProc> {
    let procs: Vec<WorkerProc> = (0..k)
        .map(|i| {
            let http = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .to_string();
            let child = Command::new(worker_bin())
                .args(["worker", "--id", &format!("bw{i}"), "--broker", &v.url()])
                .args(["--concurrency", &CONCURRENCY.to_string()])
                .args(["--http", &http])
                .env("SUNDIAL__TOPOLOGY__RETRY_TIERS", "10s")
                .env("SUNDIAL__TOPOLOGY__SHARDS", shards().to_string())
                .env("RUST_LOG", "warn")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("sundial worker starts");
            WorkerProc { child, http }
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = crate::common::rabbitmqctl()
            .args([
                "list_queues",
                "-p",
                &v.name,
                "--no-table-headers",
                "-q",
                "name",
                "consumers",
            ])
            .output()
            .expect("rabbitmqctl");
        let text = String::from_utf8_lossy(&out.stdout);
        let ready = text
            .lines()
            .filter(|l| l.starts_with("sundial.work.default.") && !l.contains(".@"))
            .filter(|l| l.split_whitespace().nth(1) == Some(&k.to_string()))
            .count();
        if ready == shards() as usize {
            return procs;
        }
        assert!(
            Instant::now() < deadline,
            "workers not consuming within 60 s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The `/metrics` text of the worker at `addr`.
fn metrics_of(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The value of the first sample whose line starts with `prefix` and holds
/// `with`; 0 when there is none yet.
fn sample(text: &str, prefix: &str, with: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix) && l.contains(with));
    line.map_or(Some(0), |l| {
        l.rsplit(' ').next()?.parse::<f64>().ok().map(|v| v as u64)
    })
}

/// `sundial_runs_total{…outcome="succeeded"}` of the worker at `addr`.
fn succeeded(addr: &str) -> Option<u64> {
    sample(
        &metrics_of(addr)?,
        "sundial_runs_total{",
        "outcome=\"succeeded\"",
    )
}

/// History stream messages and the records in them, summed over workers.
fn history_sent(addrs: &[String]) -> (u64, u64) {
    addrs
        .iter()
        .filter_map(|a| metrics_of(a))
        .map(|t| {
            (
                sample(&t, "sundial_history_batches_total", "").unwrap_or(0),
                sample(&t, "sundial_history_records_total", "").unwrap_or(0),
            )
        })
        .fold((0, 0), |(b, r), (b2, r2)| (b + b2, r + r2))
}

/// Counts finished runs from the workers' own `/metrics` (every 10 ms, on
/// a thread) into `seen` until `stop`: the harness knows a run is done
/// without a broker message of its own, as the raw consumer does.
fn count_runs(
    addrs: Vec<String>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last: Vec<u64> = vec![0; addrs.len()];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let mut delta = 0;
            for (addr, last) in addrs.iter().zip(last.iter_mut()) {
                if let Some(n) = succeeded(addr) {
                    delta += n.saturating_sub(*last);
                    *last = n.max(*last);
                }
            }
            if delta > 0 {
                if let Ok(mut s) = seen.lock() {
                    s.done += delta as usize;
                    s.last = Some(Instant::now());
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

type Scheduled = Arc<Mutex<HashMap<String, chrono::DateTime<Utc>>>>;

/// Reads what one scheduler node reads of every run: the history stream,
/// twice (its run tracker and its history index each consume it), and the
/// events exchange bound to `#` (what a dashboard or alerting consumer
/// does). Records the fire-to-start latency of the fires in `scheduled`
/// (from their `started` record, or their outcome's end − duration when the
/// start was folded into it).
async fn listen(
    conn: &lapin::Connection,
    seen: Arc<Mutex<Seen>>,
    scheduled: Scheduled,
) -> (Vec<lapin::Channel>, Vec<tokio::task::JoinHandle<()>>) {
    use sundial_amqp::history::{Reader, StreamStart};
    let topo = topology();
    let (events_ch, mut events) = subscribe(conn, &topo.events_exchange(), &["#"])
        .await
        .expect("subscribe");
    let channels = vec![events_ch];
    let mut tasks = vec![tokio::spawn(async move {
        while let Some(Ok(d)) = events.next().await {
            let _ = decode::<RunEvent>(&meta_of(&d.properties), &d.data);
        }
    })];
    for timed in [true, false] {
        let mut records = Reader::open(conn, &topo.history_stream(), StreamStart::Next, 500)
            .await
            .expect("history consumer");
        let (seen, scheduled) = (seen.clone(), scheduled.clone());
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(m)) = records.next().await {
                let Ok(batch) = m.batch else {
                    continue;
                };
                if !timed {
                    continue;
                }
                // A `started` whose outcome is in the same batch is left out
                // of it (start = end − duration): the outcome counts then.
                for ev in batch
                    .records
                    .iter()
                    .filter(|e| e.kind == RunKind::Started || e.kind == RunKind::Succeeded)
                {
                    let at = scheduled
                        .lock()
                        .ok()
                        .and_then(|mut m| m.remove(&ev.fire_id));
                    let start = match ev.kind {
                        RunKind::Started => ev.at,
                        _ => {
                            let took = i64::try_from(ev.duration_ms.unwrap_or(0)).unwrap_or(0);
                            ev.at - chrono::Duration::milliseconds(took)
                        }
                    };
                    if let (Some(at), Ok(mut s)) = (at, seen.lock()) {
                        s.latency
                            .push((start - at).num_microseconds().unwrap_or(0) as f64 / 1e6);
                    }
                }
            }
        }));
    }
    (channels, tasks)
}

/// Sundial: k worker processes; fires published straight to `sundial.fire`.
pub(crate) async fn sundial(
    v: &Vhost,
    k: usize,
    n: usize,
    paced: usize,
    env: &[(&str, &str)],
) -> Measured {
    let topo = topology();
    let conn = connect(&v.url(), "bench-fires").await.expect("connect");
    sundial_amqp::topology::apply(&conn, &topo.declarations())
        .await
        .expect("topology");
    let procs = workers(v, k, env);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let scheduled: Scheduled = Arc::default();
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let exchange = topo.fire_exchange();
    let send = |i: usize, run: &str| {
        let f = fire(i, run);
        if let Ok(mut m) = scheduled.lock() {
            m.insert(f.fire_id.clone(), f.scheduled_at);
        }
        let enc = encode(&f).expect("encode");
        (
            exchange.clone(),
            Topology::work_routing_key(&f.pool, f.shard),
            enc.body,
            sundial_amqp::broker::properties(&enc.meta),
        )
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counter = count_runs(
        procs.iter().map(|p| p.http.clone()).collect(),
        seen.clone(),
        stop.clone(),
    );
    let (_sub, _task) = listen(&conn, seen.clone(), scheduled.clone()).await;
    // Untimed warm-up: a fresh worker process first grows its heap (page
    // faults were 10-28 % of its CPU in a cold timed run), which a worker
    // that has been running pays once, not per run.
    drive(&ch, n / WARM_UP_PART, None, &seen, |i| send(i, "w")).await;
    let pids: Vec<u32> = procs.iter().map(|p| p.child.id()).collect();
    let addrs: Vec<String> = procs.iter().map(|p| p.http.clone()).collect();
    let history_before = history_sent(&addrs);
    let cpu_before = cpu::now(&pids);
    let thr = drive(&ch, n, None, &seen, |i| send(i, "t")).await;
    let cpu = cpu::now(&pids) - cpu_before;
    let history_after = history_sent(&addrs);
    let history = (
        history_after.0.saturating_sub(history_before.0),
        history_after.1.saturating_sub(history_before.1),
    );
    // Throughput fires have no latency sample: only the paced ones count.
    if let Ok(mut m) = scheduled.lock() {
        m.clear();
    }
    let lat = drive(&ch, paced, Some(PACED_RATE), &seen, |i| send(i, "p")).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = counter.join();
    for p in &procs {
        let _ = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
    }
    for mut p in procs {
        let _ = p.child.wait();
    }
    let _ = conn.close(200, "".into()).await;
    Measured {
        thr,
        lat,
        cpu,
        history,
    }
}
