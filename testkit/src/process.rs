//! The binary under test: one-shot commands and long-running daemons.

use std::{
    process::{Command, Output},
    time::Duration,
};

use crate::Vhost;

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

/// Runs `cmd` to its end like `Command::output`, but at most `within`:
/// past it the child is killed and the test fails naming `what` (a CLI
/// command that hangs fails its test instead of the whole run).
pub fn output_within(mut cmd: Command, within: Duration, what: &str) -> Output {
    use std::{io::Read, process::Stdio};
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    // Read both pipes meanwhile, so a chatty child never blocks on a full one.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err.join().unwrap_or_default();
                panic!(
                    "{what} did not finish within {within:?} (killed); its stderr: {}",
                    String::from_utf8_lossy(&stderr)
                );
            }
            Err(e) => panic!("{what}: cannot wait for it: {e}"),
        }
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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

/// `sundial ledger --json --from FROM --to TO` against `broker` (whole
/// seconds): the ledger's JSON; fails loudly when it is not JSON.
pub fn ledger_json(
    broker: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let t = |x: chrono::DateTime<chrono::Utc>| x.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ledger = sundial()
        .args(["ledger", "--json", "--from", &t(from), "--to", &t(to)])
        .args(["--broker", broker])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("ledger runs");
    serde_json::from_slice(&ledger.stdout)
        .unwrap_or_else(|e| panic!("ledger JSON ({e}): {}{}", stdout(&ledger), stderr(&ledger)))
}
