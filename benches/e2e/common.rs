//! Helpers shared by the load benchmarks (included with `#[path]`): a
//! private vhost (on the system broker or the 3-node test cluster),
//! percentiles, the raw lapin publish.

#![allow(dead_code)]

use std::process::Command;

use lapin::{options::BasicPublishOptions, BasicProperties};

pub(crate) fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

pub(crate) fn ms(s: f64) -> String {
    format!("{:.2} ms", s * 1000.0)
}

/// Which RabbitMQ the harness measures: the system broker on 5672, or
/// (`--cluster`) the 3-node test cluster of `tests/cluster/cluster.sh`,
/// every client (raw lapin and Sundial alike) connected to node 1.
static CLUSTER: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

fn cluster_script() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/cluster.sh")
}

/// The 3-node cluster, up for the whole run; stopped and deleted on drop.
pub(crate) struct Cluster(std::path::PathBuf);

impl Cluster {
    pub(crate) fn up() -> Self {
        let dir =
            std::env::temp_dir().join(format!("sundial-bench-cluster-{}", std::process::id()));
        let out = Command::new(cluster_script())
            .arg("up")
            .env("SUNDIAL_CLUSTER_DIR", &dir)
            .output()
            .expect("tests/cluster/cluster.sh runs");
        assert!(
            out.status.success(),
            "cluster.sh up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        CLUSTER.set(dir.clone()).expect("one cluster per run");
        Self(dir)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(cluster_script())
            .arg("down")
            .env("SUNDIAL_CLUSTER_DIR", &self.0)
            .output();
    }
}

/// The measured broker: the system one, or node 1 of the test cluster.
pub(crate) fn broker() -> sundial_testkit::Broker {
    match CLUSTER.get() {
        Some(dir) => sundial_testkit::Broker::new(
            &cluster_script().to_string_lossy(),
            &["ctl", "1"],
            &[("SUNDIAL_CLUSTER_DIR", &dir.to_string_lossy())],
            5701,
        ),
        None => sundial_testkit::Broker::system(),
    }
}

/// `rabbitmqctl` of the measured broker.
pub(crate) fn rabbitmqctl() -> std::process::Command {
    broker().ctl()
}

/// A vhost of the run on the measured broker (`sundial-bench-{tag}-…`).
pub(crate) fn vhost(tag: &str) -> Vhost {
    Vhost::on(broker(), &format!("bench-{tag}"))
}

pub(crate) use sundial_testkit::Vhost;

/// One raw publish, `mandatory`, to the default exchange.
pub(crate) async fn raw_publish(
    ch: &lapin::Channel,
    queue: &str,
    body: &[u8],
    props: &BasicProperties,
) -> lapin::PublisherConfirm {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        body,
        props.clone(),
    )
    .await
    .expect("publish")
}

/// A confirming channel, and `queues` durable quorum queues `raw.{q}` like
/// the work queues, for the raw lapin baselines.
pub(crate) async fn raw_queues(conn: &lapin::Connection, queues: u32) -> lapin::Channel {
    use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut args = lapin::types::FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    // As Sundial's work queues (`topology.replicas` = 3): three members,
    // leaders spread over the nodes of a cluster (one node: no difference).
    args.insert(
        "x-queue-leader-locator".into(),
        lapin::types::AMQPValue::LongString("balanced".into()),
    );
    args.insert(
        "x-quorum-initial-group-size".into(),
        lapin::types::AMQPValue::LongInt(3),
    );
    for q in 0..queues {
        ch.queue_declare(
            format!("raw.{q}").as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args.clone(),
        )
        .await
        .expect("queue");
    }
    ch
}

/// `GET path` on `addr`, timed: (status, seconds, body bytes). A new
/// connection per request (no idle connections kept), as a browser's
/// first request of a page.
pub(crate) fn timed_get(addr: &std::net::SocketAddr, path: &str) -> (u16, f64, usize) {
    let t = std::time::Instant::now();
    let res = client()
        .get(format!("http://{addr}{path}"))
        .send()
        .expect("the API answers");
    let status = res.status().as_u16();
    let bytes = res.bytes().map_or(0, |b| b.len());
    (status, t.elapsed().as_secs_f64(), bytes)
}

/// The harness's HTTP client: no idle connections kept, 60 s per request.
pub(crate) fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::blocking::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("an HTTP client")
    })
}

/// Serves `api` on an ephemeral loopback port until `stop`; returns its
/// address.
pub(crate) async fn serve_api(
    api: std::sync::Arc<sundial_web::api::Api>,
    stop: tokio_util::sync::CancellationToken,
) -> std::net::SocketAddr {
    let (addr, _task) = sundial_web::ops::serve(
        sundial_web::ops::Listen::Exactly(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        sundial_web::ops::detached_recorder(),
        sundial_runtime::Health::new(),
        Some(api),
        stop,
    )
    .await
    .expect("serve the API");
    addr
}

/// CPU time (user + system) of processes, read from `/proc`: where a
/// phase's work went (the broker, the workers, the harness), in seconds.
pub(crate) mod cpu {
    use std::sync::OnceLock;

    /// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`).
    fn tick() -> f64 {
        static TICK: OnceLock<f64> = OnceLock::new();
        *TICK.get_or_init(|| {
            std::process::Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
                .unwrap_or(100.0)
        })
    }

    /// utime + stime of `pid` (`self` for this process), in seconds.
    pub(crate) fn of(pid: &str) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces): state is
        // the first, utime the 12th, stime the 13th.
        let rest = stat.rsplit_once(')')?.1;
        let mut f = rest.split_whitespace().skip(11);
        let user: f64 = f.next()?.parse().ok()?;
        let system: f64 = f.next()?.parse().ok()?;
        Some((user + system) / tick())
    }

    /// The broker's processes on this machine (every `beam.smp`).
    pub(crate) fn brokers() -> Vec<String> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "beam.smp")
            })
            .collect()
    }

    /// CPU seconds of the broker, the given processes and this one.
    #[derive(Debug, Clone, Copy, Default)]
    pub(crate) struct Split {
        pub broker: f64,
        pub others: f64,
        pub harness: f64,
    }

    pub(crate) fn now(others: &[u32]) -> Split {
        Split {
            broker: brokers().iter().filter_map(|p| of(p)).sum(),
            others: others.iter().filter_map(|p| of(&p.to_string())).sum(),
            harness: of("self").unwrap_or(0.0),
        }
    }

    impl std::ops::Sub for Split {
        type Output = Split;
        fn sub(self, o: Split) -> Split {
            Split {
                broker: self.broker - o.broker,
                others: self.others - o.others,
                harness: self.harness - o.harness,
            }
        }
    }

    impl Split {
        /// Milliseconds of CPU per thousand messages.
        pub(crate) fn per_thousand(self, n: usize) -> Split {
            let k = n as f64 / 1e3 / 1e3;
            Split {
                broker: self.broker / k,
                others: self.others / k,
                harness: self.harness / k,
            }
        }
    }
}
