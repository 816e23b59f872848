//! Alerts on occurrences (issue 25): which of a job's due occurrences
//! failed, are late, were missed, and when a later one resolves them —
//! decided without I/O from the job, what the history says of each
//! occurrence, the alerts already raised and the time. The scheduler that
//! owns the job's shard calls [`check`]; a new owner after a takeover
//! rebuilds the same inputs from the history and raises nothing twice,
//! because an alert's id is deterministic: `{kind}:{fire_id}`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

pub use crate::protocol::alert::{
    Alert, AlertKind, AlertQuery, AlertRow, Delivered, DeliveryOutcome, Raised,
};
use crate::{fire_id::FireId, ledger::due, registry::Fired};

/// What the history says of one scheduled occurrence (its own fire id's
/// records; for a workflow, the occurrence's own records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Fired (`fired`) or started (`started`): it was not missed.
    pub fired: bool,
    /// When it succeeded (its first success).
    pub succeeded: Option<DateTime<Utc>>,
    /// It ended dead, with the reason.
    pub dead: Option<String>,
    /// Skipped by the scheduler, with the reason and whether it counts as
    /// missed (a misfire collapse or skip after an outage: yes; an overlap
    /// `forbid` skip, the user's choice: no).
    pub skipped: Option<(String, bool)>,
}

/// What [`Watch::check`] judges one job by: its entry (with its last
/// pause, which [`due`] leaves out), its `sla` (none: no `late`; the job's
/// `sla` field), what the history says of each of its scheduled
/// occurrences, and the alert ids raised before (by this node or another).
#[derive(Debug, Clone, Copy)]
pub struct Watch<'a> {
    pub job: &'a Fired,
    pub sla: Option<Duration>,
    pub seen: &'a BTreeMap<DateTime<Utc>, Seen>,
    pub raised: &'a BTreeSet<String>,
}

impl Watch<'_> {
    /// The alerts to raise now, oldest first: for each occurrence due in
    /// `(from, now]` ([`due`]: not before the job existed, not while paused,
    /// not after its `end_at`, not within its last pause) by what
    /// `seen` says of it, leaving out the ids in `raised`. Then a
    /// `resolved` when an occurrence succeeded after the latest occurrence
    /// with an open alert (one raised and not yet resolved).
    ///
    /// - `failed` when it ended dead;
    /// - `missed` when the misfire policy skipped it after an outage, or
    ///   when nothing was recorded of it by `scheduled + misfire.grace`
    ///   (the scheduler could still have fired it late until then);
    /// - `late` when there is an `sla` and it had not succeeded by
    ///   `scheduled + sla` (neither dead nor skipped: those say more).
    pub fn check(&self, from: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Alert> {
        self.judge(&[(from, now)], now)
    }

    /// As [`Watch::check`], judging at `now` only the occurrences in the
    /// `windows` `(from, until]` (in order, not overlapping): a job whose
    /// history has not changed since the last check needs only those whose
    /// deadline passed since (`late` and `missed` are the only judgements
    /// that change with time alone).
    pub fn judge(
        &self,
        windows: &[(DateTime<Utc>, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Vec<Alert> {
        let job = self.job;
        let id = job.id();
        let grace = Duration::from_std(job.misfire().grace.get()).unwrap_or(Duration::MAX);
        let none = Seen::default();
        let mut out = Vec::new();
        let occurrences = windows.iter().flat_map(|&(from, until)| {
            let until = until.min(now);
            std::iter::successors(job.next_after(from), move |t| job.next_after(*t))
                .take_while(move |at| *at <= until)
        });
        for at in occurrences {
            if !due(job, at) {
                continue;
            }
            let s = self.seen.get(&at).unwrap_or(&none);
            let alert = if let Some(why) = &s.dead {
                Some(Alert::new(
                    AlertKind::Failed,
                    id,
                    at,
                    format!("dead: {why}"),
                ))
            } else if let Some((why, missed)) = &s.skipped {
                missed.then(|| Alert::new(AlertKind::Missed, id, at, format!("skipped: {why}")))
            } else if !s.fired && s.succeeded.is_none() && elapsed(at, grace, now) {
                Some(Alert::new(
                    AlertKind::Missed,
                    id,
                    at,
                    format!(
                        "not fired within its misfire grace ({})",
                        humantime::format_duration(job.misfire().grace.get())
                    ),
                ))
            } else {
                self.sla
                    .filter(|sla| {
                        elapsed(at, *sla, now) && s.succeeded.is_none_or(|ok| ok - at > *sla)
                    })
                    .map(|sla| {
                        Alert::new(
                            AlertKind::Late,
                            id,
                            at,
                            format!(
                                "not succeeded within its sla ({}) of {}",
                                humantime::format_duration(sla.to_std().unwrap_or_default()),
                                crate::protocol::timestamp(at)
                            ),
                        )
                    })
            };
            out.extend(alert.filter(|a| !self.raised.contains(&a.id)));
        }
        if let Some(r) = resolution(id, self.seen, self.raised, &out) {
            out.push(r);
        }
        out
    }
}

/// Whether `scheduled + by` has passed at `now`.
fn elapsed(scheduled: DateTime<Utc>, by: Duration, now: DateTime<Utc>) -> bool {
    scheduled
        .checked_add_signed(by)
        .is_some_and(|deadline| now >= deadline)
}

/// The `resolved` alert due now, if any: the open alerts (raised before or
/// now, not resolved by an earlier `resolved`) are resolved by the first
/// occurrence after the latest of them that succeeded.
fn resolution(
    job_id: &str,
    seen: &BTreeMap<DateTime<Utc>, Seen>,
    raised: &BTreeSet<String>,
    new: &[Alert],
) -> Option<Alert> {
    let instant = |fire_id: &str| FireId::parse(fire_id).map(|(_, at)| at);
    let of_job = |fire_id: &str| FireId::parse(fire_id).is_some_and(|(job, _)| job == job_id);
    // Alerts of this job raised before, by kind.
    let before: Vec<(AlertKind, &str)> = raised
        .iter()
        .filter_map(|a| AlertKind::of_id(a))
        .filter(|(_, f)| of_job(f))
        .collect();
    let resolved_up_to = before
        .iter()
        .filter(|(k, _)| *k == AlertKind::Resolved)
        .filter_map(|(_, f)| instant(f))
        .max();
    let open: Vec<(String, DateTime<Utc>)> = before
        .iter()
        .filter(|(k, _)| *k != AlertKind::Resolved)
        .filter_map(|(k, f)| Some((format!("{}:{f}", k.as_str()), instant(f)?)))
        .chain(new.iter().map(|a| (a.id.clone(), a.scheduled)))
        .filter(|(_, at)| resolved_up_to.is_none_or(|r| *at > r))
        .collect();
    let latest = open.iter().map(|(_, at)| *at).max()?;
    let (at, _) = seen
        .range((
            std::ops::Bound::Excluded(latest),
            std::ops::Bound::Unbounded,
        ))
        .find(|(_, s)| s.succeeded.is_some())?;
    let mut resolves: Vec<String> = open.into_iter().map(|(id, _)| id).collect();
    resolves.sort();
    resolves.dedup();
    let mut r = Alert::new(
        AlertKind::Resolved,
        job_id,
        *at,
        format!("{} succeeded", FireId::new(job_id, *at)),
    );
    r.resolves = resolves;
    (!raised.contains(&r.id)).then_some(r)
}

/// Where alerts go (`[[alerts.routes]]`, validated): the alerts it takes
/// and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub kinds: BTreeSet<AlertKind>,
    pub job_prefix: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub pool: Option<String>,
    pub target: Target,
    /// The same job and kind again within this window is not sent.
    pub dedupe: std::time::Duration,
    pub max_per_hour: u32,
}

/// A route's receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The alert as JSON, signed with `secret` when set.
    Webhook { url: String, secret: Option<String> },
    /// A Slack-compatible incoming webhook: `{"text": …}`.
    Slack { url: String },
    /// Mail over SMTP.
    Mail(Mail),
}

/// A mail route's message and server (`[alerts.routes.mail]`, checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: Vec<String>,
    pub from: String,
    pub host: String,
    pub port: u16,
    pub tls: MailTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A private CA's PEM file (else the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

/// How a mail route talks to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailTls {
    /// STARTTLS, required: the message never goes in clear.
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No TLS: only for a relay on the same host.
    None,
}

