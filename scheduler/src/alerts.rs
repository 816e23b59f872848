//! Alerts (issue 25, ADR 0021): what the history says of every scheduled
//! occurrence, and the alerts already raised, as the history follower
//! (`workflows::advance`) reads them; and the check the owner of a shard
//! makes every `scheduler.alert_interval` over its jobs
//! ([`sundial_core::alert::Watch`]), appending what it raises to the
//! history stream (confirmed) in the batch's `alerts`.
//!
//! Every scheduler keeps the same view (it reads the same stream), so a
//! new owner after a takeover judges the same occurrences with the same
//! alerts raised, and raises nothing twice: an alert's id is
//! `{kind}:{fire_id}`. Two owners of one shard for a moment (a lease
//! changing hands) may raise the same id twice; a receiver drops repeats
//! by id.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::Addr;
use chrono::{DateTime, Utc};
use lapin::Channel;
use sundial_core::{
    alert::{
        run_link, Alert, AlertKind, Delivered, DeliveryOutcome, Mail, Raised, Route, Seen, Target,
        Watch,
    },
    codec::encode,
    protocol::node::RouteHealth,
    protocol::run::{RunBatch, RunEvent, RunKind, DUPLICATE},
    registry::Fired,
    topology::Topology,
    FireId,
};
use tracing::{info, warn};

use sundial_amqp::publish::publish_confirmed;

use crate::{
    error::Error,
    opening::Owned,
    registry::{JobsIn, Registry},
};

/// A skipped record whose reason starts so is a misfire policy's, after
/// an outage: the occurrence was missed.
const MISFIRE: &str = "misfire";
/// The most a check looks back, and how long what the history says of an
/// occurrence is kept: every scheduler keeps it for every job (a new owner
/// needs it), ~150 bytes per occurrence, so a day of an every-second job
/// would be 13 MB. A `misfire.grace` longer than this is judged as this.
pub(crate) const WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(6);
/// Alerts of one check logged one line each (the rest: one line).
const LOGGED_PER_CHECK: usize = 20;

/// How far back a check looks beyond the job's deadlines (`sla`,
/// `misfire.grace`): checks that came late (a busy node) still see every
/// occurrence whose deadline passed since the last one.
const SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// How long a node holds a shard before it judges the shard's jobs: the
/// last owner's alerts, appended before it let go, reach this node's
/// reader within it (a stream delivers in milliseconds), so a graceful
/// handover raises nothing twice.
const SETTLE: Duration = Duration::from_secs(2);

/// Tries of one delivery, with a doubling pause from one second.
const TRIES: u32 = 5;
/// Each try's bound.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How alerts reach an HTTP receiver: `POST url` with these headers and
/// body, `Ok` on a 2xx answer, else why not. The scheduler crate has no
/// HTTP client (it stays free of hyper, ADR 0019): the binary wires one
/// ([`crate::SchedulerConfig::alert_post`]); without it routes send nothing.
#[derive(Clone)]
pub struct Post(pub Arc<PostFn>);

/// What a [`Post`] calls: `(url, headers, body)`.
pub type PostFn = dyn Fn(
        String,
        Vec<(&'static str, String)>,
        String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
    + Send
    + Sync;

impl std::fmt::Debug for Post {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Post(an HTTP client)")
    }
}

/// How alerts reach a mail route: the route's server and addresses, then
/// the subject, the body and the alert's id (an `X-Sundial-Alert-Id`
/// header); `Ok` when the server took the message. Wired by the binary,
/// as [`Post`] is.
#[derive(Clone)]
pub struct SendMail(pub Arc<MailFn>);

/// What a [`SendMail`] calls: `(server, subject, body, alert id)`.
pub type MailFn = dyn Fn(
        Mail,
        String,
        String,
        String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
    + Send
    + Sync;

impl std::fmt::Debug for SendMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendMail(an SMTP client)")
    }
}

/// The clients alerts go out with ([`crate::SchedulerConfig::alert_senders`]):
/// a route whose kind has none sends nothing (logged at start).
#[derive(Clone, Debug, Default)]
pub struct Senders {
    pub post: Option<Post>,
    pub mail: Option<SendMail>,
    /// How each route's deliveries went here (heartbeat, `status`).
    pub health: Arc<Health>,
}

/// Routes a heartbeat reports at most (each ≤ ~450 bytes).
const HEALTH_MAX: usize = 32;

