//! Settings in two steps (ripgrep's LowArgs → HiArgs): [`RawSettings`] is what
//! serde reads from defaults, `sundial.toml`, `SUNDIAL__SECTION__KEY`
//! environment variables and flags (merged by the binary with the `config`
//! crate); [`Settings`] is the validated form, built once by `TryFrom`. A bad
//! value fails at start with its key name.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    duration::HumanDuration, error::ValidationError, job::DEFAULT_POOL, topology::Topology,
};

const MASK: &str = "****";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSettings {
    pub broker: RawBroker,
    pub topology: RawTopology,
    pub worker: RawWorker,
    pub control: RawControl,
    pub registry: RawRegistry,
    pub history: RawHistory,
    pub http: RawHttp,
    pub log: RawLog,
    pub supervisor: RawSupervisor,
    pub scheduler: RawScheduler,
    pub alerts: RawAlerts,
}

/// `[alerts]`: where alerts go (settings file only: `[[alerts.routes]]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAlerts {
    pub routes: Vec<RawRoute>,
}

/// One `[[alerts.routes]]`: which alerts, and where to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    /// Kinds it takes (`failed`, `late`, `missed`, `resolved`); absent: all.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Only jobs whose id starts so.
    #[serde(default)]
    pub job_prefix: Option<String>,
    /// Only jobs with every one of these labels.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Only jobs of this pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// POST the alert as JSON here (one of `webhook`, `slack`).
    #[serde(default)]
    pub webhook: Option<String>,
    /// A Slack-compatible incoming webhook: a readable text.
    #[serde(default)]
    pub slack: Option<String>,
    /// Mail over SMTP (`[alerts.routes.mail]`).
    #[serde(default)]
    pub mail: Option<RawMail>,
    /// Signs webhook bodies: `X-Sundial-Signature: sha256=HEX` (HMAC-SHA256).
    #[serde(default)]
    pub secret: Option<String>,
    /// The same job and kind again within this window is not sent.
    #[serde(default)]
    pub dedupe: Option<String>,
    /// At most this many sent per hour (the rest are counted, not sent).
    #[serde(default)]
    pub max_per_hour: Option<u32>,
}

/// `[alerts.routes.mail]`: mail over SMTP, with STARTTLS by default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMail {
    /// Recipients.
    pub to: Vec<String>,
    /// The sender address.
    pub from: String,
    /// The SMTP server, `host:port` (port 587 when left out).
    pub server: String,
    /// `starttls` (the default: required, never sent in clear), `tls`
    /// (TLS from the first byte, port 465) or `none` (a relay on this host).
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of the CA that signed the server's certificate, for a
    /// private CA (else the system's roots).
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawScheduler {
    /// How often a scheduler announces itself (and its shards) on the nodes
    /// exchange.
    pub heartbeat_interval: String,
    /// A peer silent for this long is gone: its shards are taken over. The
    /// failover time is about this plus one interval.
    pub heartbeat_timeout: String,
    /// How far back a starting scheduler reads the history stream to find
    /// the workflow occurrences still open (issue 24): one open longer is
    /// not advanced after every scheduler restarted.
    pub workflow_horizon: String,
    /// How often the owner of a shard judges its jobs' occurrences for
    /// alerts (issue 25): how late a `late` or `missed` alert may come.
    pub alert_interval: String,
    /// Per-job series `sundial_occurrences_total{job,state}`: at most five
    /// per job (docs/operations.md, "Metrics"); off for very large fleets.
    pub job_metrics: bool,
}

