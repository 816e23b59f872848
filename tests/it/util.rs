//! Test helpers: a private vhost per test, the binary under test, timeouts.

use std::{
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// Longest any single broker operation may take in a test before it fails.
pub(crate) const BROKER_TIMEOUT: Duration = Duration::from_secs(60);

fn rabbitmqctl(args: &[&str]) -> Output {
    let out = Command::new("rabbitmqctl")
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

/// A vhost that exists for the life of the value; deleted on drop.
pub(crate) struct Vhost {
    pub(crate) name: String,
}

impl Vhost {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sundial-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Self { name }
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// Sorted lines of `rabbitmqctl list_<what> -p vhost <columns>`.
    pub(crate) fn list(&self, what: &str, columns: &[&str]) -> Vec<String> {
        let mut args = vec![what, "-p", &self.name, "--no-table-headers", "-q"];
        args.extend_from_slice(columns);
        let out = rabbitmqctl(&args);
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
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// The `sundial` binary, with a clean environment for settings.
pub(crate) fn sundial() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sundial"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SUNDIAL") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "warn");
    c
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `fut` with [`BROKER_TIMEOUT`], failing the test loudly on expiry.
pub(crate) async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BROKER_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BROKER_TIMEOUT:?}"))
}
