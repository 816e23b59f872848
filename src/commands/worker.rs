//! `sundial worker`: consumes a pool's fires until SIGTERM or Ctrl-C, then
//! drains within `worker.shutdown_deadline` and exits 0.

use sundial_actors::worker::{Worker, WorkerConfig};
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(format!("cannot start the tokio runtime: {e}")))?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        Worker::builder(cfg).build().run(shutdown).await
    })
    .map_err(|e| CommandError::Failed(e.to_string()))
}
