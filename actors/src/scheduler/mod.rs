//! The scheduler: replays the registry, starts one `TimerShard` per shard
//! (all of them, on one node; leases come with the failover issue), a
//! `Registry` actor, and the control consumer.
//!
//! ```text
//! run (reconnects with backoff: the root of a rest-for-one restart)
//!  └─ run_once: connection
//!      ├─ topology apply (idempotent)
//!      ├─ replay sundial.registry → RegistryView
//!      ├─ TimerShard × S   (watermark read; misfires over (watermark, now])
//!      ├─ Registry         (commands → stream append → view → shards)
//!      └─ control consumer (sundial.control → Registry → reply / dead letter)
//! ```

mod control;
mod registry;
mod runs;
mod startup;
mod timer;

use std::{collections::HashMap, sync::Arc, time::Duration};

use actix::prelude::*;
use chrono::Utc;
use sundial_core::{registry::JobEntry, topology::Topology};
use tokio_util::sync::CancellationToken;
use tracing::info;

use self::{registry::Registry, timer::TimerShard};
use crate::error::Error;

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
    pub health: Arc<crate::http::Health>,
    /// `control.hmac_key`: commands must be signed with it, fire events are
    /// signed with it.
    pub hmac_key: Option<Arc<[u8]>>,
    /// Restart intensity of the supervision loop.
    pub supervisor: sundial_core::settings::SupervisorSettings,
}

impl SchedulerConfig {
    /// The configuration the settings describe, for node `node`.
    pub fn from_settings(s: &sundial_core::settings::Settings, node: String) -> Self {
        Self {
            broker: s.broker.clone(),
            topology: s.topology.clone(),
            node,
            registry: s.registry,
            health: crate::http::Health::new(),
            hmac_key: s.control.hmac_key.as_deref().map(Arc::from),
            supervisor: s.supervisor,
        }
    }
}

/// This component's name in `/readyz`.
const HEALTH_PART: &str = "scheduler";

/// Runs until `shutdown` is cancelled. Losing the broker restarts everything
/// that uses the connection, after a backoff; the registry and watermarks
/// are read again, so nothing accepted or fired is forgotten.
///
/// Must run inside an actix `System` on a multi-thread tokio runtime.
pub async fn run(cfg: SchedulerConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let alive_since = Utc::now();
    let mut supervisor = crate::supervise::Supervisor::new("scheduler", cfg.supervisor);
    cfg.health
        .set(HEALTH_PART, Some("connecting to the broker".into()));
    loop {
        match run_once(&cfg, &shutdown, alive_since).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                cfg.health.set(
                    HEALTH_PART,
                    Some(format!("broker link lost ({e}); reconnecting")),
                );
                metrics::gauge!(crate::metrics::SHARDS_OWNED).set(0.0);
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
) -> Result<(), Error> {
    let topo = Arc::new(cfg.topology.clone());
    let conn =
        crate::broker::connect_to(&cfg.broker, &format!("sundial scheduler {}", cfg.node)).await?;
    let lost = crate::broker::on_connection_error(&conn);
    crate::topology::apply_if_permitted(&conn, &topo.declarations()).await?;
    let replayed = startup::replay_registry(&conn, &topo, &cfg.node).await?;

    let now = Utc::now();
    let mut by_shard: HashMap<u32, Vec<Arc<JobEntry>>> = HashMap::new();
    for j in replayed.view.iter() {
        by_shard
            .entry(topo.shard_of(&j.spec.id))
            .or_default()
            .push(Arc::new(j.clone()));
    }
    // Shards are spread over a few threads (actix arbiters) so that one
    // second's burst of fires is encoded and published on every core.
    let runs = Arc::new(runs::RunningJobs::default());
    let common = timer::ShardCommon {
        node: cfg.node.clone(),
        topo: topo.clone(),
        runs: runs.clone(),
        key: cfg.hmac_key.clone(),
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let mut shards = Vec::with_capacity(topo.shards as usize);
    for shard in 0..topo.shards {
        let wm = startup::read_watermark(&conn, &topo, shard).await?;
        let floor = startup::misfire_floor(wm.as_ref(), now);
        let epoch = wm.as_ref().map_or(1, |w| w.epoch + 1);
        let ch = crate::broker::confirming_channel(&conn).await?;
        let actor = TimerShard::new(shard, epoch, ch, floor, &common);
        let arbiter = &arbiters[shard as usize % threads];
        let addr = TimerShard::start_in_arbiter(&arbiter.handle(), move |_| actor);
        addr.do_send(timer::Load {
            jobs: by_shard.remove(&shard).unwrap_or_default(),
            alive_since,
        });
        shards.push(addr);
    }
    let reg_ch = crate::broker::confirming_channel(&conn).await?;
    let jobs = replayed.view.len();
    let registry = Registry::new(
        replayed,
        reg_ch,
        topo.clone(),
        shards.clone(),
        cfg.registry,
        cfg.node.clone(),
    )
    .start();
    info!(node = %cfg.node, shards = topo.shards, jobs, "scheduler running");
    metrics::gauge!(crate::metrics::SHARDS_OWNED).set(f64::from(topo.shards));
    cfg.health.set(HEALTH_PART, None);

    // The control consumer stops on shutdown or on connection loss.
    let stop_control = CancellationToken::new();
    let result = {
        let control = control::run(
            &conn,
            &topo,
            &cfg.node,
            registry.clone(),
            cfg.hmac_key.clone(),
            stop_control.clone(),
        );
        let tracker = runs::track(&conn, &topo, runs, stop_control.clone());
        tokio::pin!(control);
        tokio::pin!(tracker);
        tokio::select! {
            r = &mut control => r,
            r = &mut tracker => r.and(Err(Error::ConnectionLost("run tracker stopped".into()))),
            () = shutdown.cancelled() => {
                stop_control.cancel();
                let (c, t) = tokio::join!(control, tracker);
                c.and(t)
            }
            () = lost.cancelled() => Err(Error::ConnectionLost("connection closed".into())),
        }
    };

    // Final watermarks (best effort when the connection is gone), then stop.
    for s in &shards {
        let _ = tokio::time::timeout(Duration::from_secs(5), s.send(timer::Flush)).await;
    }
    // Close the connection (and every channel, in order) before the actors
    // that own channels go away: a channel dropped mid-close makes lapin
    // report a connection error.
    let _ = conn.close(200, "scheduler stopping".into()).await;
    registry.do_send(StopRegistry);
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
