//! `sundial worker`: consumes a pool's fires until SIGTERM or Ctrl-C, then
//! drains within `worker.shutdown_deadline` and exits 0.

use sundial_core::settings::{Role, Settings};
use sundial_worker::{Worker, WorkerConfig};

use super::CommandError;
use crate::cli::WorkerArgs;
use crate::dlq_watch::{DlqWatchConfig, DlqWatcher};

pub fn run(mut settings: Settings, args: &WorkerArgs) -> Result<(), CommandError> {
    // --pool and --concurrency arrive through the settings (validated there).
    if !settings.topology.pools.contains(&settings.worker.pool) {
        // The pool's queues are declared from topology.pools.
        settings.topology.pools.push(settings.worker.pool.clone());
    }
    let id = match &args.id {
        Some(id) => id.clone(),
        // A host name may hold what a worker id may not: kept to the rule.
        None => super::scheduler::default_node_name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect(),
    };
    sundial_core::job::check_worker_id("--id", &id)
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    let cfg = WorkerConfig::from_settings(&settings, id);
    let watch = watch_config(&settings, vec![settings.worker.pool.clone()]);
    // An actix System hosts the DlqWatcher actor; the worker itself is tasks.
    let system = super::actix_system()?;
    system.block_on(async move {
        let shutdown =
            super::ops::start_service(&settings, Role::Worker, cfg.health.clone(), None).await?;
        let watcher = DlqWatcher::new(watch)?.spawn();
        let result = Worker::builder(cfg)
            .build()
            .run(shutdown)
            .await
            .map_err(CommandError::from);
        watcher.stop().await;
        result
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
