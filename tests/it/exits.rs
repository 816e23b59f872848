//! Every early exit is one clear line and its documented status (2: bad
//! input or settings, 1: anything else, 0: stopped or output closed), never a
//! panic and never a hang; several processes start on one host with default
//! settings, each on its own `/metrics` port.

use std::{
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::util::{free_addr, stderr, sundial, topology_apply, wait_status, Vhost, TEST_ENV};

/// No exit path here takes longer than this; past it the test fails.
const EXIT_BOUND: Duration = Duration::from_secs(60);

/// A broker address where nothing listens.
const NOWHERE: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

/// Waits for `child` at most [`EXIT_BOUND`] (its exit is awaited on a
/// thread, which also drains its pipes), killing it and failing past it.
fn wait_bounded(child: Child, what: &str) -> Output {
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(EXIT_BOUND) {
        Ok(out) => out.expect("collect output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let err = rx
                .recv_timeout(Duration::from_secs(10))
                .ok()
                .and_then(Result::ok)
                .map(|o| stderr(&o))
                .unwrap_or_default();
            panic!("{what} did not exit within {EXIT_BOUND:?}; stderr: {err}");
        }
    }
}

fn run_bounded(mut cmd: Command, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    wait_bounded(child, what)
}

fn assert_no_panic(out: &Output, what: &str) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{what} panicked: {err}"
    );
}

/// `out` failed with `code`, printing exactly one line that contains `says`.
fn assert_one_line(out: &Output, code: i32, says: &str, what: &str) {
    assert_no_panic(out, what);
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert_eq!(lines.len(), 1, "{what} must print one line, got: {err}");
    assert!(lines[0].contains(says), "{what}: {err}");
}

#[test]
fn every_early_exit_prints_one_line_and_its_status() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    let v = Vhost::new("exits");
    let url = v.url();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], i32, &'a str);
    let no_tls_ca: &[(&str, &str)] = &[
        (
            "SUNDIAL__BROKER__URL",
            "amqps://guest:guest@127.0.0.1:1/%2f",
        ),
        ("SUNDIAL__BROKER__TLS__CA_FILE", "/nonexistent/ca.pem"),
    ];
    let cases: &[Case] = &[
        // Bad settings: exit 2, naming the key.
        (
            &["scheduler"],
            &[("SUNDIAL__TOPOLOGY__SHARDS", "0")],
            2,
            "topology.shards",
        ),
        (
            &["worker"],
            &[("SUNDIAL__WORKER__CONCURRENCY", "0")],
            2,
            "worker.concurrency",
        ),
        (
            &["run"],
            &[("SUNDIAL__HTTP__LISTEN", "nowhere")],
            2,
            "http.listen",
        ),
        (
            &["status"],
            &[("SUNDIAL__LOG__FORMAT", "xml")],
            2,
            "log.format",
        ),
        // Unreadable TLS files: a settings error too, before any retry loop.
        (&["scheduler"], no_tls_ca, 2, "broker.tls.ca_file"),
        (&["worker"], no_tls_ca, 2, "broker.tls.ca_file"),
        (&["job", "list"], no_tls_ca, 2, "broker.tls.ca_file"),
        // Broker unreachable, for the commands that print a result.
        (
            &["status"],
            &[("SUNDIAL__BROKER__URL", NOWHERE)],
            1,
            "cannot connect",
        ),
        (
            &["job", "list"],
            &[("SUNDIAL__BROKER__URL", NOWHERE)],
            1,
            "cannot connect",
        ),
        (
            &["dlq", "list"],
            &[("SUNDIAL__BROKER__URL", NOWHERE)],
            1,
            "cannot connect",
        ),
        (
            &["topology", "apply"],
            &[("SUNDIAL__BROKER__URL", NOWHERE)],
            1,
            "cannot connect",
        ),
        (
            &["ledger", "--for", "1s"],
            &[("SUNDIAL__BROKER__URL", NOWHERE)],
            1,
            "cannot connect",
        ),
        (
            &["run"],
            &[("SUNDIAL__BROKER__URL", NOWHERE)],
            1,
            "cannot reach RabbitMQ",
        ),
        // An address set explicitly and taken: exit 1, naming it.
        (
            &["worker", "--http", &taken],
            &[("SUNDIAL__BROKER__URL", &url)],
            1,
            &taken,
        ),
        (
            &["scheduler", "--http", &taken],
            &[("SUNDIAL__BROKER__URL", &url)],
            1,
            &taken,
        ),
        (
            &["run", "--http", &taken],
            &[("SUNDIAL__BROKER__URL", &url)],
            1,
            &taken,
        ),
    ];
    for (args, env, code, says) in cases {
        let what = format!("sundial {} with {env:?}", args.join(" "));
        let mut cmd = sundial();
        cmd.args(*args)
            .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
            .envs(env.iter().copied());
        let out = run_bounded(cmd, &what);
        assert_one_line(&out, *code, says, &what);
    }
}

