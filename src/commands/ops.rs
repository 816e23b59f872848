//! What every long-running command serves: `/metrics`, `/healthz`,
//! `/readyz` on `http.listen` (off with `http.enabled = false`).

use std::sync::Arc;

use sundial_actors::http::{install_recorder, serve, Health};
use sundial_core::settings::Settings;
use tokio_util::sync::CancellationToken;

use super::CommandError;

/// Installs the metrics recorder and starts the endpoint, if enabled. Fails
/// (so the process exits with a clear message) when the address is taken.
pub(crate) async fn start_http(
    settings: &Settings,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<(), CommandError> {
    if !settings.http.enabled {
        return Ok(());
    }
    let metrics = install_recorder().map_err(|e| CommandError::Failed(e.to_string()))?;
    serve(settings.http.listen, metrics, health, shutdown)
        .await
        .map(|_| ())
        .map_err(|e| CommandError::Failed(e.to_string()))
}