/// How each route's deliveries from this node went, since it started.
#[derive(Debug, Default)]
pub struct Health(Mutex<BTreeMap<String, RouteHealth>>);

impl Health {
    /// A delivery on `route` ended: sent, or gave up with `error`.
    fn record(&self, route: &str, error: Option<&str>) {
        let Ok(mut all) = self.0.lock() else { return };
        let h = all.entry(route.to_string()).or_insert_with(|| RouteHealth {
            route: route.to_string(),
            sent: 0,
            gave_up: 0,
            failing: 0,
            last_at: Utc::now(),
            last_error: None,
        });
        h.last_at = Utc::now();
        match error {
            None => {
                h.sent += 1;
                h.failing = 0;
            }
            Some(e) => {
                h.gave_up += 1;
                h.failing += 1;
                h.last_error = Some(
                    sundial_core::wire::headers::bounded_to(e, RouteHealth::ERROR_MAX).into_owned(),
                );
            }
        }
        metrics::gauge!(sundial_runtime::metrics::ALERT_ROUTE_FAILING, "route" => route.to_string())
            .set(h.failing as f64);
    }

    /// The routes delivered on, failing ones first, then by name; at most
    /// [`HEALTH_MAX`] (a heartbeat stays far below its 64 KiB bound).
    pub(crate) fn read(&self) -> Vec<RouteHealth> {
        let mut all: Vec<RouteHealth> = self
            .0
            .lock()
            .map(|all| all.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| (b.failing > 0, &a.route).cmp(&(a.failing > 0, &b.route)));
        all.truncate(HEALTH_MAX);
        all
    }
}

impl Senders {
    /// Whether a client for `target` is here.
    fn reach(&self, target: &Target) -> bool {
        match target {
            Target::Webhook { .. } | Target::Slack { .. } => self.post.is_some(),
            Target::Mail(_) => self.mail.is_some(),
        }
    }
}

/// The history as alerts need it, per job, and where alerts go.
#[derive(Default)]
pub(crate) struct Watcher {
    /// Scheduled occurrences (not triggers, backfills or steps) by instant.
    seen: HashMap<String, BTreeMap<DateTime<Utc>, Seen>>,
    /// Alert ids raised, by job.
    raised: HashMap<String, BTreeSet<String>>,
    /// Every alert raised (within the window), by id: a new owner sends
    /// what was not sent.
    bodies: HashMap<String, Raised>,
    /// (alert id, route) whose delivery ended (a `deliveries` record).
    delivered: HashSet<(String, String)>,
    routes: Routes,
    /// Jobs whose history or alerts changed since the last check: judged
    /// over their whole window at the next one.
    changed: HashSet<String>,
    /// The last check that went through.
    last: Option<Judged>,
}

/// A check that went through: when it judged, which shards, and how many
/// more checks may judge only what time changed before one judges every
/// occurrence of the window again.
struct Judged {
    at: DateTime<Utc>,
    shards: BTreeSet<u32>,
    narrow_left: u32,
}

/// Checks that judge only the occurrences whose deadline passed since the
/// one before, between two that judge every occurrence in the window (a
/// definition changed meanwhile, its `sla` or `misfire.grace` shorter, is
/// judged in full within a minute at the default `alert_interval`).
const NARROW_CHECKS: u32 = 11;

/// How far before a deadline window a narrow check starts: an occurrence
/// at its boundary is judged twice rather than never (a raised alert is
/// not raised again).
const MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// A check slower than this says so in the log.
const SLOW_CHECK: Duration = Duration::from_secs(1);

/// Jobs judged between two yields of a check (~2–15 ms).
const CHECK_CHUNK: usize = 20_000;

/// After a check that took `d`, the next begins no sooner than this many
/// `d` later: checks take at most a quarter of a core (at 3.4M jobs a node
/// on this 2-core machine, a check took 2.7 s, and checks every 5 s took
/// more than half a core on each of three nodes).
pub(crate) const CHECK_REST: u32 = 3;

/// The routes and what this node sends on them now.
#[derive(Default)]
pub(crate) struct Routes {
    routes: Arc<Vec<Route>>,
    /// Where run pages are (`http.api`), for the links in messages.
    dashboard: Option<String>,
    senders: Senders,
    /// Deliveries under way here: not started again.
    in_flight: Arc<Mutex<HashSet<(String, String)>>>,
    /// Per route, when it last sent each job's kind (dedupe), and what it
    /// sent in the last hour (cap), by alert: from the `deliveries` records
    /// every node reads, and the sends started here, so a restart or a new
    /// owner holds to the same window and cap.
    last: HashMap<(String, String, AlertKind), DateTime<Utc>>,
    hour: HashMap<String, BTreeMap<String, DateTime<Utc>>>,
}

