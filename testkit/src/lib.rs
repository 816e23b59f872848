//! `sundial-testkit`: what every test binary and the benchmark share (not
//! published): a private vhost per test on the system broker or on a test
//! cluster's node, the binary under test and its daemons, fire and HTTP
//! taps, and one way to wait with a bound that fails loudly.
//!
//! # Layout
//!
//! | item | what |
//! |------|------|
//! | [`Broker`], [`Vhost`], [`rabbitmqctl`], [`AppGuard`] | a vhost per test (deleted on drop), on the system broker or a cluster node |
//! | [`sundial`], [`Daemon`], [`topology_apply`], [`job_apply`], [`job_get`] | the binary under test, one-shot and long-running |
//! | [`bounded`], [`wait_until`], [`poll_until`] | waits with a bound: a future, a condition signalled by a `Notify`, a polled condition |
//! | [`http_get`], [`http_call`], [`http_exchange`], [`wait_status`], [`raw_http`] | HTTP with reqwest; `raw_http` only for what a client library would not send |
//! | [`FireTap`], [`HttpSink`], [`drain`] | fires off the work queues, a webhook target, a queue emptied |

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sundial_amqp::broker::meta_of;
use sundial_core::{codec::decode, protocol::fire::FireEvent, topology::shard_of};

use std::{
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// Longest any single broker operation may take in a test before it fails.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(60);

/// The broker a vhost lives on: how to run `rabbitmqctl` for it and its
/// AMQP port.
#[derive(Debug, Clone)]
pub struct Broker {
    /// The program and its first arguments (`rabbitmqctl`, or a cluster
    /// script's `ctl 1`), with environment.
    ctl: Vec<String>,
    env: Vec<(String, String)>,
    pub port: u16,
}

impl Broker {
    /// The system broker on 127.0.0.1:5672.
    pub fn system() -> Self {
        Self {
            ctl: vec!["rabbitmqctl".into()],
            env: Vec::new(),
            port: 5672,
        }
    }

    /// A broker whose `rabbitmqctl` is `program args…` with `env`, on `port`.
    pub fn new(program: &str, args: &[&str], env: &[(&str, &str)], port: u16) -> Self {
        let mut ctl = vec![program.to_string()];
        ctl.extend(args.iter().map(|a| a.to_string()));
        Self {
            ctl,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            port,
        }
    }

    /// Its `rabbitmqctl`, to add arguments to.
    pub fn ctl(&self) -> Command {
        let mut c = Command::new(&self.ctl[0]);
        c.args(&self.ctl[1..]).envs(self.env.iter().cloned());
        c
    }

    /// Runs its `rabbitmqctl args`, failing the test loudly unless it succeeds.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self
            .ctl()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("rabbitmqctl {args:?} could not run: {e}"));
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Runs the system broker's `rabbitmqctl`, failing the test loudly unless
/// it succeeds.
pub fn rabbitmqctl(args: &[&str]) -> Output {
    Broker::system().run(args)
}

/// Starts the RabbitMQ app again however a fault test ends (the fault
/// binaries stop it; they include this file).
pub struct AppGuard;

impl Drop for AppGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
        let _ = Command::new("rabbitmqctl")
            .args(["await_startup", "--timeout", "120"])
            .status();
    }
}

/// A vhost that exists for the life of the value; deleted on drop.
pub struct Vhost {
    pub name: String,
    broker: Broker,
}

impl Vhost {
    /// `sundial-it-{tag}-…` on the system broker.
    pub fn new(tag: &str) -> Self {
        Self::on(Broker::system(), &format!("it-{tag}"))
    }

