//! Metric names, in one place (Prometheus conventions: base units, `_total`
//! for counters). Recorded through the `metrics` facade; they cost nothing
//! until a process installs an exporter (the operations issue adds
//! `/metrics`).

/// Fires confirmed by the broker, by pool.
pub const FIRES_TOTAL: &str = "sundial_fires_total";
/// Fire publishes that were nacked, returned or failed and will be retried.
pub const FIRE_RETRIES_TOTAL: &str = "sundial_fire_retries_total";
/// Fresh channels a timer shard opened after a nacked fire.
pub const FIRE_CHANNEL_RENEWALS_TOTAL: &str = "sundial_fire_channel_renewals_total";
/// Fires set aside after staying unroutable (no queue bound for their
/// pool and shard): dead-lettered with the reason instead of holding the
/// shard's watermark back.
pub const UNROUTABLE_FIRES_TOTAL: &str = "sundial_unroutable_fires_total";
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
/// Attempts finished, by pool and outcome (`succeeded`, `retrying`, `dead`,
/// `undecodable`).
pub const RUNS_TOTAL: &str = "sundial_runs_total";
/// How long attempts ran, seconds.
pub const RUN_DURATION_SECONDS: &str = "sundial_run_duration_seconds";
/// Scheduled time → attempt start, seconds (fire-to-start latency).
pub const RUN_START_LATENESS_SECONDS: &str = "sundial_run_start_lateness_seconds";
/// Fire ids a worker saw again within its window and dropped.
pub const DUPLICATE_FIRES_TOTAL: &str = "sundial_duplicate_fires_total";
/// Messages in each pool's dead-letter queue (DlqWatcher).
pub const DEAD_LETTERS: &str = "sundial_dead_letters";
/// Scheduled fires skipped because the job's previous run was still
/// running (`overlap = "forbid"`).
pub const OVERLAP_SKIPS_TOTAL: &str = "sundial_overlap_skips_total";
/// Timer shards this scheduler owns (all of them on one node until leases).
pub const SHARDS_OWNED: &str = "sundial_shards_owned";
/// Restarts after a failure, by actor (`scheduler`, `worker`).
pub const RESTARTS_TOTAL: &str = "sundial_restarts_total";
/// Run records published to the history stream, by pool.
pub const HISTORY_RECORDS_TOTAL: &str = "sundial_history_records_total";
/// History messages published (each a batch of run records).
pub const HISTORY_BATCHES_TOTAL: &str = "sundial_history_batches_total";
/// Run records written to this process's history index.
pub const HISTORY_INDEXED_TOTAL: &str = "sundial_history_indexed_total";
/// History stream messages the index could not read and skipped.
pub const HISTORY_SKIPPED_TOTAL: &str = "sundial_history_skipped_total";
/// Stream offset the history index has reached.
pub const HISTORY_OFFSET: &str = "sundial_history_offset";
/// Alerts raised by this scheduler (as owner of their job's shard), by
/// kind (`failed`, `late`, `missed`, `resolved`).
pub const ALERTS: &str = "sundial_alerts_total";
/// When this scheduler last judged its jobs' occurrences for alerts (Unix
/// seconds): the dead man's switch watches that it moves.
pub const LAST_ALERT_CHECK: &str = "sundial_last_alert_check_timestamp_seconds";
/// When this scheduler last had a fire confirmed (Unix seconds).
pub const LAST_FIRE: &str = "sundial_last_fire_timestamp_seconds";
/// Alert deliveries by route and outcome (`sent`, `deduped`, `capped`,
/// `gave-up`): a route that keeps giving up is failing.
pub const ALERT_DELIVERIES: &str = "sundial_alert_deliveries_total";
/// Scheduled occurrences per job and how they ended or stand
/// (`succeeded`, `dead`, `skipped`, `late`, `missed`), counted by the owner
/// of the job's shard (`scheduler.job_metrics`; at most five series per job).
pub const OCCURRENCES: &str = "sundial_occurrences_total";
/// Deliveries in a row that gave up, per route (0: its last one went out).
pub const ALERT_ROUTE_FAILING: &str = "sundial_alert_route_failing";