impl Default for RawScheduler {
    fn default() -> Self {
        Self {
            heartbeat_interval: "1s".into(),
            heartbeat_timeout: "3s".into(),
            workflow_horizon: "24h".into(),
            alert_interval: "5s".into(),
            job_metrics: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSupervisor {
    /// Restarts allowed within `within`; one more and the process exits
    /// non-zero (for systemd or Kubernetes to restart it).
    pub max_restarts: u32,
    pub within: String,
}

impl Default for RawSupervisor {
    fn default() -> Self {
        Self {
            max_restarts: 10,
            within: "60s".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRegistry {
    /// Write a snapshot when the records since the last one exceed this.
    pub snapshot_after_bytes: u64,
    /// Registry stream retention (`x-max-age`); snapshots are written at
    /// least every quarter of it, so a live definition is never lost.
    pub max_age: String,
}

impl Default for RawRegistry {
    fn default() -> Self {
        Self {
            snapshot_after_bytes: 8 * 1024 * 1024,
            max_age: "7days".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHistory {
    /// Whether schedulers keep a history index (the history stream is
    /// written either way).
    pub enabled: bool,
    /// The index file (SQLite); one process holds it at a time.
    pub path: String,
    /// History stream retention (`x-max-age`) and index retention by age.
    pub max_age: String,
    /// History stream retention by size (`x-max-length-bytes`).
    pub max_bytes: u64,
    /// The index keeps at most this many attempts per job (newest).
    pub keep_per_job: u32,
    /// A worker's run records per history message, at most.
    pub batch_max: u32,
}

impl Default for RawHistory {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "sundial-history.db".into(),
            max_age: "7days".into(),
            max_bytes: 10 * 1024 * 1024 * 1024,
            keep_per_job: 10_000,
            batch_max: 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBroker {
    /// `amqp://` or `amqps://` URL; the vhost is its path (`%2f` for `/`).
    pub url: String,
    /// Several addresses (the nodes of a cluster), tried in turn; when set,
    /// `url` is not used.
    pub urls: Vec<String>,
    pub tls: RawTls,
    /// How long a connection may take, TCP connect and AMQP handshake
    /// together, before the address counts as unreachable (a broker at its
    /// file-handle limit accepts the socket and never answers).
    pub connect_timeout: String,
}

/// TLS files for `amqps://` (PEM). Without them the server is verified
/// against the operating system's trust store.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTls {
    /// CA certificate(s) that sign the broker's certificate.
    pub ca_file: Option<String>,
    /// Client certificate (chain) for mutual TLS; needs `key_file`.
    pub cert_file: Option<String>,
    /// The client certificate's private key (PKCS#8).
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTopology {
    pub prefix: String,
    pub shards: u32,
    pub pools: Vec<String>,
    pub retry_tiers: Vec<String>,
    pub delivery_limit: u32,
    /// Members of each quorum queue and stream (capped by the cluster).
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawWorker {
    pub pool: String,
    pub concurrency: u32,
    pub shutdown_deadline: String,
    /// The broker's `consumer_timeout` (RabbitMQ default 30 minutes): a job
    /// whose timeout is longer gets a warning, since the broker would
    /// redeliver its run.
    pub consumer_timeout: String,
    /// How often the DlqWatcher reads dead-letter queue depths.
    pub dlq_check_interval: String,
    /// URL that receives a JSON alert when a dead-letter queue grows.
    pub dlq_webhook: Option<String>,
    /// `all`: a `started` event per attempt besides its outcome; `outcomes`:
    /// `started` only for fires whose overlap policy needs it (forbid,
    /// replace). Outcomes (succeeded, failed, retrying, dead, skipped) are
    /// always published.
    pub run_events: String,
    pub shell: RawShell,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawShell {
    /// Absolute paths of programs the shell executor may run.
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawControl {
    /// HMAC-SHA256 key for signed commands; never logged.
    pub hmac_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    pub enabled: bool,
    /// Unset: the role's default range ([`HttpSettings::listen`]).
    pub listen: Option<String>,
    /// The HTTP API the CLI's history commands ask (`sundial job history`,
    /// `sundial runs`): a scheduler's or `sundial run`'s endpoint.
    pub api: String,
    /// Tokens of the HTTP API and dashboard (hashes only).
    pub tokens: Vec<RawToken>,
    /// Ask for a token even on loopback (behind a reverse proxy, say).
    pub require_tokens: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub name: String,
    /// `read` or `admin`.
    pub role: String,
    /// SHA-256 of the token, hex (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter (`info`, `sundial=debug,lapin=warn`).
    pub level: String,
}

impl Default for RawBroker {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            urls: Vec::new(),
            tls: RawTls::default(),
            connect_timeout: "10s".into(),
        }
    }
}

impl Default for RawTopology {
    fn default() -> Self {
        Self {
            prefix: "sundial".into(),
            shards: 64,
            pools: vec![DEFAULT_POOL.into()],
            retry_tiers: vec!["10s".into(), "1m".into(), "10m".into(), "1h".into()],
            delivery_limit: 10,
            replicas: 3,
        }
    }
}

impl Default for RawWorker {
    fn default() -> Self {
        Self {
            pool: DEFAULT_POOL.into(),
            concurrency: 16,
            shutdown_deadline: "30s".into(),
            consumer_timeout: "30m".into(),
            dlq_check_interval: "15s".into(),
            dlq_webhook: None,
            run_events: "failures".into(),
            shell: RawShell::default(),
        }
    }
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            api: "http://127.0.0.1:9797".into(),
            tokens: Vec::new(),
            require_tokens: false,
        }
    }
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl RawSettings {
    /// A copy safe to print: passwords in URLs and keys replaced by `****`.
    pub fn masked(&self) -> Self {
        let mut s = self.clone();
        s.broker.url = mask_url_password(&s.broker.url);
        s.broker.urls = s.broker.urls.iter().map(|u| mask_url_password(u)).collect();
        if s.control.hmac_key.is_some() {
            s.control.hmac_key = Some(MASK.into());
        }
        for r in &mut s.alerts.routes {
            // A Slack webhook's path is its secret.
            if r.slack.is_some() {
                r.slack = Some(MASK.into());
            }
            if r.secret.is_some() {
                r.secret = Some(MASK.into());
            }
            if let Some(m) = r.mail.as_mut().filter(|m| m.password.is_some()) {
                m.password = Some(MASK.into());
            }
        }
        s
    }
}

/// `amqp://user:secret@host` → `amqp://user:****@host`.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{MASK}@{host}"),
        None => url.to_string(),
    }
}

/// Validated settings. Each actor takes its own sub-struct by value.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub broker: BrokerSettings,
    pub topology: Topology,
    pub worker: WorkerSettings,
    pub control: ControlSettings,
    pub registry: RegistrySettings,
    pub history: HistorySettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub supervisor: SupervisorSettings,
    pub scheduler: SchedulerSettings,
    pub alerts: AlertSettings,
}

/// `[alerts]`, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertSettings {
    pub routes: Vec<crate::alert::Route>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerSettings {
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub workflow_horizon: Duration,
    pub alert_interval: Duration,
    pub job_metrics: bool,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(3),
            workflow_horizon: Duration::from_secs(24 * 3600),
            alert_interval: Duration::from_secs(5),
            job_metrics: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorSettings {
    pub max_restarts: u32,
    pub within: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySettings {
    pub snapshot_after_bytes: u64,
    /// Also the topology's `registry_max_age`.
    pub max_age: Duration,
}

/// `[history]`: the run history stream and index (ADR 0015).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySettings {
    pub enabled: bool,
    pub path: std::path::PathBuf,
    /// Also the topology's `history_max_age`.
    pub max_age: Duration,
    /// Also the topology's `history_max_bytes`.
    pub max_bytes: u64,
    pub keep_per_job: u32,
    pub batch_max: u32,
}

impl Default for HistorySettings {
    fn default() -> Self {
        history(RawHistory::default()).unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// The first address (what one-broker code and messages name).
    pub url: String,
    /// Every address, tried in this order on each (re)connect; `url` first.
    pub urls: Vec<String>,
    pub tls: TlsSettings,
    /// Bound on connect + handshake of one address.
    pub connect_timeout: Duration,
}

/// Paths of the TLS files (read when connecting).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate and key, both or neither.
    pub client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl TlsSettings {
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client.is_none()
    }
}

/// `broker.connect_timeout` by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl BrokerSettings {
    /// Plain settings for a URL (tests, benchmarks, tools).
    pub fn from_url(url: impl Into<String>) -> Self {
        let url = url.into();
        Self {
            urls: vec![url.clone()],
            url,
            tls: TlsSettings::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    pub pool: String,
    /// Prefetch per consumer and in-flight runs: one number bounds both.
    pub concurrency: u16,
    pub shutdown_deadline: Duration,
    pub consumer_timeout: Duration,
    pub dlq_check_interval: Duration,
    pub dlq_webhook: Option<String>,
    pub run_events: RunEvents,
    pub shell_allow: Vec<String>,
}

/// Which run events a worker publishes (`worker.run_events`); the rule is
/// in [`crate::attempt::RunEvents`].
pub use crate::attempt::RunEvents;

#[derive(Clone, PartialEq, Eq)]
pub struct ControlSettings {
    pub hmac_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for ControlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSettings")
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| MASK))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub enabled: bool,
    /// The address set by flag, environment or file; it must be free.
    /// `None`: the first free port of the process's role range on
    /// 127.0.0.1 ([`default_listen_ports`], ADR 0012).
    pub listen: Option<SocketAddr>,
    /// Base URL of the API the CLI asks (`http.api`).
    pub api: String,
    /// The API's tokens (`http.tokens`).
    pub tokens: Vec<crate::auth::ApiToken>,
    /// `http.require_tokens`: tokens even on loopback.
    pub require_tokens: bool,
}

impl HttpSettings {
    /// Whether the API asks for tokens on `addr`: always beyond loopback
    /// (an API that changes jobs must not be open to a network), and on
    /// loopback when `http.require_tokens` says so.
    pub fn tokens_required(&self, addr: SocketAddr) -> bool {
        self.require_tokens || !addr.ip().is_loopback()
    }
}

/// A process kind, for its default `/metrics` port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `sundial scheduler` and `sundial run`.
    Scheduler,
    /// `sundial worker`.
    Worker,
}

/// Ports tried in order, on 127.0.0.1, when `http.listen` is unset: a
/// scheduler takes 9797 (9798 and 9799 for a second and third one on the
/// host); workers take the first free of 9800–9899, so any number of them
/// start on one host with no flags and a static scrape config can list the
/// ranges (ADR 0012).
pub fn default_listen_ports(role: Role) -> std::ops::RangeInclusive<u16> {
    match role {
        Role::Scheduler => 9797..=9799,
        Role::Worker => 9800..=9899,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

fn err(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

fn check_name(field: &str, v: &str, max: usize) -> Result<(), ValidationError> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            format!("must match [a-z0-9_-]{{1,{max}}}, got \"{v}\""),
        ))
    }
}

/// A duration setting (`"90s"`, `"10m"`), naming `key` when it is not one.
/// Longest alert route name.
const ROUTE_NAME_MAX: usize = 64;
/// Shortest webhook signing secret, in bytes.
const ROUTE_SECRET_MIN: usize = 16;

fn alerts(raw: RawAlerts) -> Result<AlertSettings, ValidationError> {
    use crate::alert::{AlertKind, Route, Target};
    let mut routes: Vec<Route> = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let at = |f: &str| format!("alerts.routes[{i}].{f}");
        let ok_name = !r.name.is_empty()
            && r.name.len() <= ROUTE_NAME_MAX
            && r.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok_name {
            return Err(err(
                &at("name"),
                format!(
                    "must match [a-z0-9_-]{{1,{ROUTE_NAME_MAX}}}, got \"{}\"",
                    r.name
                ),
            ));
        }
        if routes.iter().any(|o| o.name == r.name) {
            return Err(err(&at("name"), format!("\"{}\" names two routes", r.name)));
        }
        let kinds = match r.kinds {
            None => AlertKind::ALL.into_iter().collect(),
            Some(list) => {
                let mut kinds = std::collections::BTreeSet::new();
                for (j, k) in list.iter().enumerate() {
                    let kind = AlertKind::ALL
                        .into_iter()
                        .find(|x| x.as_str() == k)
                        .ok_or_else(|| {
                            err(
                                &at(&format!("kinds[{j}]")),
                                format!("must be failed, late, missed or resolved, got \"{k}\""),
                            )
                        })?;
                    kinds.insert(kind);
                }
                kinds
            }
        };
        let url = |f: &str, u: &str| -> Result<String, ValidationError> {
            let u = u.trim();
            if u.starts_with("http://") || u.starts_with("https://") {
                Ok(u.to_string())
            } else {
                Err(err(&at(f), "must be an http:// or https:// URL"))
            }
        };
        let secret = nonempty(r.secret);
        if secret.as_ref().is_some_and(|s| s.len() < ROUTE_SECRET_MIN) {
            return Err(err(
                &at("secret"),
                format!("at least {ROUTE_SECRET_MIN} bytes"),
            ));
        }
        let target = match (nonempty(r.webhook), nonempty(r.slack), r.mail) {
            (Some(w), None, None) => Target::Webhook {
                url: url("webhook", &w)?,
                secret,
            },
            (None, Some(s), None) => Target::Slack {
                url: url("slack", &s)?,
            },
            (None, None, Some(m)) => Target::Mail(mail(&at, m)?),
            _ => {
                return Err(err(
                    &at("webhook"),
                    "give exactly one of webhook, slack and mail",
                ))
            }
        };
        let dedupe = match nonempty(r.dedupe) {
            Some(d) => duration(&at("dedupe"), &d)?,
            None => Duration::ZERO,
        };
        let max_per_hour = r.max_per_hour.unwrap_or(60);
        if max_per_hour == 0 {
            return Err(err(&at("max_per_hour"), "must be at least 1"));
        }
        routes.push(Route {
            name: r.name,
            kinds,
            job_prefix: nonempty(r.job_prefix),
            labels: r.labels,
            pool: nonempty(r.pool),
            target,
            dedupe,
            max_per_hour,
        });
    }
    Ok(AlertSettings { routes })
}

/// Longest mail address (RFC 5321's path limit).
const MAIL_ADDRESS_MAX: usize = 254;

/// An `[alerts.routes.mail]` table, checked: addresses look like
/// addresses (the SMTP client parses them again), the server has a host.
fn mail(at: &dyn Fn(&str) -> String, m: RawMail) -> Result<crate::alert::Mail, ValidationError> {
    use crate::alert::{Mail, MailTls};
    let address = |f: &str, a: &str| -> Result<String, ValidationError> {
        let a = a.trim();
        let ok = a.len() <= MAIL_ADDRESS_MAX
            && a.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
            && !a
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c));
        if ok {
            Ok(a.to_string())
        } else {
            Err(err(
                &at(f),
                format!("must be a mail address (local@domain), got \"{a}\""),
            ))
        }
    };
    if m.to.is_empty() {
        return Err(err(&at("mail.to"), "name at least one recipient"));
    }
    let to =
        m.to.iter()
            .enumerate()
            .map(|(i, a)| address(&format!("mail.to[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
    let from = address("mail.from", &m.from)?;
    let tls = match nonempty(m.tls).as_deref() {
        None | Some("starttls") => MailTls::StartTls,
        Some("tls") => MailTls::Tls,
        Some("none") => MailTls::None,
        Some(other) => {
            return Err(err(
                &at("mail.tls"),
                format!("must be starttls, tls or none, got \"{other}\""),
            ))
        }
    };
    let server = m.server.trim();
    let bad_port = |p: &str| {
        err(
            &at("mail.server"),
            format!("port must be 1-65535, got \"{p}\""),
        )
    };
    // host, host:port, [v6], [v6]:port
    let (host, port) = match server.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((h, rest)) => (
            h,
            (!rest.is_empty()).then(|| rest.strip_prefix(':').unwrap_or(rest)),
        ),
        None => match server.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            _ => (server, None),
        },
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad_port(p))?,
        None if tls == MailTls::Tls => 465,
        None => 587,
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    if !host_ok {
        return Err(err(
            &at("mail.server"),
            format!("must be host:port, got \"{server}\""),
        ));
    }
    let username = nonempty(m.username);
    let password = nonempty(m.password);
    if username.is_some() != password.is_some() {
        return Err(err(
            &at("mail.username"),
            "username and password go together",
        ));
    }
    if username.is_some() && tls == MailTls::None {
        return Err(err(
            &at("mail.tls"),
            "a password is never sent in clear: use starttls or tls",
        ));
    }
    Ok(Mail {
        to,
        from,
        host: host.to_string(),
        port,
        tls,
        username,
        password,
        ca_file: nonempty(m.ca_file).map(Into::into),
    })
}

fn duration(key: &str, v: &str) -> Result<Duration, ValidationError> {
    v.parse::<HumanDuration>()
        .map(HumanDuration::get)
        .map_err(|e| err(key, e))
}

/// An optional string setting: empty means unset.
fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// One conversion per section, each failing fast with the key it names.
impl TryFrom<RawSettings> for Settings {
    type Error = ValidationError;

    fn try_from(raw: RawSettings) -> Result<Self, Self::Error> {
        let registry = registry(raw.registry)?;
        let history = history(raw.history)?;
        Ok(Settings {
            broker: broker(raw.broker)?,
            topology: topology(raw.topology, registry.max_age, &history)?,
            worker: worker(raw.worker)?,
            control: control(raw.control)?,
            registry,
            history,
            http: http(raw.http)?,
            log: log(raw.log)?,
            supervisor: supervisor(raw.supervisor)?,
            scheduler: scheduler(raw.scheduler)?,
            alerts: alerts(raw.alerts)?,
        })
    }
}

fn broker(raw: RawBroker) -> Result<BrokerSettings, ValidationError> {
    let (key, urls): (&str, Vec<String>) = if raw.urls.iter().all(|u| u.trim().is_empty()) {
        ("broker.url", vec![raw.url.trim().to_string()])
    } else {
        (
            "broker.urls",
            raw.urls
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
        )
    };
    for u in &urls {
        if !(u.starts_with("amqp://") || u.starts_with("amqps://")) {
            return Err(err(
                key,
                format!(
                    "must start with amqp:// or amqps://, got \"{}\"",
                    mask_url_password(u)
                ),
            ));
        }
    }
    let url = urls[0].clone();
    let tls = raw.tls;
    let client = match (nonempty(tls.cert_file), nonempty(tls.key_file)) {
        (Some(c), Some(k)) => Some((c.into(), k.into())),
        (None, None) => None,
        _ => {
            return Err(err(
                "broker.tls",
                "cert_file and key_file go together (mutual TLS needs both)",
            ))
        }
    };
    let tls = TlsSettings {
        ca_file: nonempty(tls.ca_file).map(Into::into),
        client,
    };
    if !tls.is_empty() && urls.iter().any(|u| !u.starts_with("amqps://")) {
        return Err(err(
            "broker.tls",
            format!("TLS files are set but {key} is not amqps://"),
        ));
    }
    let connect_timeout = duration("broker.connect_timeout", &raw.connect_timeout)?;
    if connect_timeout < Duration::from_millis(100) || connect_timeout > Duration::from_secs(600) {
        return Err(err(
            "broker.connect_timeout",
            format!("must be between 100ms and 10m, got {}", raw.connect_timeout),
        ));
    }
    Ok(BrokerSettings {
        url,
        urls,
        tls,
        connect_timeout,
    })
}

fn topology(
    t: RawTopology,
    registry_max_age: Duration,
    history: &HistorySettings,
) -> Result<Topology, ValidationError> {
    let prefix_ok = !t.prefix.is_empty()
        && t.prefix.len() <= 64
        && t.prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !prefix_ok {
        return Err(err(
            "topology.prefix",
            format!("must match [A-Za-z0-9._-]{{1,64}}, got \"{}\"", t.prefix),
        ));
    }
    if !(1..=4096).contains(&t.shards) {
        return Err(err(
            "topology.shards",
            format!("must be 1..=4096, got {}", t.shards),
        ));
    }
    if t.pools.is_empty() {
        return Err(err("topology.pools", "must name at least one pool"));
    }
    for p in &t.pools {
        check_name("topology.pools", p, 64)?;
        if p == crate::topology::CONTROL_DEAD_KEY {
            return Err(err("topology.pools", "\"control\" is reserved"));
        }
    }
    let mut retry_tiers = Vec::with_capacity(t.retry_tiers.len());
    for s in &t.retry_tiers {
        let d: HumanDuration = s
            .parse()
            .map_err(|e: String| err("topology.retry_tiers", e))?;
        if d.get() < Duration::from_secs(1) || d.get().subsec_nanos() != 0 {
            return Err(err(
                "topology.retry_tiers",
                format!("each tier must be a whole number of seconds ≥ 1s, got \"{s}\""),
            ));
        }
        if !retry_tiers.contains(&d) {
            retry_tiers.push(d);
        }
    }
    if !(1..=1000).contains(&t.delivery_limit) {
        return Err(err(
            "topology.delivery_limit",
            format!("must be 1..=1000, got {}", t.delivery_limit),
        ));
    }
    if !(1..=9).contains(&t.replicas) {
        return Err(err(
            "topology.replicas",
            format!(
                "must be 1..=9 (members of each quorum queue and stream), got {}",
                t.replicas
            ),
        ));
    }
    Ok(Topology {
        replicas: t.replicas,
        prefix: t.prefix,
        shards: t.shards,
        pools: t.pools,
        retry_tiers,
        delivery_limit: t.delivery_limit,
        registry_max_age,
        history_max_age: history.max_age,
        history_max_bytes: history.max_bytes,
    })
}

fn history(h: RawHistory) -> Result<HistorySettings, ValidationError> {
    let max_age = duration("history.max_age", &h.max_age)?;
    if max_age < Duration::from_secs(60) {
        return Err(err("history.max_age", "must be at least 1m"));
    }
    if h.max_bytes < 1024 * 1024 {
        return Err(err(
            "history.max_bytes",
            format!("must be at least 1048576 (1 MiB), got {}", h.max_bytes),
        ));
    }
    if h.path.trim().is_empty() && h.enabled {
        return Err(err(
            "history.path",
            "must name the index file (or set history.enabled = false)",
        ));
    }
    if h.keep_per_job == 0 {
        return Err(err("history.keep_per_job", "must be at least 1"));
    }
    if !(1..=10_000).contains(&h.batch_max) {
        return Err(err(
            "history.batch_max",
            format!("must be 1..=10000, got {}", h.batch_max),
        ));
    }
    Ok(HistorySettings {
        enabled: h.enabled,
        path: h.path.trim().into(),
        max_age,
        max_bytes: h.max_bytes,
        keep_per_job: h.keep_per_job,
        batch_max: h.batch_max,
    })
}

fn registry(r: RawRegistry) -> Result<RegistrySettings, ValidationError> {
    let max_age = duration("registry.max_age", &r.max_age)?;
    if max_age < Duration::from_secs(3600) {
        return Err(err("registry.max_age", "must be at least 1h"));
    }
    if r.snapshot_after_bytes < 1024 {
        return Err(err(
            "registry.snapshot_after_bytes",
            format!("must be at least 1024, got {}", r.snapshot_after_bytes),
        ));
    }
    Ok(RegistrySettings {
        snapshot_after_bytes: r.snapshot_after_bytes,
        max_age,
    })
}

fn worker(w: RawWorker) -> Result<WorkerSettings, ValidationError> {
    check_name("worker.pool", &w.pool, 64)?;
    let concurrency = u16::try_from(w.concurrency)
        .ok()
        .filter(|c| (1..=10_000).contains(c))
        .ok_or_else(|| {
            err(
                "worker.concurrency",
                format!("must be 1..=10000, got {}", w.concurrency),
            )
        })?;
    let dlq_check_interval = duration("worker.dlq_check_interval", &w.dlq_check_interval)?;
    if dlq_check_interval < Duration::from_secs(1) {
        return Err(err("worker.dlq_check_interval", "must be at least 1s"));
    }
    let dlq_webhook = nonempty(w.dlq_webhook);
    if let Some(u) = &dlq_webhook {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(err(
                "worker.dlq_webhook",
                format!("must be an http:// or https:// URL, got \"{u}\""),
            ));
        }
    }
    let run_events = match w.run_events.as_str() {
        "all" => RunEvents::All,
        "outcomes" => RunEvents::Outcomes,
        "failures" => RunEvents::Failures,
        other => {
            return Err(err(
                "worker.run_events",
                format!("must be all, outcomes or failures, got \"{other}\""),
            ))
        }
    };
    if let Some(bad) = w.shell.allow.iter().find(|p| !p.starts_with('/')) {
        return Err(err(
            "worker.shell.allow",
            format!("entries must be absolute paths, got \"{bad}\""),
        ));
    }
    Ok(WorkerSettings {
        pool: w.pool,
        concurrency,
        shutdown_deadline: duration("worker.shutdown_deadline", &w.shutdown_deadline)?,
        consumer_timeout: duration("worker.consumer_timeout", &w.consumer_timeout)?,
        dlq_check_interval,
        dlq_webhook,
        run_events,
        shell_allow: w.shell.allow,
    })
}

fn control(c: RawControl) -> Result<ControlSettings, ValidationError> {
    let hmac_key = match c.hmac_key {
        Some(k) if k.len() < 16 => {
            return Err(err("control.hmac_key", "must be at least 16 bytes"));
        }
        k => k.map(String::into_bytes),
    };
    Ok(ControlSettings { hmac_key })
}

fn http(h: RawHttp) -> Result<HttpSettings, ValidationError> {
    let listen = nonempty(h.listen)
        .map(|l| {
            l.parse::<SocketAddr>().map_err(|e| {
                err(
                    "http.listen",
                    format!("must be host:port such as 127.0.0.1:9797 ({e})"),
                )
            })
        })
        .transpose()?;
    let api = h.api.trim().trim_end_matches('/').to_string();
    if !(api.starts_with("http://") || api.starts_with("https://")) {
        return Err(err(
            "http.api",
            format!("must be an http:// or https:// URL, got \"{}\"", h.api),
        ));
    }
    let mut tokens = Vec::with_capacity(h.tokens.len());
    for (i, t) in h.tokens.into_iter().enumerate() {
        let role = match t.role.as_str() {
            "read" => crate::auth::TokenRole::Read,
            "admin" => crate::auth::TokenRole::Admin,
            other => {
                return Err(err(
                    &format!("http.tokens[{i}].role"),
                    format!("must be read or admin, got \"{other}\""),
                ))
            }
        };
        let sha256 = crate::auth::parse_hash(&t.sha256).ok_or_else(|| {
            err(
                &format!("http.tokens[{i}].sha256"),
                "must be 64 hex digits: the SHA-256 of the token (printf %s \"$TOKEN\" | sha256sum), never the token itself",
            )
        })?;
        tokens.push(crate::auth::ApiToken {
            name: t.name,
            role,
            sha256,
        });
    }
    Ok(HttpSettings {
        enabled: h.enabled,
        listen,
        api,
        tokens,
        require_tokens: h.require_tokens,
    })
}

fn log(l: RawLog) -> Result<LogSettings, ValidationError> {
    let format = match l.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(err(
                "log.format",
                format!("must be text or json, got \"{other}\""),
            ))
        }
    };
    Ok(LogSettings {
        format,
        level: l.level,
    })
}

