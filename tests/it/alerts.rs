//! Alerts end to end (issue 25): a scheduler judges its jobs' occurrences
//! from the history stream and records what it raises there; `sundial
//! alerts` reads them back.

use serde_json::Value;

use crate::{
    fires::wait_for_consumers,
    util::{
        apply_jobs, free_addr, http_get, poll_until, stderr, stdout, sundial, topology_apply,
        Daemon, HttpSink, SchedulerProcess, Vhost, TEST_ENV,
    },
};

/// The webhook route's signing secret.
const SECRET: &str = "route-secret-0123456789";

/// `sundial alerts --json` (with more flags) as JSON.
fn alerts(v: &Vhost, extra: &[&str]) -> Vec<Value> {
    let out = sundial()
        .args(["alerts", "--since", "10m", "--json"])
        .args(extra)
        .args(["--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("sundial alerts runs");
    assert!(out.status.success(), "{}", stderr(&out));
    match serde_json::from_str(&stdout(&out)) {
        Ok(Value::Array(a)) => a,
        other => panic!("not a JSON array: {other:?}"),
    }
}

fn of<'a>(all: &'a [Value], job: &str, kind: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|a| a["alert"]["job_id"] == job && a["alert"]["kind"] == kind)
        .collect()
}

/// A job that fails raises `failed` per occurrence, and `resolved` once it
/// succeeds again; a job slower than its `sla` raises `late`; a job that
/// runs well raises nothing. Routes: a signed webhook takes flaky's
/// failures (deduped to one per hour) and its resolution; a Slack route
/// takes the team's late ones as text (capped at one an hour); each names
/// the run's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_late_and_resolved_occurrences_raise_alerts_once() {
    let v = Vhost::new("alerts");
    let work = std::env::temp_dir().join(format!("{}-work", v.name));
    std::fs::create_dir_all(&work).expect("work dir");
    let fixed = work.join("fixed");
    let mut webhook = HttpSink::start(vec![]).await;
    let mut slack = HttpSink::start(vec![]).await;
    let config = work.join("sundial.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[alerts.routes]]
name = "flaky-hook"
kinds = ["failed", "resolved"]
job_prefix = "flaky"
webhook = "{}/hook"
secret = "{SECRET}"
dedupe = "1h"

[[alerts.routes]]
name = "ops-chat"
kinds = ["late"]
labels = {{ team = "ops" }}
slack = "{}/services/T0/B0/x"
max_per_hour = 1
"#,
            webhook.url, slack.url
        ),
    )
    .expect("settings file");
    let config_arg = config.display().to_string();
    topology_apply(&v);
    let db = work.join("h.db").display().to_string();
    let addr = free_addr();
    let _s = Daemon::spawn(
        &v,
        &["--config", &config_arg, "scheduler", "--node", "al1"],
        "al1",
        &[
            ("SUNDIAL__SCHEDULER__ALERT_INTERVAL", "1s"),
            ("SUNDIAL__HTTP__API", "http://dash.example:9797"),
            ("SUNDIAL__HISTORY__ENABLED", "true"),
            ("SUNDIAL__HISTORY__PATH", &db),
            ("SUNDIAL__HTTP__ENABLED", "true"),
            ("SUNDIAL__HTTP__LISTEN", &addr),
        ],
    );
    let _w = Daemon::worker(&v, "al-w1", &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")]);
    wait_for_consumers(&v, 1).await;
    apply_jobs(
        &v,
        &format!(
            r#"[[jobs]]
id = "flaky"
schedule = "*/2 * * * * *"
retry = {{ max_attempts = 1 }}
executor = {{ type = "shell", command = ["/bin/sh", "-c", "test -e {} || exit 3"] }}

[[jobs]]
id = "slow"
schedule = "*/2 * * * * *"
sla = "1s"
labels = {{ team = "ops" }}
executor = {{ type = "shell", command = ["/bin/sh", "-c", "sleep 1.5"] }}

[[jobs]]
id = "fine"
schedule = "*/2 * * * * *"
sla = "5s"
executor = {{ type = "noop" }}
"#,
            fixed.display()
        ),
    );
    let last = std::cell::RefCell::new(Vec::new());
    let failed = poll_until(
        std::time::Duration::from_secs(60),
        "two failed alerts of flaky and a late one of slow",
        || {
            let all = alerts(&v, &[]);
            last.replace(all.clone());
            let f: Vec<String> = of(&all, "flaky", "failed")
                .iter()
                .map(|a| a["alert"]["id"].as_str().unwrap_or_default().to_string())
                .collect();
            (f.len() >= 2 && !of(&all, "slow", "late").is_empty()).then_some((f, all))
        },
        || format!("{:?}", last.borrow()),
    );
    let (failed, all) = failed;
    for a in of(&all, "flaky", "failed") {
        assert!(
            a["alert"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("dead: ") && r.contains("exit status: 3")),
            "{a}"
        );
        assert!(a["resolved_by"].is_null(), "still open: {a}");
    }
    let late = of(&all, "slow", "late");
    assert!(
        late[0]["alert"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sla (1s)")),
        "{}",
        late[0]
    );
    assert!(
        all.iter().all(|a| a["alert"]["job_id"] != "fine"),
        "a job that runs well raises nothing: {all:?}"
    );

    // The webhook: flaky's first failure, signed, with its id and a link.
    let (head, body) = webhook.next().await;
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post /hook "), "{head}");
    let sig = format!(
        "x-sundial-signature: sha256={}",
        sundial_core::sign::sign_body(SECRET.as_bytes(), body.as_bytes())
    );
    assert!(
        head.contains(&sig),
        "signed with the route's secret: {head}"
    );
    let sent: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(sent["alert"]["kind"], "failed", "{sent}");
    assert_eq!(sent["alert"]["job_id"], "flaky");
    let first = sent["alert"]["id"].as_str().expect("an id").to_string();
    assert!(
        head.contains(&format!(
            "x-sundial-alert-id: {}",
            first.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(
        sent["link"]
            .as_str()
            .is_some_and(|l| l.starts_with("http://dash.example:9797/#/run/flaky@")),
        "{sent}"
    );
    // Slack: a readable text naming the job, why, and the run's page.
    let (_, text) = slack.next().await;
    let text: Value = serde_json::from_str(&text).expect("a JSON body");
    let text = text["text"].as_str().expect("text").to_string();
    assert!(
        text.starts_with("Sundial: slow is late — slow@")
            && text.contains("sla (1s)")
            && text.contains("http://dash.example:9797/#/run/slow@"),
        "{text}"
    );

    // Fixed: the next success resolves every open alert of flaky.
    std::fs::write(&fixed, b"").expect("fix it");
    let resolved = poll_until(
        std::time::Duration::from_secs(60),
        "flaky resolved",
        || {
            let all = alerts(&v, &[]);
            last.replace(all.clone());
            of(&all, "flaky", "resolved").first().map(|r| (*r).clone())
        },
        || format!("{:?}", last.borrow()),
    );
    let resolves: Vec<String> = resolved["alert"]["resolves"]
        .as_array()
        .expect("resolves")
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    for f in &failed {
        assert!(resolves.contains(f), "{f} is resolved by {resolved}");
    }
    // The webhook's next request is the resolution: the other failures
    // were held back by the route's dedupe window, and say so.
    let (_, body) = webhook.next().await;
    let sent: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(sent["alert"]["kind"], "resolved", "{sent}");
    let all = alerts(&v, &[]);
    let outcome = |a: &Value| -> Vec<String> {
        a["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "{}:{}",
                    d["route"].as_str().unwrap_or(""),
                    d["outcome"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    for a in of(&all, "flaky", "failed") {
        let want = if a["alert"]["id"] == first.as_str() {
            "flaky-hook:sent"
        } else {
            "flaky-hook:deduped"
        };
        assert_eq!(outcome(a), [want], "{a}");
    }
    // The chat route's cap: one late alert an hour is sent, the others
    // capped (or not judged yet).
    let late: Vec<Vec<String>> = of(&all, "slow", "late")
        .iter()
        .map(|a| outcome(a))
        .collect();
    assert_eq!(
        late.iter()
            .filter(|o| o.as_slice() == ["ops-chat:sent"])
            .count(),
        1,
        "{late:?}"
    );
    assert!(
        late.iter().all(|o| o.is_empty()
            || o.as_slice() == ["ops-chat:sent"]
            || o.as_slice() == ["ops-chat:capped"]),
        "{late:?}"
    );

    // --open: nothing of flaky is open any more (slow keeps being late).
    let open = alerts(&v, &["--open"]);
    assert!(of(&open, "flaky", "failed").is_empty(), "{open:?}");
    assert!(of(&open, "flaky", "resolved").is_empty(), "{open:?}");
    assert!(!of(&open, "slow", "late").is_empty(), "{open:?}");

    // The API answers the same from the node's history index: flaky's
    // failures closed by its resolution, newest first; open=true keeps
    // slow's and none of flaky's.
    let resolved_id = resolved["alert"]["id"].as_str().expect("id").to_string();
    let listed = poll_until(
        std::time::Duration::from_secs(30),
        "the API listing flaky's resolution",
        || {
            let (status, body) = http_get(&addr, "/api/v1/alerts?job=flaky&since=10m")?;
            let list: Value = serde_json::from_str(&body).ok()?;
            let alerts = list["alerts"].as_array()?.clone();
            (status == 200
                && alerts
                    .iter()
                    .any(|a| a["alert"]["id"] == resolved_id.as_str()))
            .then_some(alerts)
        },
        String::new,
    );
    assert!(
        listed.iter().all(|a| a["alert"]["job_id"] == "flaky"),
        "{listed:?}"
    );
    let ats: Vec<&str> = listed.iter().filter_map(|a| a["at"].as_str()).collect();
    assert!(
        ats.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {ats:?}"
    );
    for f in &failed {
        let row = listed
            .iter()
            .find(|a| a["alert"]["id"] == f.as_str())
            .unwrap_or_else(|| panic!("{f} listed: {listed:?}"));
        assert_eq!(row["resolved_by"], resolved_id.as_str(), "{row}");
    }
    let first_row = listed
        .iter()
        .find(|a| a["alert"]["id"] == first.as_str())
        .expect("the first failure");
    assert_eq!(first_row["deliveries"][0]["outcome"], "sent", "{first_row}");
    let (status, body) = http_get(&addr, "/api/v1/alerts?open=true&since=10m").expect("answers");
    assert_eq!(status, 200, "{body}");
    let open: Value = serde_json::from_str(&body).expect("JSON");
    let open = open["alerts"].as_array().expect("alerts");
    assert!(
        open.iter().all(|a| a["alert"]["job_id"] != "flaky"),
        "{open:?}"
    );
    assert!(
        open.iter().any(|a| a["alert"]["job_id"] == "slow"),
        "{open:?}"
    );
    let (status, body) = http_get(&addr, "/api/v1/alerts?open=maybe").expect("answers");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#""field":"open""#), "{body}");

    // Per-job series, counted by the owner.
    let (_, metrics) = http_get(&addr, "/metrics").expect("metrics");
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    for (series, at_least) in [
        (
            r#"sundial_occurrences_total{job="flaky",state="dead"}"#,
            2.0,
        ),
        (
            r#"sundial_occurrences_total{job="flaky",state="succeeded"}"#,
            1.0,
        ),
        (r#"sundial_occurrences_total{job="slow",state="late"}"#, 1.0),
        (
            r#"sundial_occurrences_total{job="fine",state="succeeded"}"#,
            1.0,
        ),
    ] {
        assert!(
            value(series) >= at_least,
            "{series} >= {at_least}:\n{metrics}"
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// An alert raised while no route took it is sent by the next scheduler
/// that owns the job with a route that takes it: what was sent is in the
/// history (`deliveries`), what was not is sent by whoever owns the job
/// now (here: a restart with a route; a takeover is the same reading).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_no_record_says_went_out_is_sent_by_the_next_owner() {
    let v = Vhost::new("alerts-owner");
    let work = std::env::temp_dir().join(format!("{}-work", v.name));
    std::fs::create_dir_all(&work).expect("work dir");
    let interval = [("SUNDIAL__SCHEDULER__ALERT_INTERVAL", "1s")];
    let first = SchedulerProcess::start_with_env(&v, "alo1", &interval);
    let _w = Daemon::worker(&v, "alo-w1", &[]);
    wait_for_consumers(&v, 1).await;
    // One occurrence only: every second within [t, t + 1s).
    let t =
        chrono::DurationRound::duration_trunc(chrono::Utc::now(), chrono::TimeDelta::seconds(1))
            .expect("a whole second")
            + chrono::TimeDelta::seconds(3);
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    apply_jobs(
        &v,
        &format!(
            r#"[[jobs]]
id = "once"
schedule = "* * * * * *"
start_at = "{}"
end_at = "{}"
retry = {{ max_attempts = 1 }}
executor = {{ type = "shell", command = ["/bin/false"] }}
"#,
            stamp(t),
            stamp(t + chrono::TimeDelta::seconds(1))
        ),
    );
    let failed = poll_until(
        std::time::Duration::from_secs(60),
        "a failed alert",
        || {
            let all = alerts(&v, &[]);
            of(&all, "once", "failed")
                .first()
                .map(|a| a["alert"]["id"].as_str().unwrap_or_default().to_string())
        },
        String::new,
    );
    drop(first);

    let mut webhook = HttpSink::start(vec![]).await;
    let config = work.join("sundial.toml");
    std::fs::write(
        &config,
        format!(
            "[[alerts.routes]]\nname = \"hook\"\nkinds = [\"failed\"]\nwebhook = \"{}/hook\"\n",
            webhook.url
        ),
    )
    .expect("settings file");
    let config_arg = config.display().to_string();
    let _second = Daemon::spawn(
        &v,
        &["--config", &config_arg, "scheduler", "--node", "alo2"],
        "alo2",
        &interval,
    );
    // The one alert there is, raised by the first scheduler, sent by the
    // second (which raises nothing new: the job had one occurrence).
    let (_, body) = webhook.next().await;
    let sent: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(sent["alert"]["id"], failed.as_str(), "{sent}");
    assert_eq!(sent["node"], "alo1", "raised by the first: {sent}");
    let _ = std::fs::remove_dir_all(&work);
}

/// A real SMTP server for mail routes: Python's aiosmtpd (`.ci/run`
/// installs it), requiring STARTTLS with a certificate of a CA made here,
/// writing what it takes to a Maildir.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    maildir: std::path::PathBuf,
    ca: std::path::PathBuf,
}

impl SmtpSink {
    fn start(dir: &std::path::Path) -> Self {
        let ready = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ready,
            "the mail test needs Python's aiosmtpd: `python3 -m pip install aiosmtpd` (.ci/run does)"
        );
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server certificate");
        let write = |name: &str, pem: String| {
            let p = dir.join(name);
            std::fs::write(&p, pem).expect("PEM file");
            p
        };
        let ca_file = write("ca.pem", ca.pem());
        let cert_file = write("smtp.pem", cert.pem());
        let key_file = write("smtp.key", key.serialize_pem());
        let maildir = dir.join("maildir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.join("smtp.log")).expect("log");
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .arg("--tlscert")
            .arg(&cert_file)
            .arg("--tlskey")
            .arg(&key_file)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("aiosmtpd starts");
        poll_until(
            std::time::Duration::from_secs(20),
            "aiosmtpd listening",
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
            String::new,
        );
        Self {
            child,
            port,
            maildir,
            ca: ca_file,
        }
    }

    /// The messages taken so far.
    fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.maildir.join("new"))
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect();
        out.sort();
        out
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mail route sends a failed occurrence over SMTP with STARTTLS (the
/// server refuses mail before it) to a real server: the message names the
/// job, the fire id, the reason and the run's page, and carries the
/// alert's id; the route's dedupe window holds back the next failures. A
/// webhook route to nowhere takes the same alerts: it holds up nothing,
/// and `sundial status` shows it failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_route_sends_over_starttls_to_a_real_smtp_server() {
    let v = Vhost::new("alerts-mail");
    let work = std::env::temp_dir().join(format!("{}-work", v.name));
    std::fs::create_dir_all(&work).expect("work dir");
    let smtp = SmtpSink::start(&work);
    let config = work.join("sundial.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[alerts.routes]]
name = "oncall-mail"
kinds = ["failed"]
dedupe = "1h"

[alerts.routes.mail]
to = ["oncall@example.com", "ops@example.com"]
from = "sundial@example.com"
server = "localhost:{}"
ca_file = "{}"

[[alerts.routes]]
name = "nowhere-hook"
kinds = ["failed"]
webhook = "http://127.0.0.1:9/hook"
max_per_hour = 1
"#,
            smtp.port,
            smtp.ca.display()
        ),
    )
    .expect("settings file");
    let config_arg = config.display().to_string();
    topology_apply(&v);
    let addr = free_addr();
    let _s = Daemon::spawn(
        &v,
        &["--config", &config_arg, "scheduler", "--node", "am1"],
        "am1",
        &[
            ("SUNDIAL__SCHEDULER__ALERT_INTERVAL", "1s"),
            ("SUNDIAL__HTTP__API", "http://dash.example:9797"),
            ("SUNDIAL__SCHEDULER__JOB_METRICS", "false"),
            ("SUNDIAL__HTTP__ENABLED", "true"),
            ("SUNDIAL__HTTP__LISTEN", &addr),
        ],
    );
    let _w = Daemon::worker(&v, "am-w1", &[]);
    wait_for_consumers(&v, 1).await;
    apply_jobs(
        &v,
        r#"[[jobs]]
id = "nightly-report"
schedule = "*/2 * * * * *"
retry = { max_attempts = 1 }
executor = { type = "shell", command = ["/bin/false"] }
"#,
    );
    let mail = poll_until(
        std::time::Duration::from_secs(60),
        "a mail in the SMTP server's Maildir",
        || smtp.messages().into_iter().next(),
        || {
            std::fs::read_to_string(work.join("smtp.log")).unwrap_or_default()
                + &std::fs::read_to_string(&_s.log).unwrap_or_default()
        },
    );
    let has = |s: &str| assert!(mail.contains(s), "{s:?} in the mail:\n{mail}");
    has("Subject: [Sundial] nightly-report failed");
    has("From: sundial@example.com");
    has("To: oncall@example.com, ops@example.com");
    has("X-RcptTo: oncall@example.com, ops@example.com");
    has("Job:       nightly-report");
    has("Fire id:   nightly-report@");
    has("Reason:    dead: ");
    has("Run:       http://dash.example:9797/#/run/nightly-report@");
    let id = mail
        .lines()
        .find_map(|l| l.strip_prefix("X-Sundial-Alert-Id: "))
        .expect("the alert id header")
        .trim()
        .to_string();
    assert!(id.starts_with("failed:nightly-report@"), "{id}");
    // The history says it went out; a later failure was deduped, not mailed.
    let all = poll_until(
        std::time::Duration::from_secs(30),
        "a second failure, deduped",
        || {
            let all = alerts(&v, &[]);
            let deduped = of(&all, "nightly-report", "failed").iter().any(|a| {
                a["deliveries"][0]["outcome"] == "deduped"
                    && a["deliveries"][0]["route"] == "oncall-mail"
            });
            deduped.then_some(all)
        },
        String::new,
    );
    let sent: Vec<&Value> = of(&all, "nightly-report", "failed")
        .into_iter()
        .filter(|a| a["deliveries"][0]["outcome"] == "sent")
        .collect();
    assert_eq!(sent.len(), 1, "{all:?}");
    assert_eq!(sent[0]["alert"]["id"], id.as_str());
    assert_eq!(smtp.messages().len(), 1, "one mail, the rest deduped");
    // scheduler.job_metrics = false: no per-job series.
    let (_, metrics) = http_get(&addr, "/metrics").expect("metrics");
    assert!(
        metrics.contains("sundial_alerts_total") && !metrics.contains("sundial_occurrences_total"),
        "{metrics}"
    );
    // The webhook to nowhere gave up after its tries; status says so.
    let status = poll_until(
        std::time::Duration::from_secs(60),
        "status showing the failing route",
        || {
            let out = sundial()
                .args(["status", "--broker", &v.url()])
                .envs(TEST_ENV.iter().copied())
                .output()
                .ok()?;
            let text = stdout(&out);
            text.lines()
                .any(|l| l.starts_with("  nowhere-hook") && l.contains("FAILING (1 in a row)"))
                .then_some(text)
        },
        String::new,
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("  oncall-mail") && l.ends_with(" ok")),
        "{status}"
    );
    drop(smtp);
    let _ = std::fs::remove_dir_all(&work);
}
