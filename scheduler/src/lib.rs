//! `sundial-scheduler`: replays the registry, follows it, takes leases on
//! its share of the timer shards and fires them, and (while it is the
//! control queue's single active consumer) executes control commands.
//! docs/architecture.md draws its supervision tree and one fire's path.
//!
//! # Layout
//!
//! | module       | responsibility |
//! |--------------|----------------|
//! | `lib.rs`     | `SchedulerConfig`, `run` (the supervised root) and `run_once` (one connection's life) |
//! | `startup`    | replaying `sundial.registry` up to a marker of its own; the misfire floor |
//! | `registry`   | the `Registry` actor: commands → stream append → view → timer shards; snapshots |
//! | `reads`      | `RegistryReads`: the handle the web application's job reads go through |
//! | `control`    | the control consumer: decode, verify, execute, reply or dead-letter |
//! | `leases`     | heartbeats, shard leases, rebalancing; one-for-one supervision of the timer shards |
//! | `shard`      | `ShardActor` (the actor over core's `ShardTimer`): one shard's fires (publish with confirms, retries, set-aside) and its watermark |
//! | `runs`       | `runs::track`: running jobs from the history stream, for the overlap policies |
//! | `opening`    | how an occurrence starts (a fire, or a workflow's opening record); the shards this node holds |
//! | `workflows`  | `workflows::advance`: the owner publishes a workflow's next steps from what the history stream says |
//! | [`ingest`]   | the history stream into the store's index |
//! | [`error`]    | this crate's error type |
//!
//! ```text
//! run (reconnects with backoff: the root of a rest-for-one restart)
//!  └─ run_once: broker::connect_to × 2 (connection + lease connection)
//!      ├─ topology::apply_if_permitted (idempotent)
//!      ├─ startup::replay_registry: sundial.registry → RegistryView
//!      ├─ Registry         actor (commands → stream append → view → shards;
//!      │                    follows records other nodes append)
//!      ├─ leases::run      task (heartbeats on sundial.nodes; exclusive
//!      │   │                sundial.lease.{shard} queues; rebalancing)
//!      │   └─ ShardActor × held shards (watermark read, epoch + 1,
//!      │                    misfires over (watermark, now])
//!      ├─ runs::track      task (run events → RunningJobs → overlap)
//!      ├─ workflows::advance task (history stream → workflow progress →
//!      │                    next steps of the owned shards' occurrences)
//!      └─ control::run     task (sundial.control → Registry → reply / dead letter)
//! ```

pub mod alerts;
mod control;
pub mod error;
pub mod ingest;
mod leases;
mod opening;
mod reads;
mod registry;
mod runs;
mod shard;
mod startup;
mod workflows;

use std::{sync::Arc, time::Duration};

use actix::prelude::*;
use chrono::Utc;
use sundial_core::topology::Topology;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::registry::Registry;
pub use self::{
    error::Error,
    reads::{RegistryReads, Unavailable},
};

/// What a scheduler needs to run.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub broker: sundial_core::settings::BrokerSettings,
    pub topology: Topology,
    /// This node's name (logs, watermarks, consumer tags).
    pub node: String,
    /// Snapshot threshold and retention of the registry stream.
    pub registry: sundial_core::settings::RegistrySettings,
    /// Where the scheduler reports readiness (`/readyz`).
    pub health: Arc<sundial_runtime::Health>,
    /// `control.hmac_key`: commands must be signed with it, fire events are
    /// signed with it.
    pub hmac_key: Option<Arc<[u8]>>,
    /// Restart intensity of the supervision loop.
    pub supervisor: sundial_core::settings::SupervisorSettings,
    /// Heartbeats and failover timing.
    pub scheduler: sundial_core::settings::SchedulerSettings,
    /// The history index this node keeps, if any ([`sundial_store::open`]).
    pub history: Option<Arc<sundial_store::Index>>,
    /// Where this node's registry answers reads (the API's job endpoints).
    pub reads: Arc<RegistryReads>,
    /// Where alerts go (`[[alerts.routes]]`).
    pub alert_routes: Vec<sundial_core::alert::Route>,
    /// How they get there (the binary's HTTP and SMTP clients; none: not sent).
    pub alert_senders: alerts::Senders,
    /// The dashboard the alerts link to (`http.api`).
    pub dashboard: Option<String>,
}

impl SchedulerConfig {
    /// The configuration the settings describe, for node `node`.
    pub fn from_settings(s: &sundial_core::settings::Settings, node: String) -> Self {
        Self {
            broker: s.broker.clone(),
            topology: s.topology.clone(),
            node,
            registry: s.registry,
            health: sundial_runtime::Health::new(),
            hmac_key: s.control.hmac_key.as_deref().map(Arc::from),
            supervisor: s.supervisor,
            scheduler: s.scheduler,
            history: None,
            reads: RegistryReads::new(),
            alert_routes: s.alerts.routes.clone(),
            alert_senders: alerts::Senders::default(),
            dashboard: Some(s.http.api.clone()),
        }
    }
}

