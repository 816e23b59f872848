//! Metric names, in one place (Prometheus conventions: base units, `_total`
//! for counters). Recorded through the `metrics` facade; they cost nothing
//! until a process installs an exporter (the operations issue adds
//! `/metrics`).

/// Fires confirmed by the broker, by pool.
pub const FIRES_TOTAL: &str = "sundial_fires_total";
/// Fire publishes that were nacked, returned or failed and will be retried.
pub const FIRE_RETRIES_TOTAL: &str = "sundial_fire_retries_total";
/// Timer precision: handed to the broker − planned send time, seconds.
pub const FIRE_PRECISION_SECONDS: &str = "sundial_fire_precision_seconds";
/// Confirmed lateness: confirmed − scheduled, seconds.
pub const FIRE_LATENESS_SECONDS: &str = "sundial_fire_lateness_seconds";
/// Missed occurrences not fired, by misfire policy.
pub const MISFIRES_TOTAL: &str = "sundial_misfires_total";
/// Jobs in the registry view.
pub const REGISTRY_JOBS: &str = "sundial_registry_jobs";
/// Control commands, by command and outcome (`ok`, `error`).
pub const CONTROL_COMMANDS_TOTAL: &str = "sundial_control_commands_total";