    /// `sundial-{tag}-…` on `broker`.
    pub fn on(broker: Broker, tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sundial-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        broker.run(&["add_vhost", &name]);
        broker.run(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Self { name, broker }
    }

    pub fn url(&self) -> String {
        format!(
            "amqp://guest:guest@127.0.0.1:{}/{}",
            self.broker.port, self.name
        )
    }

    /// Sorted lines of `rabbitmqctl list_<what> -p vhost <columns>`.
    pub fn list(&self, what: &str, columns: &[&str]) -> Vec<String> {
        let mut args = vec![what, "-p", &self.name, "--no-table-headers", "-q"];
        args.extend_from_slice(columns);
        let out = self.broker.run(&args);
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        // Best effort: a failed delete must not hide the test's own result.
        let _ = self
            .broker
            .ctl()
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// The `sundial` binary cargo built beside the running test or bench
/// (`target/<profile>/sundial`), with a clean environment for settings.
pub fn sundial() -> Command {
    let mut c = Command::new(sundial_path());
    for (k, _) in std::env::vars() {
        if k.starts_with("SUNDIAL") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "warn");
    c
}

/// Where the `sundial` binary is: next to the `deps/` directory the test
/// or bench executable runs from.
pub fn sundial_path() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("{} is in no target directory", exe.display()));
    let bin = dir.join("sundial");
    assert!(
        bin.exists(),
        "{} does not exist: build the sundial binary first (cargo test builds it)",
        bin.display()
    );
    bin
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `fut` with [`BROKER_TIMEOUT`], failing the test loudly on expiry.
pub async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BROKER_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BROKER_TIMEOUT:?}"))
}

/// Waits until `ready()` holds, checking again each time `changed` is
/// notified (`notify_waiters` by whoever changes the state), at most
/// `within`; returns whether it held. The caller fails loudly with what it
/// knows.
pub async fn wait_until(
    within: Duration,
    changed: &tokio::sync::Notify,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // Registered before the check, so a change between the two wakes it.
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if ready() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ready();
        }
    }
}

/// Polls `probe` every 100 ms until it gives a value (at most `within`);
/// fails the test naming `what` and the last thing `last` says otherwise.
pub fn poll_until<T>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
    last: impl Fn() -> String,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}; last: {}",
            last()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Shards used by scheduler tests (few, so startup is quick).
pub const TEST_SHARDS: u32 = 4;