/// This component's name in `/readyz`.
const HEALTH_PART: &str = "scheduler";

/// How long a stopping scheduler waits for its tasks to hand its shards
/// over before it closes its connections anyway.
const HANDOVER_WAIT: Duration = Duration::from_secs(15);

/// Runs until `shutdown` is cancelled. Losing the broker restarts everything
/// that uses the connection, after a backoff; the registry and watermarks
/// are read again, so nothing accepted or fired is forgotten.
///
/// Must run inside an actix `System` on a multi-thread tokio runtime.
pub async fn run(cfg: SchedulerConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let alive_since = Utc::now();
    // Counted for the life of the process, across reconnects.
    let set_aside = Arc::new(shard::SetAside::default());
    let mut supervisor = sundial_runtime::supervise::Supervisor::new("scheduler", cfg.supervisor);
    cfg.health
        .set(HEALTH_PART, Some("connecting to the broker".into()));
    let not_started = |why: &str| {
        for part in [control::HEALTH_PART, leases::HEALTH_PART] {
            cfg.health.set(part, Some(why.to_string()));
        }
    };
    not_started("starting");
    loop {
        match run_once(&cfg, &shutdown, alive_since, &set_aside).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                cfg.health.set(
                    HEALTH_PART,
                    Some(format!("broker link lost ({e}); reconnecting")),
                );
                not_started("reconnecting");
                metrics::gauge!(sundial_runtime::metrics::SHARDS_OWNED).set(0.0);
                supervisor.restart(e, &shutdown).await?;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
            }
        }
    }
}

