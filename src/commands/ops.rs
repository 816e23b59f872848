//! What every long-running command serves: `/metrics`, `/healthz`,
//! `/readyz` on `http.listen` (off with `http.enabled = false`).

use std::sync::Arc;

use sundial_core::settings::{default_listen_ports, Role, Settings};
use sundial_runtime::Health;
use sundial_web::{
    api::Api,
    ops::{install_recorder, serve, Listen},
};
use tokio_util::sync::CancellationToken;

use super::CommandError;

/// What a service does first: a shutdown token cancelled by SIGTERM or
/// SIGINT (so a stop during start-up exits 0), then the endpoint (a taken
/// address is the most likely early exit, and nothing else has started).
pub(crate) async fn start_service(
    settings: &Settings,
    role: Role,
    health: Arc<Health>,
    api: Option<Arc<Api>>,
) -> Result<CancellationToken, CommandError> {
    let shutdown = CancellationToken::new();
    tokio::spawn(super::scheduler::cancel_on_signal(shutdown.clone()));
    start_http(settings, role, health, api, shutdown.clone()).await?;
    Ok(shutdown)
}

/// Installs the metrics recorder and starts the endpoint, if enabled: on
/// `http.listen` when it is set (fails, so the process exits with a clear
/// message, when that address is taken), else on the first free port of
/// `role`'s range.
pub(crate) async fn start_http(
    settings: &Settings,
    role: Role,
    health: Arc<Health>,
    api: Option<Arc<Api>>,
    shutdown: CancellationToken,
) -> Result<(), CommandError> {
    if !settings.http.enabled {
        return Ok(());
    }
    let metrics = install_recorder()?;
    let listen = match settings.http.listen {
        Some(addr) => Listen::Exactly(addr),
        None => Listen::FirstFree(default_listen_ports(role)),
    };
    serve(listen, metrics, health, api, shutdown)
        .await
        .map(|_| ())
        .map_err(CommandError::from)
}
