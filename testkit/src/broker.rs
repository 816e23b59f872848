//! A vhost per test, on the system broker or a test cluster's node.

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
