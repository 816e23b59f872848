//! `sundial worker`: consumes a pool's fires until SIGTERM or Ctrl-C, then
//! drains within `worker.shutdown_deadline` and exits 0.

use actix::Actor;
use sundial_actors::{
    dlq_watcher::{DlqWatchConfig, DlqWatcher},
    worker::{Worker, WorkerConfig},
};
use sundial_core::settings::Settings;
use tokio_util::sync::CancellationToken;

use super::{scheduler::cancel_on_signal, CommandError};
use crate::cli::WorkerArgs;

pub fn run(mut settings: Settings, args: &WorkerArgs) -> Result<(), CommandError> {
    if let Some(pool) = &args.pool {
        settings.worker.pool = pool.clone();
    }
    if let Some(c) = args.concurrency {
        settings.worker.concurrency = u16::try_from(c)
            .ok()
            .filter(|c| (1..=10_000).contains(c))
            .ok_or_else(|| {
                CommandError::Usage(format!("--concurrency must be 1..=10000, got {c}"))
            })?;
    }
    if !settings.topology.pools.contains(&settings.worker.pool) {
        // The pool's queues are declared from topology.pools.
        settings.topology.pools.push(settings.worker.pool.clone());
    }
    let id = args
        .id
        .clone()
        .unwrap_or_else(super::scheduler::default_node_name);
    let cfg = WorkerConfig::from_settings(&settings, id);
    let watch = watch_config(&settings, vec![settings.worker.pool.clone()]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(format!("cannot start the tokio runtime: {e}")))?;
    // An actix System hosts the DlqWatcher actor; the worker itself is tasks.
    let system = actix::System::with_tokio_rt(move || rt);
    system.block_on(async move {
        let _watcher = DlqWatcher::new(watch)
            .map_err(|e| CommandError::Failed(e.to_string()))?
            .start();
        let shutdown = CancellationToken::new();
        super::ops::start_http(&settings, cfg.health.clone(), shutdown.clone()).await?;
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        Worker::builder(cfg)
            .build()
            .run(shutdown)
            .await
            .map_err(|e| CommandError::Failed(e.to_string()))
    })
}

/// The DlqWatcher's settings for `pools`.
pub(crate) fn watch_config(settings: &Settings, pools: Vec<String>) -> DlqWatchConfig {
    DlqWatchConfig {
        broker: settings.broker.clone(),
        topology: settings.topology.clone(),
        pools,
        interval: settings.worker.dlq_check_interval,
        webhook: settings.worker.dlq_webhook.clone(),
    }
}