impl Watcher {
    /// A watcher sending to `routes` with `senders` (links to `dashboard`).
    pub(crate) fn new(routes: Vec<Route>, senders: Senders, dashboard: Option<String>) -> Self {
        for r in routes.iter().filter(|r| !senders.reach(&r.target)) {
            warn!(
                route = %r.name,
                "this process has no client for the alert route: its alerts are not sent here"
            );
        }
        Self {
            routes: Routes {
                routes: Arc::new(routes),
                dashboard,
                senders,
                ..Routes::default()
            },
            ..Self::default()
        }
    }
}

/// What a check needs besides the view.
pub(crate) struct CheckParts<'a> {
    pub(crate) topo: &'a Topology,
    pub(crate) node: &'a str,
    pub(crate) registry: &'a Addr<Registry>,
    pub(crate) owned: &'a Owned,
    pub(crate) horizon: Duration,
    pub(crate) ch: &'a Channel,
    /// Count `late` and `missed` in the per-job series.
    pub(crate) job_metrics: bool,
    /// The instant the history stream is known to be read up to (a marker
    /// appended then was read back): occurrences are judged at it, not at
    /// the clock, so a reader that lags (a loaded broker, a node catching
    /// up) never calls a fired occurrence missed.
    pub(crate) read_up_to: DateTime<Utc>,
}

impl Watcher {
    /// Takes in one message of the history stream.
    pub(crate) fn read(&mut self, batch: &RunBatch) {
        for r in &batch.records {
            self.record(r);
        }
        for a in &batch.alerts {
            if !self.changed.contains(&a.alert.job_id) {
                self.changed.insert(a.alert.job_id.clone());
            }
            self.raised
                .entry(a.alert.job_id.clone())
                .or_default()
                .insert(a.alert.id.clone());
            self.bodies
                .entry(a.alert.id.clone())
                .or_insert_with(|| a.clone());
        }
        for d in &batch.deliveries {
            self.delivered.insert((d.alert.clone(), d.route.clone()));
            if d.outcome == DeliveryOutcome::Sent {
                self.routes.sent(&d.route, &d.alert, d.at);
            }
        }
    }

    fn record(&mut self, r: &RunEvent) {
        if FireId::split_step(&r.fire_id).is_some() {
            return;
        }
        // Scheduled occurrences only: a trigger's or backfill's id does not
        // parse as `job@instant`.
        let Some((job, at)) = FireId::parse(&r.fire_id) else {
            return;
        };
        if !self.changed.contains(job) {
            self.changed.insert(job.to_string());
        }
        let s = self
            .seen
            .entry(job.to_string())
            .or_default()
            .entry(at)
            .or_default();
        match r.kind {
            RunKind::Fired | RunKind::Started | RunKind::Failed | RunKind::Retrying => {
                s.fired = true;
            }
            RunKind::Succeeded => {
                s.fired = true;
                s.succeeded.get_or_insert(r.at);
            }
            RunKind::Dead => {
                s.fired = true;
                s.dead = Some(r.reason.clone().unwrap_or_else(|| "dead".into()));
            }
            RunKind::Skipped if r.reason.as_deref() == Some(DUPLICATE) => {}
            RunKind::Skipped => {
                let why = r.reason.clone().unwrap_or_else(|| "skipped".into());
                let missed = why.starts_with(MISFIRE);
                s.skipped = Some((why, missed));
            }
            // A workflow occurrence a client cancelled: their choice.
            RunKind::Cancelled => {
                s.fired = true;
                s.skipped = Some((r.reason.clone().unwrap_or_default(), false));
            }
        }
    }