#[test]
fn services_that_never_reach_the_broker_give_up_without_panicking() {
    for role in ["scheduler", "worker"] {
        let mut cmd = sundial();
        cmd.args([role, "--broker", NOWHERE])
            .env("SUNDIAL__HTTP__ENABLED", "false")
            .env("SUNDIAL__SUPERVISOR__MAX_RESTARTS", "1");
        let out = run_bounded(cmd, role);
        assert_no_panic(&out, role);
        assert_eq!(out.status.code(), Some(1), "{role}: {}", stderr(&out));
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains("giving up"), "{role}: {err}");
    }
}

/// A `sundial` process whose stderr is read line by line as it comes (a
/// wait is on the line arriving, not on a file polled), killed if the test
/// ends before it does.
struct Logged {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    seen: String,
}

fn spawn_logged(args: &[&str], env: &[(&str, &str)]) -> Logged {
    // Default settings put the history index in the working directory:
    // not the repository's.
    let cwd = std::env::temp_dir().join("sundial-it-exits-cwd");
    std::fs::create_dir_all(&cwd).expect("working directory");
    let mut child = sundial()
        .current_dir(&cwd)
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sundial starts");
    let err = child.stderr.take().expect("piped stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Logged {
        child: Some(child),
        lines,
        seen: String::new(),
    }
}