/// Declares the topology as deployments do before the first start (with
/// the test shard count and short retry tiers).
pub fn topology_apply(v: &Vhost) {
    let applied = sundial()
        .args(["topology", "apply", "--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("topology apply runs");
    assert!(
        applied.status.success(),
        "topology apply: {}",
        stderr(&applied)
    );
}

/// Settings every test process gets: few shards (quick start), retry tiers
/// of 1 s and 2 s (quick retries), no HTTP endpoint.
pub const TEST_ENV: &[(&str, &str)] = &[
    ("SUNDIAL__TOPOLOGY__SHARDS", "4"),
    ("SUNDIAL__TOPOLOGY__RETRY_TIERS", "1s,2s"),
    // Many processes share the host: no endpoint unless a test asks.
    ("SUNDIAL__HTTP__ENABLED", "false"),
    // Nor a history index (it would be ./sundial-history.db, one per host):
    // the history tests give each scheduler its own file.
    ("SUNDIAL__HISTORY__ENABLED", "false"),
];

/// The topology the test processes use, for in-process actors.
pub fn test_topology() -> sundial_core::topology::Topology {
    sundial_core::topology::Topology {
        prefix: "sundial".into(),
        shards: TEST_SHARDS,
        pools: vec!["default".into()],
        retry_tiers: vec![
            sundial_core::HumanDuration::from_secs(1),
            sundial_core::HumanDuration::from_secs(2),
        ],
        delivery_limit: 10,
        registry_max_age: Duration::from_secs(7 * 86_400),
        history_max_age: sundial_core::settings::HistorySettings::default().max_age,
        history_max_bytes: sundial_core::settings::HistorySettings::default().max_bytes,
        replicas: 3,
    }
}

/// A long-running `sundial` process on a vhost (scheduler, worker); its
/// output goes to a log file; killed on drop.
pub struct Daemon {
    child: Option<std::process::Child>,
    what: String,
    pub log: std::path::PathBuf,
}

/// The scheduler is one kind of daemon.
pub type SchedulerProcess = Daemon;

impl Daemon {
    /// Declares the topology, then starts the scheduler.
    pub fn start(v: &Vhost, node: &str) -> Self {
        Self::start_with_env(v, node, &[])
    }

    /// As `start`, with extra environment (settings) for the scheduler.
    pub fn start_with_env(v: &Vhost, node: &str, env: &[(&str, &str)]) -> Self {
        topology_apply(v);
        Self::spawn(v, &["scheduler", "--node", node], node, env)
    }

    /// A `sundial worker --id id` on the default pool.
    pub fn worker(v: &Vhost, id: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn(v, &["worker", "--id", id], id, env)
    }

    pub fn spawn(v: &Vhost, args: &[&str], name: &str, env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("{}-{name}.log", v.name));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("log file {}: {e}", log.display()));
        let err = file.try_clone().expect("log file handle");
        let child = sundial()
            .args(args)
            .args(["--broker", &v.url()])
            .envs(TEST_ENV.iter().copied())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("sundial {args:?} starts: {e}"));
        Self {
            child: Some(child),
            what: format!("sundial {}", args.join(" ")),
            log,
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Whether the process is still running (it did not exit or crash).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no cleanup, as a crash or the OOM killer would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(status)) => assert!(
                status.success(),
                "{} exited with {status}; log {}",
                self.what,
                self.log.display()
            ),
            Ok(Err(e)) => panic!("waiting for {}: {e}", self.what),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!(
                    "{} did not stop within 20s after SIGTERM; log {}",
                    self.what,
                    self.log.display()
                );
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every fire of the default pool, read from all its work queues (one
/// consumer per queue, so no fire is taken by a competing tap).
pub struct FireTap {
    fires: futures_util::stream::SelectAll<lapin::Consumer>,
}

impl FireTap {
    pub async fn new(conn: &lapin::Connection) -> Self {
        let ch = conn.create_channel().await.expect("channel");
        let mut consumers = Vec::new();
        for shard in 0..TEST_SHARDS {
            let q = format!("sundial.work.default.{shard}");
            consumers.push(
                sundial_amqp::broker::consume_no_ack(&ch, &q)
                    .await
                    .expect("consume work queue"),
            );
        }
        Self {
            fires: futures_util::stream::select_all(consumers),
        }
    }

    /// The next fire of any job, with the instant it arrived.
    pub async fn next_any(&mut self) -> (FireEvent, DateTime<Utc>) {
        bounded("a fire", async {
            let d = self
                .fires
                .next()
                .await
                .expect("work stream open")
                .expect("delivery");
            let ev =
                decode::<FireEvent>(&meta_of(&d.properties), &d.data).expect("fire event decodes");
            assert_eq!(
                d.properties.message_id().as_ref().map(|m| m.to_string()),
                Some(ev.fire_id.clone()),
                "message_id is the fire id"
            );
            assert_eq!(
                ev.shard,
                shard_of(&ev.job_id, TEST_SHARDS),
                "routed to its shard"
            );
            (ev, Utc::now())
        })
        .await
    }

    /// The next fire of `job`.
    pub async fn next(&mut self, job: &str) -> (FireEvent, DateTime<Utc>) {
        loop {
            let f = self.next_any().await;
            if f.0.job_id == job {
                return f;
            }
        }
    }
}

/// A tiny HTTP server on 127.0.0.1 for webhook and `http` executor tests:
/// answers each request with the next status of `statuses` (then 200) and
/// hands every request's head and body to the test.
pub struct HttpSink {
    pub url: String,
    requests: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
}

impl HttpSink {
    pub async fn start(statuses: Vec<u16>) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (tx, requests) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let (head, body) = loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        break (String::new(), String::new());
                    };
                    if n == 0 {
                        break (String::new(), String::new());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .and_then(|v| v.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_string(), body.to_string());
                    }
                };
                let status = statuses.next().unwrap_or(200);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = tx.send((head, body));
            }
        });
        Self { url, requests }
    }

    /// The next request: (head, body).
    pub async fn next(&mut self) -> (String, String) {
        bounded("an HTTP request", self.requests.recv())
            .await
            .expect("sink running")
    }
}

/// A TCP port free right now on 127.0.0.1 (for a process's `http.listen`).
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").to_string()
}

