//! Sundial on a 3-node RabbitMQ cluster (tests/cluster/cluster.sh: nodes
//! sd1..sd3@localhost beside the system broker, AMQP 5701–5703). Drills
//! judged by fire ids (`sundial ledger` over the history stream): two
//! schedulers and two workers spread over the nodes, 200 every-second jobs;
//! SIGKILL the node that leads most work queues → every process is ready
//! again within 5 s and no fire of the window is missing (duplicates are
//! counted and printed); start the node again → it rejoins and every work
//! queue has its three members online, with no manual step; SIGKILL the
//! node holding one scheduler's connections (its leases) → every shard is
//! owned again from a surviving node and nothing is lost; SIGSTOP a node
//! for 20 s → nothing lost.
//!
//! Its own test binary: it starts and kills broker nodes (never the
//! system one), so it runs alone (cargo runs test binaries one after
//! another).

use sundial_testkit as util;

use std::{
    path::PathBuf,
    process::{Child, Command, Output},
    time::{Duration, Instant},
};

use chrono::{DurationRound, Utc};
use util::{free_addr, http_get, ledger_json, stderr, stdout, sundial, TEST_ENV};

const JOBS: usize = 200;

/// A line for the test output even when the test passes (libtest captures
/// `println!`, not writes to the stderr handle): the drills' counts belong
/// in CI's log.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/cluster.sh")
}

/// The cluster's directory: private to this run.
fn cluster_dir() -> PathBuf {
    std::env::temp_dir().join(format!("sundial-cluster-{}", std::process::id()))
}