impl Logged {
    /// Waits (bounded) for a line containing `text`; returns it.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + EXIT_BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("{text:?} not logged within {EXIT_BOUND:?}: {}", self.seen),
            }
        }
    }

    fn sigterm(&self) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(ok.success(), "kill -TERM {pid}");
    }

    /// The exit of a SIGTERMed service: status 0, no panic in its log.
    fn assert_stopped_cleanly(mut self, what: &str) {
        let child = self.child.take().expect("running");
        let out = wait_bounded(child, what);
        // The process is gone: the reader ends at end of file.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        let text = &self.seen;
        assert!(!text.contains("panicked"), "{what} panicked: {text}");
        assert_eq!(out.status.code(), Some(0), "{what}: {text}");
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn sigterm_during_start_up_exits_zero() {
    // Retrying an unreachable broker: the stop cuts the backoff short.
    for role in ["scheduler", "worker"] {
        let mut p = spawn_logged(
            &[role, "--broker", NOWHERE],
            &[("SUNDIAL__HTTP__ENABLED", "false")],
        );
        p.wait_for("reconnecting");
        p.sigterm();
        p.assert_stopped_cleanly(role);
    }
    // `run` between its endpoint and its scheduler's first fire.
    let v = Vhost::new("exits-run");
    let http = free_addr();
    let mut p = spawn_logged(
        &["run", "--broker", &v.url(), "--http", &http],
        &[("SUNDIAL__TOPOLOGY__SHARDS", "4")],
    );
    p.wait_for("serving /metrics");
    p.sigterm();
    p.assert_stopped_cleanly("run");
}

#[test]
fn a_scheduler_stopped_while_replaying_exits_zero() {
    let v = Vhost::new("exits-replay");
    topology_apply(&v);
    // Enough registry records that replay takes a while: 20,000 jobs.
    let jobs: Vec<serde_json::Value> = (0..20_000)
        .map(|i| {
            serde_json::json!({"id": format!("replay-{i:05}"), "schedule": "0 0 1 1 *",
                               "executor": {"type": "noop"}})
        })
        .collect();
    let mut first = crate::util::Daemon::start(&v, "replay-a");
    let out = crate::util::job_apply(
        &v,
        serde_json::to_string(&jobs).expect("json").as_bytes(),
        "json",
        &[],
    );
    assert!(out.status.success(), "job apply: {}", stderr(&out));
    first.stop();

    let mut env: Vec<(&str, &str)> = TEST_ENV.to_vec();
    env.push(("SUNDIAL__HTTP__ENABLED", "false"));
    let mut p = spawn_logged(
        &["scheduler", "--node", "replay-b", "--broker", &v.url()],
        &env,
    );
    p.wait_for("topology applied");
    p.sigterm();
    p.assert_stopped_cleanly("scheduler stopped while replaying");
}

#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let v = Vhost::new("exits-pipe");
    topology_apply(&v);
    let bin = env!("CARGO_BIN_EXE_sundial");
    let url = v.url();
    // `| true` closes the pipe before reading it: every write fails with
    // EPIPE, stdout's and stderr's (2>&1) alike.
    for args in [
        "status",
        "dlq list",
        "schedule next '* * * * * *' -n 100000",
    ] {
        let script = format!(
            "set -o pipefail; \"$0\" --broker \"$1\" {args} 2>&1 | true; echo \"status=$?\" >&2"
        );
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &script, bin, &url])
            .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
            .env("RUST_LOG", "info");
        let out = run_bounded(cmd, args);
        let err = stderr(&out);
        assert!(err.contains("status=0"), "sundial {args}: {err}");
    }
    // What a user types to look for errors: it returns.
    let script = "\"$0\" --broker \"$1\" status 2>&1 | grep -q . ; echo done";
    let mut cmd = Command::new("bash");
    cmd.args(["-c", script, bin, &url])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4");
    let out = run_bounded(cmd, "status | grep -q");
    assert!(crate::util::stdout(&out).contains("done"));
    // A long-running process whose output is gone stops, too.
    let script = "set -o pipefail; \"$0\" --broker \"$1\" run --jobs \"$2\" | head -c 1 >/dev/null; echo \"status=$?\" >&2";
    let jobs = std::env::temp_dir().join(format!("{}-tick.toml", v.name));
    std::fs::write(
        &jobs,
        "[[jobs]]\nid = \"tick\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n",
    )
    .expect("jobs file");
    // `run` keeps a history index in its working directory: a scratch one,
    // not the repository.
    let cwd = std::env::temp_dir().join(format!("{}-cwd", v.name));
    std::fs::create_dir_all(&cwd).expect("scratch dir");
    let mut cmd = Command::new("bash");
    cmd.args(["-c", script, bin, &url, &jobs.to_string_lossy()])
        .current_dir(&cwd)
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .env("SUNDIAL__HTTP__ENABLED", "false");
    let out = run_bounded(cmd, "run | head -c 1");
    let _ = std::fs::remove_file(&jobs);
    let _ = std::fs::remove_dir_all(&cwd);
    let err = stderr(&out);
    assert_no_panic(&out, "run | head -c 1");
    assert!(err.contains("status=0"), "run | head -c 1: {err}");
}

/// The address a process logged it serves on.
fn served_addr(p: &mut Logged) -> String {
    let line = p.wait_for("serving /metrics");
    line.split("on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no address in {line}"))
}

