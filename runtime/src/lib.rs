//! `sundial-runtime`: what every Sundial process runs on, without I/O of
//! its own: supervision (restart intensity, backoff, one-for-one), the
//! readiness state `/readyz` reports, rate-limited logging and the metric
//! names. Every other crate but `sundial-core` may depend on it; it depends
//! on `sundial-core` only (ADR 0019).
//!
//! # Layout
//!
//! | module          | responsibility |
//! |-----------------|----------------|
//! | [`supervise`]   | `Supervisor` (the root of a rest-for-one restart: backoff, intensity), `OneForOne` and `Obituary` (children restarted alone); the supervision matrix tests |
//! | [`health`]      | `Health`: readiness by component, what `/readyz` answers |
//! | [`ratelimit`]   | `Every`: one log line per repeated condition per interval |
//! | [`metrics`]     | metric names (recorded through the `metrics` facade) |
//! | [`panic`]       | `panic_text`: the message of a caught panic |
//! | `http_client`   | `http_client::builder` (feature `http-client`): the one reqwest client builder |

pub mod health;
#[cfg(feature = "http-client")]
pub mod http_client;
pub mod metrics;
pub mod panic;
pub mod ratelimit;
pub mod supervise;

pub use health::Health;

/// A supervision loop restarted more often than its intensity allows: the
/// caller escalates (at the root: the process exits non-zero).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {restarts} restarts within {within}, giving up (last error: {last})")]
#[non_exhaustive]
pub struct GaveUp {
    pub what: &'static str,
    pub restarts: usize,
    pub within: sundial_core::HumanDuration,
    pub last: String,
}
