//! `sundial scheduler`: runs the scheduler until SIGTERM or Ctrl-C.

use std::sync::Arc;

use sundial_core::settings::{Role, Settings};
use sundial_scheduler::{self as scheduler, SchedulerConfig};
use sundial_web::api::{Api, ApiConfig};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::CommandError;

/// A node name that is unique enough without configuration: host and pid.
pub fn default_node_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}", std::process::id())
}

/// Runs the scheduler on an actix system over a multi-thread tokio runtime
/// (on actix's default current-thread runtime lapin's I/O is starved).
pub fn run(settings: &Settings, node: Option<String>) -> Result<(), CommandError> {
    let mut cfg = SchedulerConfig::from_settings(settings, node.unwrap_or_else(default_node_name));
    cfg.alert_senders = crate::wiring::alert_senders(&cfg.alert_routes);
    let settings = settings.clone();
    let system = super::actix_system()?;
    system.block_on(async move {
        cfg.history = sundial_store::open(&settings.history, &cfg.health);
        let api = Api::new(ApiConfig::from_settings(
            &settings,
            &cfg.node,
            cfg.history.clone(),
        ));
        api.set_registry(Some(Arc::new(crate::wiring::SchedulerJobs(
            cfg.reads.clone(),
        ))));
        let shutdown =
            super::ops::start_service(&settings, Role::Scheduler, cfg.health.clone(), Some(api))
                .await?;
        scheduler::run(cfg, shutdown)
            .await
            .map_err(CommandError::from)
    })
}

/// Cancels `token` on SIGTERM or SIGINT.
pub(crate) async fn cancel_on_signal(token: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    info!("shutdown requested");
    token.cancel();
}
