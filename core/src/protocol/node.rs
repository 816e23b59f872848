//! Scheduler heartbeats on the nodes exchange (fanout): how schedulers learn
//! of each other and `sundial status` learns who owns what; worker
//! heartbeats on the workers exchange (fanout): which workers run where.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Format, Message};

/// Readers ignore fields they do not know (a newer node may add some: a
/// rolling upgrade must not make peers look gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node's name (`--node`, default hostname-pid).
    pub node: String,
    /// When this process started (tells a restarted node from its
    /// predecessor of the same name).
    pub started_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
    /// Timer shards this node holds leases on.
    pub owned: Vec<u32>,
    /// The topology's shard count as this node sees it.
    pub shards: u32,
    /// Pools its jobs use (for `status`).
    #[serde(default)]
    pub pools: Vec<String>,
    /// Last heartbeat of a node stopping gracefully.
    #[serde(default)]
    pub leaving: bool,
    /// Sundial version.
    pub version: String,
    /// Fires this node set aside since it started because they stayed
    /// unroutable (dead-lettered with the reason).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unroutable: u64,
    /// The last of them: `"{fire_id} (pool {pool}): {reason}"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unroutable_last: Option<String>,
    /// The broker address its connection went to (one of `broker.urls`,
    /// password masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// The alert routes this node delivered on since it started, and how
    /// the deliveries went (`sundial status` shows a failing route).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_routes: Vec<RouteHealth>,
}

/// How one alert route's deliveries from one node went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteHealth {
    pub route: String,
    /// Deliveries that went out / gave up (after their tries).
    pub sent: u64,
    pub gave_up: u64,
    /// Deliveries in a row that gave up, up to the last one (0: it went out).
    pub failing: u64,
    /// When the last delivery ended.
    pub last_at: DateTime<Utc>,
    /// The last give-up's error (at most [`RouteHealth::ERROR_MAX`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl RouteHealth {
    /// The longest error text a heartbeat carries.
    pub const ERROR_MAX: usize = 300;
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Message for Heartbeat {
    const KIND: &'static str = "sundial.heartbeat";
    const PRIMARY: Format = Format::Json;
    const FORMATS: &'static [Format] = &[Format::Json];
    const MAX_SIZE: usize = 64 * 1024;
}

/// A worker's heartbeat on `sundial.workers` (fanout), every
/// `scheduler.heartbeat_interval`: which workers are up, on which pool and
/// which broker node. Nothing depends on it but `sundial status` (a worker
/// needs no coordination); a separate exchange, so schedulers never mistake
/// a worker for a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerBeat {
    /// The worker's id (`--id`, default hostname-pid).
    pub worker: String,
    pub pool: String,
    pub started_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
    /// Attempts running now, and at most (`worker.concurrency`).
    pub running: u32,
    pub concurrency: u32,
    /// The broker address its connection went to (password masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// Last heartbeat of a worker stopping gracefully.
    #[serde(default)]
    pub leaving: bool,
    pub version: String,
}

impl Message for WorkerBeat {
    const KIND: &'static str = "sundial.worker-heartbeat";
    const PRIMARY: Format = Format::Json;
    const FORMATS: &'static [Format] = &[Format::Json];
    const MAX_SIZE: usize = 64 * 1024;
}
