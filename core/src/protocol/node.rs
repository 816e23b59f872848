//! Scheduler heartbeats on the nodes exchange (fanout): how schedulers learn
//! of each other and `sundial status` learns who owns what.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Format, Message};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

impl Message for Heartbeat {
    const KIND: &'static str = "sundial.heartbeat";
    const PRIMARY: Format = Format::Json;
    const FORMATS: &'static [Format] = &[Format::Json];
    const MAX_SIZE: usize = 64 * 1024;
}
