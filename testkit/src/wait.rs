//! Waits with a bound that fail the test loudly: a future, a condition a
//! `Notify` signals, a polled condition.

use std::time::Duration;

use crate::BROKER_TIMEOUT;

/// Runs `fut` with [`BROKER_TIMEOUT`], failing the test loudly on expiry.
pub async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BROKER_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BROKER_TIMEOUT:?}"))
}

/// Waits until `ready()` holds, checking again each time `changed` is
/// notified (`notify_waiters` by whoever changes the state), at most
/// `within`; returns whether it held. The caller fails loudly with what it
/// knows.
pub async fn wait_until(
    within: Duration,
    changed: &tokio::sync::Notify,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // Registered before the check, so a change between the two wakes it.
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if ready() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ready();
        }
    }
}

/// Polls `probe` every 100 ms until it gives a value (at most `within`);
/// fails the test naming `what` and the last thing `last` says otherwise.
pub fn poll_until<T>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
    last: impl Fn() -> String,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}; last: {}",
            last()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