async fn run_once(
    cfg: &SchedulerConfig,
    shutdown: &CancellationToken,
    alive_since: chrono::DateTime<Utc>,
    set_aside: &Arc<shard::SetAside>,
) -> Result<(), Error> {
    let topo = Arc::new(cfg.topology.clone());
    let start = async {
        let (conn, broker) = sundial_amqp::broker::connect_any(
            &cfg.broker,
            &format!("sundial scheduler {}", cfg.node),
        )
        .await?;
        // Leases live on their own connection: when it goes, every lease
        // goes with it, and this node stops firing (the run ends, everything
        // restarts).
        let lease_conn = sundial_amqp::broker::connect_to(
            &cfg.broker,
            &format!("sundial scheduler {} leases", cfg.node),
        )
        .await?;
        sundial_amqp::topology::apply_if_permitted(&conn, &topo.declarations()).await?;
        let replayed = startup::replay_registry(&conn, &topo, &cfg.node).await?;
        Ok::<_, Error>((conn, broker, lease_conn, replayed))
    };
    // A stop during start-up (a long replay, a slow broker) ends the run at
    // once: nothing is owned or fired yet, so nothing needs handing over.
    let (conn, broker, lease_conn, replayed) = tokio::select! {
        r = start => r?,
        () = shutdown.cancelled() => {
            info!(node = %cfg.node, "stopped during start-up");
            return Ok(());
        }
    };
    let lost = sundial_amqp::broker::on_connection_error(&conn);
    let lease_lost = sundial_amqp::broker::on_connection_error(&lease_conn);

    // Shards are spread over a few threads (actix arbiters) so that one
    // second's burst of fires is encoded and published on every core.
    let runs = Arc::new(runs::RunningJobs::default());
    let owned = Arc::new(opening::Owned::default());
    let occurrences = Arc::new(opening::Occurrences::default());
    let (open_tx, open_rx) = tokio::sync::mpsc::channel(16);
    let common = shard::ShardCommon {
        opener: shard::ChannelOpener(open_tx),
        node: cfg.node.clone(),
        topo: topo.clone(),
        runs: runs.clone(),
        key: cfg.hmac_key.clone(),
        set_aside: set_aside.clone(),
        owned: owned.clone(),
        alert_health: cfg.alert_senders.health.clone(),
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let reg_ch = sundial_amqp::broker::confirming_channel(&conn).await?;
    let jobs = replayed.view.len();
    let registry_failed = CancellationToken::new();
    let parts = registry::RegistryParts {
        channel: reg_ch,
        topo: topo.clone(),
        settings: cfg.registry,
        node: cfg.node.clone(),
        failed: registry_failed.clone(),
        key: cfg.hmac_key.clone(),
        occurrences: occurrences.clone(),
    };
    // The registry has a thread of its own: its conversion walks after a
    // takeover (seconds of work at millions of jobs) must not delay the
    // lease loop, the heartbeats or the control consumer on this one.
    let registry_thread = Arbiter::new();
    let registry = Registry::start_in_arbiter(&registry_thread.handle(), move |_| {
        Registry::new(replayed, parts)
    });
    cfg.reads.set(Some(registry.clone().recipient()));
    info!(node = %cfg.node, shards = topo.shards, jobs, "scheduler running");
    // Ready means: connected, registry replayed, control consumer attached
    // and the first lease round done (web/src/ops.rs).
    cfg.health.set(HEALTH_PART, None);

    // The control consumer, run tracker and leases stop on shutdown or on
    // connection loss.
    let stop = CancellationToken::new();
    let probe = sundial_amqp::broker::Probe::new(
        cfg.broker.clone(),
        format!("sundial scheduler {} probes", cfg.node),
    );
    let result = {
        let control = control::run(
            &conn,
            &probe,
            &topo,
            &cfg.node,
            registry.clone(),
            cfg.hmac_key.clone(),
            &cfg.health,
            stop.clone(),
        );
        let tracker = runs::track(&conn, &topo, runs, stop.clone());
        let advancer = workflows::advance(
            &conn,
            workflows::AdvanceParts {
                topo: topo.clone(),
                node: cfg.node.clone(),
                key: cfg.hmac_key.clone(),
                registry: registry.clone(),
                owned,
                horizon: cfg.scheduler.workflow_horizon,
                occurrences,
                alert_interval: cfg.scheduler.alert_interval,
                job_metrics: cfg.scheduler.job_metrics,
                alert_routes: cfg.alert_routes.clone(),
                alert_senders: cfg.alert_senders.clone(),
                dashboard: cfg.dashboard.clone(),
            },
            stop.clone(),
        );
        let history = async {
            match &cfg.history {
                Some(index) => {
                    crate::ingest::ingest(
                        &conn,
                        &topo,
                        &sundial_amqp::history::stream_identity(&cfg.broker, &topo),
                        index.clone(),
                        Some(registry.clone().recipient()),
                        stop.clone(),
                    )
                    .await
                }
                None => {
                    stop.cancelled().await;
                    Ok(())
                }
            }
        };
        let leases = leases::run(
            leases::LeaseParts {
                lease_conn: &lease_conn,
                conn: &conn,
                registry: registry.clone(),
                common,
                arbiters: &arbiters,
                settings: cfg.scheduler,
                supervisor: cfg.supervisor,
                alive_since,
                health: cfg.health.clone(),
                broker,
            },
            stop.clone(),
        );
        let opener = shard::serve_channels(&conn, open_rx, stop.clone());
        tokio::pin!(opener);
        tokio::pin!(control);
        tokio::pin!(tracker);
        tokio::pin!(advancer);
        tokio::pin!(history);
        tokio::pin!(leases);
        tokio::select! {
            r = &mut control => r,
            r = &mut tracker => r.and(Err(Error::TaskStopped("run tracker"))),
            r = &mut advancer => r.and(Err(Error::TaskStopped("workflow advancer"))),
            r = &mut history => r.and(Err(Error::TaskStopped("history index"))),
            r = &mut leases => r.and(Err(Error::TaskStopped("lease task"))),
            () = &mut opener => Err(Error::TaskStopped("channel opener")),
            () = shutdown.cancelled() => {
                // Leases hand every shard back: final watermarks, then the
                // lease queues go, and peers hear of it at once. Bounded: a
                // node busy with millions of jobs closes its connections
                // after HANDOVER_WAIT, and peers take what is left when its
                // heartbeats stop (as after a crash: fires since the last
                // watermark may be sent again, with the same fire ids).
                stop.cancel();
                let all = async {
                    let (c, t, a, h, l) = tokio::join!(control, tracker, advancer, history, leases);
                    c.and(t).and(a).and(h).and(l)
                };
                match tokio::time::timeout(HANDOVER_WAIT, all).await {
                    Ok(r) => r,
                    Err(_) => {
                        warn!(node = %cfg.node, waited_s = HANDOVER_WAIT.as_secs(), "shards not all handed over in time; stopping anyway (peers take the rest when the heartbeats stop)");
                        Ok(())
                    }
                }
            }
            () = lost.cancelled() => Err(Error::connection_lost("connection closed")),
            () = lease_lost.cancelled() => Err(Error::connection_lost("lease connection closed")),
            () = registry_failed.cancelled() => Err(Error::stream_ended("registry stream")),
        }
    };

    // Close the connections (and every channel, in order) before the actors
    // that own channels go away: a channel dropped mid-close makes lapin
    // report a connection error. The lease connection first: after a failure
    // any shard still held must be free for a peer at once.
    let bye = Duration::from_secs(5);
    let _ = tokio::time::timeout(bye, lease_conn.close(200, "scheduler stopping".into())).await;
    let _ = tokio::time::timeout(bye, conn.close(200, "scheduler stopping".into())).await;
    cfg.reads.set(None);
    registry.do_send(StopRegistry);
    registry_thread.stop();
    for a in &arbiters {
        a.stop();
    }
    result
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopRegistry;

impl Handler<StopRegistry> for Registry {
    type Result = ();
    fn handle(&mut self, _: StopRegistry, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