    /// Counts the scheduled occurrences of `batch` per job and state
    /// ([`sundial_runtime::metrics::OCCURRENCES`]) for the jobs whose
    /// shard this node owns: each is counted by one node (two for a moment
    /// while a shard changes hands).
    pub(crate) fn count(batch: &RunBatch, topo: &Topology, owned: &Owned) {
        let shards = owned.shards();
        if shards.is_empty() {
            return;
        }
        for r in &batch.records {
            let state = match r.kind {
                RunKind::Succeeded => "succeeded",
                RunKind::Dead => "dead",
                RunKind::Skipped if r.reason.as_deref() != Some(DUPLICATE) => "skipped",
                _ => continue,
            };
            if FireId::split_step(&r.fire_id).is_some() || FireId::parse(&r.fire_id).is_none() {
                continue;
            }
            if shards.contains(&topo.shard_of(&r.job_id)) {
                metrics::counter!(sundial_runtime::metrics::OCCURRENCES, "job" => r.job_id.clone(), "state" => state).increment(1);
            }
        }
    }

    /// Forgets what is older than the horizon or the [`WINDOW`].
    pub(crate) fn forget(&mut self, now: DateTime<Utc>, horizon: Duration) {
        let edge = now
            - chrono::TimeDelta::from_std(horizon)
                .unwrap_or(WINDOW)
                .min(WINDOW);
        self.seen.retain(|_, m| {
            m.retain(|at, _| *at >= edge);
            !m.is_empty()
        });
        let recent = |id: &str| {
            AlertKind::of_id(id)
                .and_then(|(_, f)| FireId::parse(f))
                .is_some_and(|(_, at)| at >= edge)
        };
        self.raised.retain(|_, ids| {
            ids.retain(|id| recent(id));
            !ids.is_empty()
        });
        self.bodies.retain(|id, _| recent(id));
        self.delivered.retain(|(id, _)| recent(id));
        let hour = chrono::TimeDelta::hours(1);
        let longest = self
            .routes
            .routes
            .iter()
            .filter_map(|r| chrono::TimeDelta::from_std(r.dedupe).ok())
            .max()
            .unwrap_or(hour)
            .max(hour);
        self.routes.last.retain(|_, t| now - *t < longest);
        for sent in self.routes.hour.values_mut() {
            sent.retain(|_, t| now - *t < hour);
        }
    }