fn cluster(args: &[&str]) -> Output {
    let out = Command::new(script())
        .args(args)
        .env("SUNDIAL_CLUSTER_DIR", cluster_dir())
        .output()
        .expect("cluster.sh runs");
    assert!(
        out.status.success(),
        "cluster.sh {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Stops and deletes the cluster however the test ends.
struct Cluster;

impl Cluster {
    fn up() -> Self {
        let t = Instant::now();
        cluster(&["up"]);
        report!("cluster up in {:.1} s", t.elapsed().as_secs_f64());
        Cluster
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("down")
            .env("SUNDIAL_CLUSTER_DIR", cluster_dir())
            .output();
    }
}

fn url(n: u32) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", 5700 + n)
}

/// `broker.urls` starting at node `first`.
fn urls(first: u32) -> String {
    (0..3)
        .map(|i| url((first - 1 + i) % 3 + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// A long-running `sundial` process on the cluster; killed on drop.
struct Proc {
    child: Child,
    http: String,
    log: PathBuf,
}

impl Proc {
    fn start(args: &[&str], name: &str, first: u32) -> Self {
        let log = cluster_dir().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let http = free_addr();
        let child = sundial()
            .args(args)
            .envs(TEST_ENV.iter().copied())
            .env("SUNDIAL__BROKER__URLS", urls(first))
            .env("SUNDIAL__HTTP__ENABLED", "true")
            .env("SUNDIAL__HTTP__LISTEN", &http)
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("sundial starts");
        Self { child, http, log }
    }

    fn ready(&self) -> bool {
        matches!(http_get(&self.http, "/readyz"), Some((200, _)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sundial ARGS` against the cluster (urls from node `first`).
fn cli(args: &[&str], first: u32) -> Output {
    sundial()
        .args(args)
        .envs(TEST_ENV.iter().copied())
        .env("SUNDIAL__BROKER__URLS", urls(first))
        .output()
        .expect("sundial runs")
}

/// Waits (bounded) until `f` holds.
fn wait(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    util::poll_until(within, what, || f().then_some(()), String::new);
    t.elapsed()
}

/// `name COLUMN` of every work queue, as node 1 lists them (`None` while
/// node 1 cannot answer).
fn work_queues(column: &str) -> Option<Vec<(String, String)>> {
    let out = Command::new(script())
        .args([
            "ctl",
            "1",
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            column,
        ])
        .env("SUNDIAL_CLUSTER_DIR", cluster_dir())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        stdout(&out)
            .lines()
            .filter_map(|l| l.split_once(char::is_whitespace))
            .map(|(q, rest)| (q.to_string(), rest.trim().to_string()))
            // Shard queues only (not a worker's own queue).
            .filter(|(q, _)| q.starts_with("sundial.work.") && !q.contains(".@"))
            .collect(),
    )
}

#[test]
fn node_losses_and_a_frozen_node_lose_no_fire() {
    let _c = Cluster::up();
    tls_against_a_real_listener();
    let applied = cli(&["topology", "apply"], 1);
    assert!(applied.status.success(), "{}", stderr(&applied));

    // Schedulers on nodes 1 and 2, workers on nodes 2 and 3 (their first
    // address): the 4 timer shards split between the schedulers by lease.
    let scheduler = Proc::start(&["scheduler", "--node", "drill-sched"], "scheduler", 1);
    let scheduler_b = Proc::start(&["scheduler", "--node", "drill-sched-b"], "scheduler-b", 2);
    let w2 = Proc::start(&["worker", "--id", "drill-w2"], "worker-2", 2);
    let w3 = Proc::start(&["worker", "--id", "drill-w3"], "worker-3", 3);
    let procs = [&scheduler, &scheduler_b, &w2, &w3];
    wait("every process ready", Duration::from_secs(60), || {
        procs.iter().all(|p| p.ready())
    });
    let mut jobs = String::new();
    for i in 0..JOBS {
        jobs.push_str(&format!(
            "[[jobs]]\nid = \"drill-{i:03}\"\nschedule = \"* * * * * *\"\nexecutor = {{ type = \"noop\" }}\n"
        ));
    }
    let file = cluster_dir().join("jobs.toml");
    std::fs::write(&file, jobs).expect("jobs file");
    let path = file.display().to_string();
    let applied = cli(&["job", "apply", "-f", &path], 1);
    assert!(applied.status.success(), "{}", stderr(&applied));

    // Steady: the window starts once the fires run.
    std::thread::sleep(Duration::from_secs(3));
    let from = next_second();
    let leaders = work_queues("leader").expect("node 1 lists its queues");
    let mut count: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, l) in &leaders {
        *count.entry(l.clone()).or_default() += 1;
    }
    report!("work queue leaders: {count:?}");
    let victim = count
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(node, _)| node.clone())
        .expect("a leader");
    let n: u32 = victim
        .trim_start_matches("sd")
        .split('@')
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("a node of the test cluster: {victim}"));
    std::thread::sleep(Duration::from_secs(4));
    // Each process on the node its broker.urls start at.
    let mut status_before = String::new();
    wait(
        "status lists every process on its first node",
        Duration::from_secs(10),
        || {
            status_before = stdout(&cli(&["status"], (n % 3) + 1));
            PROCESSES
                .iter()
                .all(|(p, k)| node_of(&status_before, p) == Some(*k))
                && unowned(&status_before) == Some(0)
        },
    );
    report!("{status_before}");
    cluster(&["kill", &n.to_string()]);
    let killed = Instant::now();
    report!(
        "SIGKILLed {victim} (leader of {} work queues)",
        count[&victim]
    );
    // Every process notices at once (the killed node's connections are
    // reset) and is ready again on a survivor within 5 s of the kill.
    std::thread::sleep(Duration::from_secs(1));
    wait("every process ready again", Duration::from_secs(4), || {
        procs.iter().all(|p| p.ready())
    });
    report!(
        "every process ready {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let survivor = (n % 3) + 1;
    // `sundial status` names each process's node: all three on survivors.
    let mut status = String::new();
    wait(
        "status lists both schedulers and both workers on surviving nodes",
        Duration::from_secs(10),
        || {
            status = stdout(&cli(&["status"], survivor));
            PROCESSES
                .iter()
                .all(|(p, _)| node_of(&status, p).is_some_and(|k| k != n))
        },
    );
    report!("{status}");
    std::thread::sleep(Duration::from_secs(10));
    let to = this_second();
    judge("a", from, to, survivor);

    // (c) The node comes back and its queues regain their members.
    cluster(&["start", &n.to_string()]);
    let rejoined = wait(
        "every work queue has 3 members online",
        Duration::from_secs(90),
        || {
            work_queues("online").is_some_and(|w| {
                !w.is_empty()
                    && w.iter()
                        .all(|(_, online)| online.matches("@localhost").count() == 3)
            })
        },
    );
    report!("drill (c): {victim} rejoined; every work queue has 3 online members {:.1} s after its start", rejoined.as_secs_f64());
    // (b) SIGKILL the node holding drill-sched's connections (node 1, its
    // first address; its leases are exclusive queues there): its shards are
    // owned again from a surviving node (drill-sched reconnected, or
    // drill-sched-b after its heartbeat timeout), and what fell due
    // meanwhile fires.
    let before = stdout(&cli(&["status"], 2));
    let held_by_a = owners(&before)
        .iter()
        .filter(|o| *o == "drill-sched")
        .count();
    report!("drill (b): before, drill-sched owns {held_by_a} of the shards\n{before}");
    let from = next_second();
    std::thread::sleep(Duration::from_secs(2));
    cluster(&["kill", "1"]);
    let killed = Instant::now();
    // Every shard owned by a scheduler heartbeating from a survivor.
    let mut status = String::new();
    wait(
        "every shard owned from a surviving node",
        Duration::from_secs(15),
        || {
            status = stdout(&cli(&["status"], 2));
            let o = owners(&status);
            unowned(&status) == Some(0)
                && !o.is_empty()
                && o.iter()
                    .all(|x| node_of(&status, x).is_some_and(|k| k != 1))
        },
    );
    report!(
        "drill (b): every shard owned from a surviving node {:.1} s after node 1 was killed\n{status}",
        killed.elapsed().as_secs_f64()
    );
    wait("both schedulers ready", Duration::from_secs(10), || {
        scheduler.ready() && scheduler_b.ready()
    });
    std::thread::sleep(Duration::from_secs(8));
    let to = this_second();
    judge("b", from, to, 2);
    cluster(&["start", "1"]);

    // (d) SIGSTOP a node for 20 s (noticed only through heartbeats), then
    // SIGCONT: nothing is lost.
    let from = next_second();
    std::thread::sleep(Duration::from_secs(2));
    cluster(&["freeze", "3"]);
    std::thread::sleep(Duration::from_secs(20));
    cluster(&["thaw", "3"]);
    wait(
        "every process ready after the thaw",
        Duration::from_secs(30),
        || procs.iter().all(|p| p.ready()),
    );
    std::thread::sleep(Duration::from_secs(5));
    let to = this_second();
    judge("d", from, to, 1);

    for p in procs {
        assert!(p.ready(), "still ready; log {}", p.log.display());
    }
}

/// The schedulers and the workers, by the names `sundial status` lists,
/// with the node their `broker.urls` start at.
const PROCESSES: [(&str, u32); 4] = [
    ("drill-sched", 1),
    ("drill-sched-b", 2),
    ("drill-w2", 2),
    ("drill-w3", 3),
];

/// `N` of `sundial status`'s "timer shards: S (N unowned)" line.
fn unowned(status: &str) -> Option<usize> {
    let line = status.lines().find(|l| l.starts_with("timer shards:"))?;
    let (_, rest) = line.split_once('(')?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Owner of each shard in `sundial status`'s shard table.
fn owners(status: &str) -> Vec<String> {
    status
        .lines()
        .skip_while(|l| !l.starts_with("timer shards:"))
        .skip(2)
        .take_while(|l| l.starts_with("  ") && !l.trim_start().starts_with("POOL"))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// The node (1..=3) that `sundial status` shows process `name` connected to
/// (the BROKER column ends its line); `None` while it is not listed.
fn node_of(status: &str, name: &str) -> Option<u32> {
    let line = status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))?;
    (1..=3).find(|n| {
        line.trim_end()
            .ends_with(&format!("127.0.0.1:{}", 5700 + n))
    })
}

fn this_second() -> chrono::DateTime<Utc> {
    Utc::now()
        .duration_trunc(chrono::Duration::seconds(1))
        .expect("trunc")
}

fn next_second() -> chrono::DateTime<Utc> {
    this_second() + chrono::Duration::seconds(1)
}

/// `sundial ledger --from --to` on node `node`: no expected fire of the
/// window may be missing; prints the counts (duplicates included).
fn judge(drill: &str, from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>, node: u32) {
    let t = |x: chrono::DateTime<Utc>| x.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let l = ledger_json(&url(node), from, to);
    let dups = l["duplicates"].as_object().map_or(0, |d| d.len());
    let secs = (to - from).num_seconds().max(1) as u64;
    report!(
        "drill ({drill}): window {} .. {}: expected {}, observed {}, missing {}, duplicated fire ids {dups}",
        t(from),
        t(to),
        l["expected"],
        l["observed"],
        l["missing"].as_array().map_or(0, Vec::len)
    );
    assert!(
        l["expected"]
            .as_u64()
            .is_some_and(|e| e >= JOBS as u64 * secs / 2),
        "drill ({drill}): the window held the drill: {l}"
    );
    assert_eq!(
        l["missing"],
        serde_json::json!([]),
        "drill ({drill}): no fire lost: {l}"
    );
}

/// `amqps://` against node 1's TLS listener: the CA in `broker.tls.ca_file`
/// connects; another CA is refused with a clear error; a client
/// certificate (`cert_file`, `key_file`) is presented (mutual TLS).
fn tls_against_a_real_listener() {
    let tls = cluster_dir().join("tls");
    let file = |f: &str| tls.join(f).display().to_string();
    let amqps = "amqps://guest:guest@localhost:5711/%2f";
    let apply = |env: &[(&str, String)]| {
        sundial()
            .args(["topology", "apply", "--broker", amqps])
            .envs(TEST_ENV.iter().copied())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("topology apply")
    };
    let ok = apply(&[("SUNDIAL__BROKER__TLS__CA_FILE", file("ca.pem"))]);
    assert!(
        ok.status.success(),
        "amqps with the right CA: {}",
        stderr(&ok)
    );
    let wrong = apply(&[("SUNDIAL__BROKER__TLS__CA_FILE", file("other-ca.pem"))]);
    assert!(!wrong.status.success(), "another CA must be refused");
    let why = stderr(&wrong);
    assert_eq!(why.trim().lines().count(), 1, "one line: {why}");
    assert!(
        why.to_lowercase().contains("certificate") || why.contains("UnknownIssuer"),
        "the error says it is the certificate: {why}"
    );
    report!("TLS, wrong CA: {}", why.trim());
    // Mutual TLS: a worker presents its client certificate.
    let log = cluster_dir().join("tls-worker.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut worker = sundial()
        .args(["worker", "--id", "tls-worker", "--broker", amqps])
        .envs(TEST_ENV.iter().copied())
        .env("SUNDIAL__BROKER__TLS__CA_FILE", file("ca.pem"))
        .env("SUNDIAL__BROKER__TLS__CERT_FILE", file("client.pem"))
        .env("SUNDIAL__BROKER__TLS__KEY_FILE", file("client.key"))
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("worker starts");
    let subjects = || {
        cluster(&[
            "ctl",
            "1",
            "list_connections",
            "-q",
            "--no-table-headers",
            "ssl",
            "peer_cert_subject",
        ])
    };
    let seen = wait(
        "the client certificate on a TLS connection",
        Duration::from_secs(30),
        || stdout(&subjects()).contains("CN=sundial-test-client"),
    );
    report!(
        "mutual TLS: the worker's certificate seen by the broker after {:.1} s",
        seen.as_secs_f64()
    );
    let _ = worker.kill();
    let _ = worker.wait();
}
