//! Settings validation: a bad value fails with its key name; secrets masked.

use sundial_core::settings::{
    default_listen_ports, mask_url_password, RawSettings, Role, Settings,
};

#[test]
fn defaults_are_valid() {
    let s = Settings::try_from(RawSettings::default()).expect("defaults validate");
    assert_eq!(s.topology.prefix, "sundial");
    assert_eq!(s.topology.shards, 64);
    assert_eq!(s.broker.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
    // One broker address unless a list is given.
    assert_eq!(s.broker.urls, vec![s.broker.url.clone()]);
    // Unset: each role takes the first free port of its range (ADR 0012).
    assert_eq!(s.http.listen, None);
    assert_eq!(
        default_listen_ports(Role::Scheduler),
        9797..=9799,
        "a scheduler's default port stays where scrape configs expect it"
    );
    assert!(!default_listen_ports(Role::Worker).contains(&9797));
}

#[test]
fn bad_values_name_their_key() {
    let check = |f: &dyn Fn(&mut RawSettings), key: &str| {
        let mut raw = RawSettings::default();
        f(&mut raw);
        let e = Settings::try_from(raw).expect_err("must be invalid");
        assert_eq!(e.field, key, "{e}");
    };
    check(&|r| r.broker.url = "http://x".into(), "broker.url");
    check(
        &|r| r.broker.tls.ca_file = Some("/etc/ca.pem".into()),
        "broker.tls",
    );
    check(
        &|r| {
            r.broker.url = "amqps://h:5671/v".into();
            r.broker.tls.cert_file = Some("/etc/client.pem".into());
        },
        "broker.tls",
    );
    check(&|r| r.supervisor.within = "0s".into(), "supervisor.within");
    check(
        &|r| r.worker.dlq_webhook = Some("ftp://x".into()),
        "worker.dlq_webhook",
    );
    check(&|r| r.topology.shards = 0, "topology.shards");
    check(&|r| r.topology.prefix = "a b".into(), "topology.prefix");
    check(
        &|r| r.topology.pools = vec!["control".into()],
        "topology.pools",
    );
    check(
        &|r| r.topology.retry_tiers = vec!["fast".into()],
        "topology.retry_tiers",
    );
    check(&|r| r.worker.concurrency = 0, "worker.concurrency");
    check(
        &|r| r.worker.shell.allow = vec!["backup.sh".into()],
        "worker.shell.allow",
    );
    check(&|r| r.http.listen = Some("nowhere".into()), "http.listen");
    check(&|r| r.log.format = "xml".into(), "log.format");
    check(
        &|r| r.broker.urls = vec!["amqp://a/%2f".into(), "http://b".into()],
        "broker.urls",
    );
    check(
        &|r| r.worker.run_events = "some".into(),
        "worker.run_events",
    );
    check(
        &|r| r.scheduler.heartbeat_interval = "10ms".into(),
        "scheduler.heartbeat_interval",
    );
    check(
        &|r| r.scheduler.heartbeat_timeout = "1s".into(),
        "scheduler.heartbeat_timeout",
    );
    check(
        &|r| r.control.hmac_key = Some("short".into()),
        "control.hmac_key",
    );
}

#[test]
fn secrets_are_masked() {
    assert_eq!(
        mask_url_password("amqp://u:p%40ss@h:5672/v"),
        "amqp://u:****@h:5672/v"
    );
    assert_eq!(mask_url_password("amqp://h:5672"), "amqp://h:5672");
    let mut raw = RawSettings::default();
    raw.control.hmac_key = Some("0123456789abcdef0123".into());
    let m = raw.masked();
    assert_eq!(m.control.hmac_key.as_deref(), Some("****"));
    assert_eq!(m.broker.url, "amqp://guest:****@127.0.0.1:5672/%2f");
    let s = Settings::try_from(raw).expect("valid");
    assert!(!format!("{:?}", s.control).contains("0123"));
}

#[test]
fn run_event_modes_keep_what_trackers_and_operators_need() {
    use sundial_core::settings::RunEvents;
    let parse = |mode: &str| {
        let mut raw = RawSettings::default();
        raw.worker.run_events = mode.into();
        Settings::try_from(raw)
            .unwrap_or_else(|e| panic!("{mode}: {e}"))
            .worker
            .run_events
    };
    assert_eq!(parse("all"), RunEvents::All);
    assert_eq!(parse("outcomes"), RunEvents::Outcomes);
    assert_eq!(parse("failures"), RunEvents::Failures);
    assert_eq!(
        Settings::try_from(RawSettings::default())
            .expect("defaults")
            .worker
            .run_events,
        RunEvents::Failures,
        "history records every run, so the events exchange carries failures by default"
    );
    use sundial_core::protocol::run::RunKind as K;
    // (mode, manual) → (started, succeeded) published on their own.
    let table = [
        (RunEvents::All, false, (true, true)),
        (RunEvents::Outcomes, false, (false, true)),
        (RunEvents::Failures, false, (false, false)),
        // A manual trigger is watched by whoever pressed it.
        (RunEvents::Outcomes, true, (true, true)),
        (RunEvents::Failures, true, (true, true)),
    ];
    for (mode, manual, want) in table {
        let got = (
            mode.publishes(K::Started, manual),
            mode.publishes(K::Succeeded, manual),
        );
        assert_eq!(got, want, "{mode:?} manual={manual}");
        for k in [K::Failed, K::Retrying, K::Dead, K::Skipped] {
            assert!(mode.publishes(k, manual), "{mode:?} always publishes {k:?}");
        }
    }
}

#[test]
fn alert_routes_are_checked_and_their_secrets_masked() {
    use sundial_core::{
        alert::{AlertKind, Target},
        settings::RawRoute,
    };
    let route = |name: &str| RawRoute {
        name: name.into(),
        kinds: Some(vec!["failed".into(), "resolved".into()]),
        job_prefix: Some("pay-".into()),
        labels: [("team".to_string(), "payments".to_string())].into(),
        pool: None,
        webhook: Some("https://hooks.example/sundial".into()),
        slack: None,
        mail: None,
        secret: Some("0123456789abcdef0123".into()),
        dedupe: Some("10m".into()),
        max_per_hour: Some(30),
    };
    let mut raw = RawSettings::default();
    raw.alerts.routes = vec![
        route("payments"),
        RawRoute {
            webhook: None,
            slack: Some("https://hooks.slack.example/services/T/B/secret".into()),
            secret: None,
            kinds: None,
            ..route("ops")
        },
    ];
    let m = raw.masked();
    assert_eq!(m.alerts.routes[0].secret.as_deref(), Some("****"));
    assert_eq!(m.alerts.routes[1].slack.as_deref(), Some("****"));
    let s = Settings::try_from(raw.clone()).expect("valid routes");
    let r = &s.alerts.routes[0];
    assert_eq!(r.kinds.len(), 2);
    assert!(matches!(
        &r.target,
        Target::Webhook {
            secret: Some(_),
            ..
        }
    ));
    assert_eq!(r.dedupe, std::time::Duration::from_secs(600));
    assert_eq!(
        s.alerts.routes[1].kinds.len(),
        AlertKind::ALL.len(),
        "no kinds: all"
    );
    // Each mistake names its key.
    let bad = |f: &dyn Fn(&mut RawRoute), key: &str| {
        let mut raw = RawSettings::default();
        let mut r = route("payments");
        f(&mut r);
        raw.alerts.routes = vec![r];
        let e = Settings::try_from(raw).expect_err("must be invalid");
        assert_eq!(e.field, key, "{e}");
    };
    bad(&|r| r.name = "Pay Ments".into(), "alerts.routes[0].name");
    bad(
        &|r| r.kinds = Some(vec!["broken".into()]),
        "alerts.routes[0].kinds[0]",
    );
    bad(
        &|r| r.slack = Some("https://x".into()),
        "alerts.routes[0].webhook",
    );
    bad(&|r| r.webhook = None, "alerts.routes[0].webhook");
    bad(
        &|r| r.webhook = Some("ftp://x".into()),
        "alerts.routes[0].webhook",
    );
    bad(
        &|r| r.secret = Some("short".into()),
        "alerts.routes[0].secret",
    );
    bad(
        &|r| r.dedupe = Some("soon".into()),
        "alerts.routes[0].dedupe",
    );
    bad(
        &|r| r.max_per_hour = Some(0),
        "alerts.routes[0].max_per_hour",
    );
    let mut twice = RawSettings::default();
    twice.alerts.routes = vec![route("a"), route("a")];
    let e = Settings::try_from(twice).expect_err("a name twice");
    assert_eq!(e.field, "alerts.routes[1].name", "{e}");
}

#[test]
fn mail_routes_are_checked_and_their_passwords_masked() {
    use sundial_core::{
        alert::{MailTls, Target},
        settings::{RawMail, RawRoute},
    };
    let mail = || RawMail {
        to: vec!["oncall@example.com".into()],
        from: "sundial@example.com".into(),
        server: "smtp.example.com".into(),
        tls: None,
        username: Some("sundial".into()),
        password: Some("hunter2".into()),
        ca_file: None,
    };
    let route = |m: RawMail| RawRoute {
        name: "mail".into(),
        kinds: None,
        job_prefix: None,
        labels: Default::default(),
        pool: None,
        webhook: None,
        slack: None,
        mail: Some(m),
        secret: None,
        dedupe: None,
        max_per_hour: None,
    };
    let mut raw = RawSettings::default();
    raw.alerts.routes = vec![route(mail())];
    let masked = raw.masked();
    let m = masked.alerts.routes[0].mail.as_ref().expect("mail");
    assert_eq!(m.password.as_deref(), Some("****"));
    assert_eq!(m.username.as_deref(), Some("sundial"));
    let s = Settings::try_from(raw).expect("a valid mail route");
    let Target::Mail(m) = &s.alerts.routes[0].target else {
        panic!("a mail target: {:?}", s.alerts.routes[0].target);
    };
    assert_eq!(
        (m.host.as_str(), m.port, m.tls),
        ("smtp.example.com", 587, MailTls::StartTls),
        "STARTTLS on the submission port by default"
    );
    let with = |f: &dyn Fn(&mut RawMail)| {
        let mut m = mail();
        f(&mut m);
        let mut raw = RawSettings::default();
        raw.alerts.routes = vec![route(m)];
        Settings::try_from(raw)
    };
    let ok = with(&|m| {
        m.tls = Some("tls".into());
        m.server = "[::1]".into();
    })
    .expect("SMTPS to an IPv6 literal");
    let Target::Mail(m) = &ok.alerts.routes[0].target else {
        panic!("mail");
    };
    assert_eq!((m.host.as_str(), m.port), ("::1", 465));
    let bad = |f: &dyn Fn(&mut RawMail), key: &str| {
        let e = with(f).expect_err("must be invalid");
        assert_eq!(e.field, key, "{e}");
    };
    bad(&|m| m.to.clear(), "alerts.routes[0].mail.to");
    bad(
        &|m| m.to.push("two@x, three@y".into()),
        "alerts.routes[0].mail.to[1]",
    );
    bad(&|m| m.from = "nobody".into(), "alerts.routes[0].mail.from");
    bad(
        &|m| m.from = "a@b\r\nBcc: x@y".into(),
        "alerts.routes[0].mail.from",
    );
    bad(
        &|m| m.tls = Some("maybe".into()),
        "alerts.routes[0].mail.tls",
    );
    bad(
        &|m| m.server = "smtp.example.com:0".into(),
        "alerts.routes[0].mail.server",
    );
    bad(
        &|m| m.server = String::new(),
        "alerts.routes[0].mail.server",
    );
    bad(&|m| m.password = None, "alerts.routes[0].mail.username");
    bad(
        &|m| m.tls = Some("none".into()),
        "alerts.routes[0].mail.tls",
    );
    // A mail route is one target: not a webhook as well.
    let mut raw = RawSettings::default();
    let mut r = route(mail());
    r.webhook = Some("https://x.example".into());
    raw.alerts.routes = vec![r];
    let e = Settings::try_from(raw).expect_err("two targets");
    assert_eq!(e.field, "alerts.routes[0].webhook", "{e}");
}