    /// Judges the jobs of the shards this node owns and appends what they
    /// raise to the history stream (marked raised here at once, so the
    /// next check does not raise them again before they are read back).
    pub(crate) async fn check(&mut self, p: CheckParts<'_>) -> Result<usize, Error> {
        // A shard just taken over is judged once this node has had time to
        // read what its last owner raised up to the handover.
        let shards = p.owned.held_for(SETTLE);
        if shards.is_empty() {
            // Nothing judged: what changed meanwhile is not kept (a node
            // that owns no shard would gather every job id with a record).
            self.last = None;
            self.changed.clear();
            return Ok(0);
        }
        let now = p.read_up_to;
        let began = std::time::Instant::now();
        // What time alone changed since the last check, for the jobs whose
        // history did not change (every shard judged then too); else all.
        let since = self
            .last
            .as_ref()
            .filter(|l| l.narrow_left > 0 && l.shards == shards && l.at <= now)
            .map(|l| l.at);
        let jobs = p.registry.send(JobsIn(shards.clone())).await?;
        let horizon = chrono::TimeDelta::from_std(p.horizon)
            .unwrap_or(WINDOW)
            .min(WINDOW);
        let empty_seen = BTreeMap::new();
        let empty_raised = BTreeSet::new();
        let mut alerts: Vec<Alert> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            // The other tasks of this thread (the lease loop, the control
            // consumer) go on between chunks: at millions of jobs a check
            // takes seconds.
            if i > 0 && i % CHECK_CHUNK == 0 {
                tokio::task::yield_now().await;
            }
            let from = now - lookback(job).min(horizon);
            let sla = job
                .sla()
                .and_then(|s| chrono::TimeDelta::from_std(s.get()).ok());
            let w = Watch {
                job,
                sla,
                seen: self.seen.get(job.id()).unwrap_or(&empty_seen),
                raised: self.raised.get(job.id()).unwrap_or(&empty_raised),
            };
            match since.filter(|_| !self.changed.contains(job.id())) {
                Some(prev) => {
                    alerts.extend(w.judge(&deadline_windows(job, sla, prev, now, from), now))
                }
                None => alerts.extend(w.check(from, now)),
            }
        }
        let took = began.elapsed();
        if took >= SLOW_CHECK {
            info!(
                jobs = jobs.len(),
                whole = since.is_none(),
                took_ms = took.as_millis() as u64,
                "alert check was slow"
            );
        }
        // Recorded below (or returned with an error, and the next check
        // judges everything again).
        let judged = Judged {
            at: now,
            narrow_left: match (&self.last, since) {
                (Some(l), Some(_)) => l.narrow_left - 1,
                _ => NARROW_CHECKS,
            },
            shards,
        };
        self.last = None;
        metrics::gauge!(sundial_runtime::metrics::LAST_ALERT_CHECK)
            .set(now.timestamp_millis() as f64 / 1000.0);
        if alerts.is_empty() {
            self.judged(judged);
            // What earlier checks (or the owner before a takeover) raised
            // and no record says went out.
            self.deliver(&p, &jobs).await?;
            return Ok(0);
        }
        for (i, a) in alerts.iter().enumerate() {
            // One line each for the first few of a check; then one line for
            // the rest (a mass miss must not flood the log).
            if i < LOGGED_PER_CHECK {
                info!(job_id = %a.job_id, fire_id = %a.fire_id, alert = %a.id, reason = %a.reason, "alert raised");
            } else if i == LOGGED_PER_CHECK {
                info!(
                    more = alerts.len() - LOGGED_PER_CHECK,
                    "more alerts raised by this check (each is in the history)"
                );
            }
            metrics::counter!(sundial_runtime::metrics::ALERTS, "kind" => a.kind.as_str())
                .increment(1);
            if p.job_metrics && matches!(a.kind, AlertKind::Late | AlertKind::Missed) {
                metrics::counter!(sundial_runtime::metrics::OCCURRENCES, "job" => a.job_id.clone(), "state" => a.kind.as_str()).increment(1);
            }
        }
        let n = alerts.len();
        let raised: Vec<Raised> = alerts
            .iter()
            .map(|alert| Raised {
                alert: alert.clone(),
                at: Utc::now(),
                node: p.node.to_string(),
            })
            .collect();
        let batch = RunBatch {
            alerts: raised.clone(),
            ..RunBatch::of(Vec::new())
        };
        let enc = encode(&batch)?;
        if let Err(e) = publish_confirmed(p.ch, &p.topo.history_exchange(), "", &enc, || {}).await {
            warn!(alerts = n, error = %e, "alerts not recorded; the next check raises them again");
            return Err(Error::not_stored("alerts")(e));
        }
        for r in raised {
            self.raised
                .entry(r.alert.job_id.clone())
                .or_default()
                .insert(r.alert.id.clone());
            self.bodies.insert(r.alert.id.clone(), r);
        }
        self.judged(judged);
        self.deliver(&p, &jobs).await?;
        Ok(n)
    }

    /// A check went through: the next judges from it what time changed
    /// (the history read since is in `changed` again).
    fn judged(&mut self, judged: Judged) {
        self.last = Some(judged);
        self.changed.clear();
    }

    /// Sends the alerts of `jobs` (this node's) that a route takes and
    /// that no record says went out on it: each in a task of its own (a
    /// slow receiver holds up nothing), which records how it ended; what
    /// a route's dedupe window or hourly cap holds back is recorded at once.
    async fn deliver(&mut self, p: &CheckParts<'_>, jobs: &[Arc<Fired>]) -> Result<(), Error> {
        let senders = self.routes.senders.clone();
        // `jobs` come in id order (`JobsIn`): the few alerts' jobs are
        // looked up, not millions of jobs hashed on every check.
        let find = |id: &str| {
            jobs.binary_search_by(|j| j.id().cmp(id))
                .ok()
                .and_then(|i| jobs.get(i))
        };
        let mut due: Vec<&Raised> = self
            .bodies
            .values()
            .filter(|r| find(r.alert.job_id.as_str()).is_some())
            .collect();
        due.sort_by(|a, b| (a.at, &a.alert.id).cmp(&(b.at, &b.alert.id)));
        let now = Utc::now();
        let routes = self.routes.routes.clone();
        let mut held = Vec::new();
        for raised in due {
            let a = &raised.alert;
            let Some(job) = find(a.job_id.as_str()) else {
                continue;
            };
            for route in routes
                .iter()
                .filter(|r| r.takes(a, job) && senders.reach(&r.target))
            {
                let key = (a.id.clone(), route.name.clone());
                let busy = self
                    .routes
                    .in_flight
                    .lock()
                    .map_or(true, |f| f.contains(&key));
                if self.delivered.contains(&key) || busy {
                    continue;
                }
                let dedupe_key = (route.name.clone(), a.job_id.clone(), a.kind);
                let recent = self.routes.last.get(&dedupe_key).is_some_and(|t| {
                    chrono::TimeDelta::from_std(route.dedupe).is_ok_and(|d| now - *t < d)
                });
                let in_hour = self.routes.hour.get(&route.name).map_or(0, |sent| {
                    sent.values()
                        .filter(|t| now - **t < chrono::TimeDelta::hours(1))
                        .count()
                });
                let outcome = if recent {
                    Some(DeliveryOutcome::Deduped)
                } else if in_hour >= route.max_per_hour as usize {
                    Some(DeliveryOutcome::Capped)
                } else {
                    None
                };
                if let Some(outcome) = outcome {
                    metrics::counter!(sundial_runtime::metrics::ALERT_DELIVERIES, "route" => route.name.clone(), "outcome" => outcome.as_str()).increment(1);
                    held.push(Delivered {
                        alert: a.id.clone(),
                        route: route.name.clone(),
                        outcome,
                        at: now,
                        node: p.node.to_string(),
                        error: None,
                    });
                    self.delivered.insert(key);
                    continue;
                }
                self.routes.sent(&route.name, &a.id, now);
                if let Ok(mut f) = self.routes.in_flight.lock() {
                    f.insert(key.clone());
                }
                tokio::spawn(send(
                    Delivery {
                        senders: senders.clone(),
                        route: route.clone(),
                        raised: raised.clone(),
                        dashboard: self.routes.dashboard.clone(),
                        node: p.node.to_string(),
                        ch: p.ch.clone(),
                        exchange: p.topo.history_exchange(),
                    },
                    self.routes.in_flight.clone(),
                ));
            }
        }
        if held.is_empty() {
            return Ok(());
        }
        let batch = RunBatch {
            deliveries: held,
            ..RunBatch::of(Vec::new())
        };
        let enc = encode(&batch)?;
        publish_confirmed(p.ch, &p.topo.history_exchange(), "", &enc, || {})
            .await
            .map_err(Error::not_stored("alert deliveries"))
    }
}