#[test]
fn a_scheduler_and_three_workers_start_on_one_host_with_no_flags() {
    let v = Vhost::new("exits-ports");
    let env = [("SUNDIAL__TOPOLOGY__SHARDS", "4"), ("RUST_LOG", "info")];
    let url = v.url();
    let mut procs = vec![spawn_logged(&["scheduler", "--broker", &url], &env)];
    for _ in 0..3 {
        procs.push(spawn_logged(&["worker", "--broker", &url], &env));
    }
    let addrs: Vec<String> = procs.iter_mut().map(served_addr).collect();
    let mut distinct = addrs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "each process its own port: {addrs:?}");
    assert!(
        addrs[0].starts_with("127.0.0.1:979"),
        "the scheduler's range: {addrs:?}"
    );
    for a in &addrs {
        wait_status(a, "/readyz", 200, EXIT_BOUND);
    }
    // `sundial status` sees the three workers.
    let status = run_bounded(
        {
            let mut c = sundial();
            c.args(["status", "--json", "--broker", &url])
                .env("SUNDIAL__TOPOLOGY__SHARDS", "4");
            c
        },
        "status",
    );
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let workers = s["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["pool"] == "default"))
        .map(|p| p["workers"].clone());
    assert_eq!(workers, Some(serde_json::json!(3)), "{s}");
    for p in procs {
        p.sigterm();
        p.assert_stopped_cleanly("a process of the host");
    }
}

#[test]
fn lapin_lines_never_reach_a_commands_output() {
    // A vhost with no topology: status's passive declares all fail.
    let v = Vhost::new("exits-quiet");
    let mut cmd = sundial();
    cmd.args(["status", "--broker", &v.url()])
        .env_remove("RUST_LOG")
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4");
    let out = run_bounded(cmd, "status");
    let mut all = stderr(&out);
    all.push_str(&crate::util::stdout(&out));
    assert!(!all.contains("lapin"), "{all}");
    assert!(!all.contains("ERROR"), "{all}");
    assert!(
        all.contains("sundial topology apply"),
        "says what to do: {all}"
    );
}

/// A broker that takes the TCP connection and never answers the AMQP
/// handshake (RabbitMQ at its file-handle limit does this): every command
/// gives up within `broker.connect_timeout`, exit 1, one line naming the
/// address.
#[test]
fn a_listener_that_never_answers_the_handshake_is_an_error_within_the_bound() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    // Accepts (the kernel does, into the backlog) and reads nothing.
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for s in silent.incoming().take(8).flatten() {
            open.push(s);
        }
        open
    });
    let url = format!("amqp://guest:guest@{addr}/%2f");
    for args in [
        &["job", "list"][..],
        &["topology", "apply"][..],
        &["status"][..],
    ] {
        let mut cmd = sundial();
        cmd.args(args)
            .args(["--broker", &url])
            .env("SUNDIAL__BROKER__CONNECT_TIMEOUT", "2s");
        let started = Instant::now();
        let out = run_bounded(cmd, &format!("sundial {args:?}"));
        let took = started.elapsed();
        assert_no_panic(&out, &format!("{args:?}"));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            err.contains(&addr.to_string()),
            "{args:?} names the address: {err}"
        );
        assert!(err.contains("no answer within 2s"), "{args:?}: {err}");
        assert!(took < Duration::from_secs(15), "{args:?} took {took:?}");
    }
    drop(held);
}

/// A service facing a broker that never answers the handshake is not ready,
/// says why, and keeps trying (it neither hangs at start nor exits).
#[test]
fn a_scheduler_facing_a_silent_broker_is_not_ready_and_says_why() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "amqp://guest:guest@{}/%2f",
        silent.local_addr().expect("addr")
    );
    let held = std::thread::spawn(move || silent.incoming().take(32).flatten().collect::<Vec<_>>());
    let addr = free_addr();
    let mut child = sundial()
        .args([
            "scheduler",
            "--node",
            "silent",
            "--broker",
            &url,
            "--http",
            &addr,
        ])
        .env("SUNDIAL__BROKER__CONNECT_TIMEOUT", "1s")
        .env("SUNDIAL__HISTORY__ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("scheduler starts");
    let last = std::cell::RefCell::new(None);
    let body = crate::util::poll_until(
        Duration::from_secs(30),
        "/readyz saying why",
        || {
            let got = crate::util::http_get(&addr, "/readyz");
            let why = got
                .as_ref()
                .filter(|(status, body)| *status == 503 && body.contains("no answer within 1s"))
                .map(|(_, body)| body.clone());
            *last.borrow_mut() = got;
            why
        },
        || format!("{:?}", last.borrow()),
    );
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the scheduler gave up instead of retrying: {body}"
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(held);
}