fn supervisor(s: RawSupervisor) -> Result<SupervisorSettings, ValidationError> {
    let within = duration("supervisor.within", &s.within)?;
    if within < Duration::from_secs(1) {
        return Err(err("supervisor.within", "must be at least 1s"));
    }
    Ok(SupervisorSettings {
        max_restarts: s.max_restarts,
        within,
    })
}

fn scheduler(s: RawScheduler) -> Result<SchedulerSettings, ValidationError> {
    let heartbeat_interval = duration("scheduler.heartbeat_interval", &s.heartbeat_interval)?;
    let heartbeat_timeout = duration("scheduler.heartbeat_timeout", &s.heartbeat_timeout)?;
    if heartbeat_interval < Duration::from_millis(100) {
        return Err(err(
            "scheduler.heartbeat_interval",
            "must be at least 100ms",
        ));
    }
    if heartbeat_timeout < heartbeat_interval * 2 {
        return Err(err(
            "scheduler.heartbeat_timeout",
            "must be at least twice scheduler.heartbeat_interval",
        ));
    }
    let workflow_horizon = duration("scheduler.workflow_horizon", &s.workflow_horizon)?;
    if !(Duration::from_secs(60)..=Duration::from_secs(30 * 24 * 3600)).contains(&workflow_horizon)
    {
        return Err(err(
            "scheduler.workflow_horizon",
            "must be between 1m and 30d",
        ));
    }
    let alert_interval = duration("scheduler.alert_interval", &s.alert_interval)?;
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&alert_interval) {
        return Err(err(
            "scheduler.alert_interval",
            "must be between 1s and 10m",
        ));
    }
    Ok(SchedulerSettings {
        heartbeat_interval,
        heartbeat_timeout,
        workflow_horizon,
        alert_interval,
        job_metrics: s.job_metrics,
    })
}