impl Routes {
    /// `route` sent alert `alert` at `at` (here, or as a record says).
    fn sent(&mut self, route: &str, alert: &str, at: DateTime<Utc>) {
        let Some((kind, fire_id)) = AlertKind::of_id(alert) else {
            return;
        };
        let Some((job, _)) = FireId::parse(fire_id) else {
            return;
        };
        let last = self
            .last
            .entry((route.to_string(), job.to_string(), kind))
            .or_insert(at);
        *last = (*last).max(at);
        self.hour
            .entry(route.to_string())
            .or_default()
            .insert(alert.to_string(), at);
    }
}

/// One delivery of an alert on a route.
struct Delivery {
    senders: Senders,
    route: Route,
    raised: Raised,
    dashboard: Option<String>,
    node: String,
    ch: Channel,
    exchange: String,
}

/// Sends one alert on one route, trying [`TRIES`] times, then records how
/// it ended in the history stream (confirmed; if that fails, the next
/// owner or check sends it again: at least once).
async fn send(s: Delivery, in_flight: Arc<Mutex<HashSet<(String, String)>>>) {
    let a = &s.raised.alert;
    let mut error = None;
    let mut outcome = DeliveryOutcome::GaveUp;
    for i in 0..TRIES {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(1 << (i - 1))).await;
        }
        match attempt(&s).await {
            Ok(()) => {
                outcome = DeliveryOutcome::Sent;
                error = None;
                break;
            }
            Err(e) => error = Some(e),
        }
    }
    metrics::counter!(sundial_runtime::metrics::ALERT_DELIVERIES, "route" => s.route.name.clone(), "outcome" => outcome.as_str()).increment(1);
    s.senders.health.record(&s.route.name, error.as_deref());
    match &error {
        None => {
            info!(job_id = %a.job_id, fire_id = %a.fire_id, alert = %a.id, route = %s.route.name, "alert sent")
        }
        Some(e) => {
            warn!(job_id = %a.job_id, fire_id = %a.fire_id, alert = %a.id, route = %s.route.name, error = %e, "alert not sent: the route gave up")
        }
    }
    let record = RunBatch {
        deliveries: vec![Delivered {
            alert: a.id.clone(),
            route: s.route.name.clone(),
            outcome,
            at: Utc::now(),
            node: s.node.clone(),
            error,
        }],
        ..RunBatch::of(Vec::new())
    };
    match encode(&record) {
        Ok(enc) => {
            if let Err(e) = publish_confirmed(&s.ch, &s.exchange, "", &enc, || {}).await {
                warn!(alert = %a.id, route = %s.route.name, error = %e, "alert delivery not recorded; it may be sent again");
            }
        }
        Err(e) => warn!(alert = %a.id, error = %e, "alert delivery record not encoded"),
    }
    if let Ok(mut f) = in_flight.lock() {
        f.remove(&(a.id.clone(), s.route.name.clone()));
    }
}

