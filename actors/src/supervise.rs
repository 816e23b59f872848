//! The restart decision shared by the scheduler's and the worker's
//! supervision loops (the root of their rest-for-one restarts: everything
//! that uses the connection restarts together). Restarts back off
//! exponentially with jitter; past the restart intensity the loop gives up
//! and the process exits non-zero, for systemd or Kubernetes to restart it.

use std::time::Instant;

use sundial_core::{restart::Intensity, settings::SupervisorSettings, HumanDuration};
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::error::Error;

/// Restart state of one supervision loop.
pub(crate) struct Supervisor {
    what: &'static str,
    limits: SupervisorSettings,
    intensity: Intensity,
}

impl Supervisor {
    pub(crate) fn new(what: &'static str, limits: SupervisorSettings) -> Self {
        Self {
            what,
            limits,
            intensity: Intensity::new(limits.max_restarts, limits.within),
        }
    }

    /// After a failure: waits the backoff (cut short by `shutdown`) and
    /// returns `Ok(())` to restart, or `Err` when the intensity is exceeded.
    pub(crate) async fn restart(
        &mut self,
        failure: Error,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        metrics::counter!(crate::metrics::RESTARTS_TOTAL, "actor" => self.what).increment(1);
        if !self.intensity.restart(Instant::now()) {
            let within = HumanDuration(self.limits.within);
            error!(actor = self.what, restarts = self.intensity.count(), %within, error = %failure,
                "restart intensity exceeded; exiting so the service manager restarts the process");
            return Err(Error::GaveUp {
                what: self.what,
                restarts: self.intensity.count(),
                within,
                last: failure.to_string(),
            });
        }
        let seed = u64::from(std::process::id()) ^ self.intensity.count() as u64;
        let delay = Intensity::backoff(self.intensity.count(), seed);
        error!(actor = self.what, error = %failure, retry_in_ms = delay.as_millis() as u64,
            restarts = self.intensity.count(), "lost the broker; restarting");
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
        Ok(())
    }
}