impl Route {
    /// Whether the route takes `alert` of `job`.
    pub fn takes(&self, alert: &Alert, job: &Fired) -> bool {
        self.kinds.contains(&alert.kind)
            && self
                .job_prefix
                .as_deref()
                .is_none_or(|p| job.id().starts_with(p))
            && self.pool.as_deref().is_none_or(|p| job.pool() == p)
            && self
                .labels
                .iter()
                .all(|(k, v)| job.labels().get(k) == Some(v))
    }
}

/// What happened, in words: "failed", "is late", …
fn what(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Failed => "failed",
        AlertKind::Late => "is late",
        AlertKind::Missed => "was missed",
        AlertKind::Resolved => "is resolved",
    }
}

/// The dashboard's page of the occurrence `fire_id`, under `dashboard`
/// (`http.api`'s address).
pub fn run_link(dashboard: &str, fire_id: &str) -> String {
    format!(
        "{}/#/run/{}",
        dashboard.trim_end_matches('/'),
        fire_id.replace(':', "%3A")
    )
}

/// The text of `alert` for a person (Slack): what, which job and
/// occurrence, why, and where to look.
pub fn text(alert: &Alert, dashboard: Option<&str>) -> String {
    let mut t = format!(
        "Sundial: {} {} — {} ({})",
        alert.job_id,
        what(alert.kind),
        alert.fire_id,
        alert.reason
    );
    if let Some(base) = dashboard {
        t.push('\n');
        t.push_str(&run_link(base, &alert.fire_id));
    }
    t
}

/// The subject and body of a mail about `alert`: the job, what happened,
/// the fire id, the reason, the alert id (a receiver drops repeats by it),
/// and the link to the occurrence's page.
pub fn mail(alert: &Alert, dashboard: Option<&str>) -> (String, String) {
    let subject = format!("[Sundial] {} {}", alert.job_id, what(alert.kind));
    let mut body = format!(
        "Job:       {}\nAlert:     {} ({})\nFire id:   {}\nScheduled: {}\nReason:    {}\n",
        alert.job_id,
        alert.kind.as_str(),
        alert.id,
        alert.fire_id,
        crate::protocol::timestamp(alert.scheduled),
        alert.reason
    );
    if !alert.resolves.is_empty() {
        body.push_str(&format!("Resolves:  {}\n", alert.resolves.join(", ")));
    }
    if let Some(base) = dashboard {
        body.push_str(&format!("Run:       {}\n", run_link(base, &alert.fire_id)));
    }
    (subject, body)
}