/// One try of a delivery, bounded by [`SEND_TIMEOUT`].
async fn attempt(s: &Delivery) -> Result<(), String> {
    let a = &s.raised.alert;
    let dashboard = s.dashboard.as_deref();
    let sending = match &s.route.target {
        Target::Webhook { url, secret } => {
            let mut v = serde_json::to_value(&s.raised).unwrap_or_default();
            v["link"] = serde_json::json!(dashboard.map(|d| run_link(d, &a.fire_id)));
            let body = v.to_string();
            let mut headers = vec![
                ("content-type", "application/json".to_string()),
                ("x-sundial-alert-id", a.id.clone()),
            ];
            if let Some(key) = secret {
                headers.push((
                    "x-sundial-signature",
                    format!(
                        "sha256={}",
                        sundial_core::sign::sign_body(key.as_bytes(), body.as_bytes())
                    ),
                ));
            }
            let Some(post) = &s.senders.post else {
                return Err("no HTTP client".into());
            };
            (post.0)(url.clone(), headers, body)
        }
        Target::Slack { url } => {
            let body =
                serde_json::json!({"text": sundial_core::alert::text(a, dashboard)}).to_string();
            let headers = vec![
                ("content-type", "application/json".to_string()),
                ("x-sundial-alert-id", a.id.clone()),
            ];
            let Some(post) = &s.senders.post else {
                return Err("no HTTP client".into());
            };
            (post.0)(url.clone(), headers, body)
        }
        Target::Mail(m) => {
            let (subject, body) = sundial_core::alert::mail(a, dashboard);
            let Some(mail) = &s.senders.mail else {
                return Err("no SMTP client".into());
            };
            (mail.0)(m.clone(), subject, body, a.id.clone())
        }
    };
    tokio::time::timeout(SEND_TIMEOUT, sending)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {}s", SEND_TIMEOUT.as_secs())))
}

/// The windows `(from, until]` (in order, not overlapping, none before
/// `floor`) of the occurrences of `job` whose deadline (`misfire.grace`,
/// `sla`) passed in `(prev, now]`: all a check at `now` can judge
/// differently from the one at `prev` when the job's history did not change.
fn deadline_windows(
    job: &Fired,
    sla: Option<chrono::TimeDelta>,
    prev: DateTime<Utc>,
    now: DateTime<Utc>,
    floor: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let grace = chrono::TimeDelta::from_std(job.misfire().grace.get()).ok();
    let mut windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = [grace, sla]
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let from = prev.checked_sub_signed(d)?.checked_sub_signed(MARGIN)?;
            let until = now.checked_sub_signed(d)?;
            Some((from.max(floor), until))
        })
        .filter(|(from, until)| from < until)
        .collect();
    windows.sort();
    // Overlapping windows become one (no occurrence judged twice a check).
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(windows.len());
    for (from, until) in windows {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(until),
            _ => merged.push((from, until)),
        }
    }
    merged
}