/// `GET path` on `addr` → (status, body); `None` while nothing listens.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_call(addr, "GET", path, &[], None)
}

/// `method path` on `addr` with `headers` and a JSON body → (status, body);
/// `None` while nothing listens.
pub fn http_call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<(u16, String)> {
    http_exchange(addr, method, path, headers, body).map(|(status, _, body)| (status, body))
}

/// A response's header fields: (lowercase name, value).
pub type Fields = Vec<(String, String)>;

/// As [`http_call`], with the response's header fields too: reqwest's
/// blocking client (one for the process, 20 s per request), on a thread of
/// its own, so async tests may call it too.
pub fn http_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<(u16, Fields, String)> {
    std::thread::scope(|s| {
        s.spawn(|| blocking_exchange(addr, method, path, headers, body))
            .join()
            .unwrap_or_else(|_| panic!("{method} {path}: the HTTP client thread panicked"))
    })
}

fn blocking_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<(u16, Fields, String)> {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        // reqwest is built without a TLS provider of its own (as lapin, ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap_or_else(|e| panic!("an HTTP client: {e}"))
    });
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .unwrap_or_else(|e| panic!("method {method}: {e}"));
    let mut req = client.request(method, format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_vec());
    }
    let res = req.send().ok()?;
    let status = res.status().as_u16();
    let fields = res
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let text = res.text().ok()?;
    Some((status, fields, text))
}

/// One request written by hand on a fresh connection, for what a client
/// library would not send (a forged `Host`, a body the server refuses
/// before reading it all): (status, fields, body); `None` while nothing
/// listens.
pub fn raw_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<(u16, Fields, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    if let Some(b) = body {
        // The server may answer (413) before reading it all.
        let _ = s.write_all(b);
    }
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let fields = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((status, fields, body.to_string()))
}

/// Polls `GET path` until its status is `want` (bounded by `within`).
pub fn wait_status(addr: &str, path: &str, want: u16, within: Duration) -> String {
    let last = std::cell::RefCell::new(None);
    poll_until(
        within,
        &format!("GET {addr}{path} answering {want}"),
        || {
            let got = http_get(addr, path);
            let hit = got
                .as_ref()
                .filter(|(status, _)| *status == want)
                .map(|(_, body)| body.clone());
            *last.borrow_mut() = got;
            hit
        },
        || format!("{:?}", last.borrow()),
    )
}

/// `sundial job get ID --json`: the job as the control protocol's `get`
/// describes it (the reply's `result`).
pub fn job_get(v: &Vhost, id: &str) -> serde_json::Value {
    let out = sundial()
        .args(["job", "get", id, "--json", "--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("job get runs");
    assert!(out.status.success(), "job get {id}: {}", stderr(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("job get {id}: not JSON ({e}): {}", stdout(&out)));
    reply["result"].clone()
}

/// `sundial job apply -f` of a TOML jobs file with `toml`; asserts success.
pub fn apply_jobs(v: &Vhost, toml: &str) {
    let out = job_apply(v, toml.as_bytes(), "toml", &[]);
    assert!(out.status.success(), "job apply: {}", stderr(&out));
}

/// `sundial job apply [args] -f FILE` with `contents` in a temporary `.ext`
/// file; the caller judges the output.
pub fn job_apply(v: &Vhost, contents: &[u8], ext: &str, args: &[&str]) -> Output {
    let file = std::env::temp_dir().join(format!("{}-jobs.{ext}", v.name));
    std::fs::write(&file, contents).expect("write jobs file");
    let out = sundial()
        .args(["job", "apply"])
        .args(args)
        .arg("-f")
        .arg(&file)
        .args(["--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("job apply runs");
    let _ = std::fs::remove_file(&file);
    out
}

/// Takes every message of `queue` (acked), returning them: for dead-letter
/// checks.
pub async fn drain(ch: &lapin::Channel, queue: &str) -> Vec<lapin::message::Delivery> {
    let mut out = Vec::new();
    while let Some(m) = bounded(
        "basic.get",
        ch.basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        ),
    )
    .await
    .expect("basic.get")
    {
        out.push(m.delivery);
    }
    out
}
