//! Alerts as the history stream carries them (in a run batch's `alerts`,
//! ADR 0021); `crate::alert` decides them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fire_id::FireId;

/// What an alert says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AlertKind {
    /// The occurrence ended dead (after its retries).
    Failed,
    /// Not succeeded by `scheduled + sla`.
    Late,
    /// Never fired: no record by `scheduled + misfire.grace`, or skipped
    /// (collapsed) by the misfire policy after an outage.
    Missed,
    /// A later occurrence succeeded after the job's open alerts.
    Resolved,
}

impl AlertKind {
    pub const ALL: [AlertKind; 4] = [
        AlertKind::Failed,
        AlertKind::Late,
        AlertKind::Missed,
        AlertKind::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Failed => "failed",
            AlertKind::Late => "late",
            AlertKind::Missed => "missed",
            AlertKind::Resolved => "resolved",
        }
    }

    /// The kind an alert id starts with.
    pub fn of_id(id: &str) -> Option<(AlertKind, &str)> {
        let (kind, fire_id) = id.split_once(':')?;
        let kind = Self::ALL.into_iter().find(|k| k.as_str() == kind)?;
        Some((kind, fire_id))
    }
}

/// One alert: `id` is `{kind}:{fire_id}`, the same on every scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    pub id: String,
    pub kind: AlertKind,
    pub job_id: String,
    /// The occurrence it is about (for `resolved`: the one that succeeded).
    pub fire_id: String,
    pub scheduled: DateTime<Utc>,
    /// Why, for a person (`dead: /bin/sh exited with 3`, `not succeeded
    /// 20m after 03:00:00Z`).
    pub reason: String,
    /// For `resolved`: the ids of the alerts it resolves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolves: Vec<String>,
}

impl Alert {
    pub(crate) fn new(
        kind: AlertKind,
        job_id: &str,
        scheduled: DateTime<Utc>,
        reason: String,
    ) -> Self {
        let fire_id = FireId::new(job_id, scheduled).to_string();
        Self {
            id: format!("{}:{fire_id}", kind.as_str()),
            kind,
            job_id: job_id.to_string(),
            fire_id,
            scheduled,
            reason,
            resolves: Vec::new(),
        }
    }
}

/// An alert as the history stream keeps it: raised `at` by `node` (the
/// owner of the job's shard then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Raised {
    pub alert: Alert,
    pub at: DateTime<Utc>,
    pub node: String,
}

/// An alert as lists show it (`sundial alerts`, `GET /api/v1/alerts`):
/// the `resolved` alert that closed it, if any, and what each route that
/// took it did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertRow {
    pub alert: Alert,
    /// When it was raised, and by which scheduler.
    pub at: DateTime<Utc>,
    pub node: String,
    pub resolved_by: Option<String>,
    pub deliveries: Vec<Delivered>,
}

impl AlertRow {
    /// `raised` with what else is known of it.
    pub fn new(raised: Raised, resolved_by: Option<String>, deliveries: Vec<Delivered>) -> Self {
        Self {
            alert: raised.alert,
            at: raised.at,
            node: raised.node,
            resolved_by,
            deliveries,
        }
    }

    /// Not a `resolved` and not closed by one.
    pub fn open(&self) -> bool {
        self.alert.kind != AlertKind::Resolved && self.resolved_by.is_none()
    }
}

/// Which alerts a list asks for: raised since `since`, of `job` (exact
/// id) when given, open ones only when `open`, newest first, at most
/// `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertQuery {
    pub since: DateTime<Utc>,
    pub job: Option<String>,
    pub open: bool,
    pub limit: usize,
}

/// What became of an alert on a route, recorded in the history stream
/// (a batch's `deliveries`) by the node that sent it, so a new owner of
/// the job's shard sends only what was not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivered {
    /// The alert's id.
    pub alert: String,
    pub route: String,
    pub outcome: DeliveryOutcome,
    pub at: DateTime<Utc>,
    pub node: String,
    /// Why it gave up (the last error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Sent,
    /// The same job and kind went out within the route's dedupe window.
    Deduped,
    /// The route's hourly cap was reached.
    Capped,
    /// Every try failed.
    GaveUp,
}

impl DeliveryOutcome {
    pub const ALL: [DeliveryOutcome; 4] = [
        DeliveryOutcome::Sent,
        DeliveryOutcome::Deduped,
        DeliveryOutcome::Capped,
        DeliveryOutcome::GaveUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Sent => "sent",
            DeliveryOutcome::Deduped => "deduped",
            DeliveryOutcome::Capped => "capped",
            DeliveryOutcome::GaveUp => "gave-up",
        }
    }
}