/// How far back a check of `job` looks: its longest deadline (its `sla`,
/// its misfire grace) and some slack.
fn lookback(job: &Arc<Fired>) -> chrono::TimeDelta {
    let d = |d: Duration| chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
    let grace = d(job.misfire().grace.get());
    let sla = job.sla().map_or(chrono::TimeDelta::zero(), |s| d(s.get()));
    grace
        .max(sla)
        .checked_add(&SLACK)
        .unwrap_or(chrono::TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(sla: &str, grace: &str) -> Arc<Fired> {
        let spec: sundial_core::JobSpec = serde_json::from_value(serde_json::json!({
            "id": "j", "schedule": "@every 60s", "executor": {"type": "noop"},
            "sla": sla, "misfire": {"grace": grace},
            "start_at": "2026-12-06T10:00:00Z"
        }))
        .expect("job");
        let created = "2026-12-06T09:00:00Z".parse().expect("instant");
        Arc::new(Fired::new(spec, created).expect("entry"))
    }

    /// Checks every 5 s for 20 minutes with a history that does not change:
    /// judging only the deadlines passed since the last check raises, check
    /// by check, exactly what judging the whole window raises.
    #[test]
    fn narrow_checks_raise_what_whole_checks_raise() {
        for (sla, grace) in [("90s", "3m"), ("3m", "90s"), ("2m", "2m"), ("10s", "10m")] {
            let job = job(sla, grace);
            let t0: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().expect("instant");
            let at = |m: i64| t0 + chrono::TimeDelta::minutes(m);
            // Fired and succeeded in time, fired and succeeded late, fired
            // and never succeeded, and nothing at all (the rest).
            let fired = |succeeded: Option<DateTime<Utc>>| Seen {
                fired: true,
                succeeded,
                ..Seen::default()
            };
            let seen: BTreeMap<_, _> = [
                (at(1), fired(Some(at(1)))),
                (at(2), fired(Some(at(6)))),
                (at(3), fired(None)),
            ]
            .into_iter()
            .collect();
            let sla_d = job
                .sla()
                .and_then(|s| chrono::TimeDelta::from_std(s.get()).ok());
            let (mut whole, mut narrow) = (BTreeSet::new(), BTreeSet::new());
            let mut prev: Option<DateTime<Utc>> = None;
            for step in 0..240 {
                let now = t0 + chrono::TimeDelta::seconds(5 * step);
                let from = now - lookback(&job);
                let w = |raised| Watch {
                    job: &job,
                    sla: sla_d,
                    seen: &seen,
                    raised,
                };
                let a = w(&whole).check(from, now);
                let b = match prev {
                    Some(p) => w(&narrow).judge(&deadline_windows(&job, sla_d, p, now, from), now),
                    None => w(&narrow).check(from, now),
                };
                let ids = |v: &[Alert]| v.iter().map(|a| a.id.clone()).collect::<BTreeSet<_>>();
                assert_eq!(ids(&a), ids(&b), "sla {sla} grace {grace}, check at {now}");
                whole.extend(ids(&a));
                narrow.extend(ids(&b));
                prev = Some(now);
            }
            assert!(
                whole.iter().any(|id| id.starts_with("missed:")),
                "{whole:?}"
            );
            assert!(whole.iter().any(|id| id.starts_with("late:")), "{whole:?}");
        }
    }

    #[test]
    fn deadline_windows_are_in_order_and_merged_when_they_overlap() {
        let t: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().expect("instant");
        let s = chrono::TimeDelta::seconds;
        let floor = t - s(3600);
        let j = job("2m", "10m");
        let w = deadline_windows(&j, Some(s(120)), t, t + s(5), floor);
        assert_eq!(w, vec![(t - s(601), t - s(595)), (t - s(121), t - s(115))]);
        let j = job("10m", "10m");
        let w = deadline_windows(&j, Some(s(602)), t, t + s(5), floor);
        assert_eq!(w, vec![(t - s(603), t - s(595))]);
        // Nothing before the window's floor.
        let w = deadline_windows(&j, None, t, t + s(5), t - s(598));
        assert_eq!(w, vec![(t - s(598), t - s(595))]);
    }

    #[test]
    fn route_health_counts_give_ups_in_a_row_and_reports_failing_routes_first() {
        let h = Health::default();
        h.record("b-hook", None);
        h.record("a-hook", None);
        h.record("z-mail", Some("SMTP refused"));
        h.record("z-mail", Some(&"x".repeat(1000)));
        for i in 0..40 {
            h.record(&format!("r{i:02}"), None);
        }
        let all = h.read();
        assert_eq!(all.len(), HEALTH_MAX);
        let z = &all[0];
        assert_eq!((z.route.as_str(), z.gave_up, z.failing), ("z-mail", 2, 2));
        assert!(z
            .last_error
            .as_ref()
            .is_some_and(|e| e.len() <= RouteHealth::ERROR_MAX));
        assert_eq!(all[1].route, "a-hook");
        h.record("z-mail", None);
        let all = h.0.lock().expect("health");
        let z = &all["z-mail"];
        assert_eq!((z.sent, z.gave_up, z.failing), (1, 2, 0), "{z:?}");
    }
}
