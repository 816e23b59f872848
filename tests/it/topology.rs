//! `topology apply` against the real broker.

use lapin::{options::QueueDeclareOptions, types::FieldTable};
use sundial_core::settings::{RawSettings, Settings};

use crate::util::{bounded, stderr, stdout, sundial, Vhost};

fn settings(vhost: &Vhost) -> Settings {
    let mut raw = RawSettings::default();
    raw.broker.url = vhost.url();
    raw.topology.shards = 4;
    raw.topology.pools = vec!["default".into(), "reports".into()];
    Settings::try_from(raw).expect("valid settings")
}

fn snapshot(v: &Vhost) -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        v.list("list_queues", &["name", "type", "durable", "arguments"]),
        v.list("list_exchanges", &["name", "type", "durable"]),
        v.list(
            "list_bindings",
            &[
                "source_name",
                "destination_name",
                "routing_key",
                "arguments",
            ],
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_twice_is_idempotent() {
    let v = Vhost::new("topo");
    let s = settings(&v);
    let decl = s.topology.declarations();
    let conn = bounded(
        "connect",
        sundial_amqp::broker::connect(&s.broker.url, "it-topology"),
    )
    .await
    .expect("connects");
    let first = bounded("apply", sundial_amqp::topology::apply(&conn, &decl))
        .await
        .expect("first apply");
    let before = snapshot(&v);
    let second = bounded("apply again", sundial_amqp::topology::apply(&conn, &decl))
        .await
        .expect("second apply");
    assert_eq!(first, second);
    assert_eq!(snapshot(&v), before, "a second apply changes nothing");

    // What was declared is what docs/protocol.md §2 says.
    let (queues, exchanges, _) = before;
    assert_eq!(queues.len(), decl.queues.len());
    let line = |name: &str| {
        queues
            .iter()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .cloned()
            .unwrap_or_default()
    };
    let work = line("sundial.work.reports.3");
    assert!(
        work.contains("quorum")
            && work.contains("x-delivery-limit")
            && work.contains("at-least-once")
            && work.contains("reject-publish"),
        "{work}"
    );
    assert!(line("sundial.registry").contains("stream"));
    assert!(line("sundial.retry.10s").contains("x-message-ttl"));
    // Replicated: quorum last-value queues, a member count, balanced leaders.
    let wm = line("sundial.watermark.0");
    assert!(
        wm.contains("quorum") && wm.contains("x-max-length") && wm.contains("drop-head"),
        "{wm}"
    );
    assert!(line("sundial.registry.index").contains("quorum"));
    assert!(
        work.contains("x-quorum-initial-group-size") && work.contains("balanced"),
        "{work}"
    );
    assert!(line("sundial.history").contains("x-initial-cluster-size"));
    assert!(
        exchanges
            .iter()
            .any(|l| l.starts_with("sundial.events\ttopic")),
        "{exchanges:?}"
    );
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_queue_is_reported_with_its_name_and_argument() {
    let v = Vhost::new("conflict");
    let s = settings(&v);
    let conn = bounded(
        "connect",
        sundial_amqp::broker::connect(&s.broker.url, "it-conflict"),
    )
    .await
    .expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    // Someone created the control queue as a classic queue before Sundial.
    bounded(
        "declare classic queue",
        ch.queue_declare(
            "sundial.control".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("declares");
    let err = bounded(
        "apply",
        sundial_amqp::topology::apply(&conn, &s.topology.declarations()),
    )
    .await
    .expect_err("must conflict");
    let msg = err.to_string();
    assert!(
        matches!(err, sundial_amqp::Error::Conflict { what: "queue", .. }),
        "{msg}"
    );
    assert!(
        msg.contains("\"sundial.control\"") && msg.contains("inequivalent arg 'x-"),
        "{msg}"
    );
    let _ = conn.close(200, "done".into()).await;

    // The CLI says the same on stderr and exits 1.
    let o = sundial()
        .args(["topology", "apply", "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("sundial.control") && stderr(&o).contains("inequivalent arg 'x-"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cli_topology_apply_twice_succeeds() {
    let v = Vhost::new("cli");
    for _ in 0..2 {
        let o = sundial()
            .args([
                "topology",
                "apply",
                "--broker",
                &v.url(),
                "--prefix",
                "acme",
            ])
            .env("SUNDIAL__TOPOLOGY__SHARDS", "2")
            .output()
            .expect("runs");
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).starts_with("topology \"acme\" applied:"),
            "{}",
            stdout(&o)
        );
    }
    assert!(v
        .list("list_queues", &["name"])
        .iter()
        .any(|q| q == "acme.work.default.1"));
}

/// An installation of a release before replication keeps its classic
/// watermark queue (and its value), with a warning saying how to replace it.
#[test]
fn a_classic_watermark_queue_of_an_older_release_is_kept_with_a_warning() {
    let v = Vhost::new("wm-old");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let conn = bounded(
            "connect",
            sundial_amqp::broker::connect(&v.url(), "it-wm-old"),
        )
        .await
        .expect("connects");
        let ch = conn.create_channel().await.expect("channel");
        let mut args = lapin::types::FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("classic".into()),
        );
        args.insert(
            "x-max-length".into(),
            lapin::types::AMQPValue::LongLongInt(1),
        );
        ch.queue_declare(
            "sundial.watermark.0".into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect("declare the old queue");
        let _ = conn.close(200, "done".into()).await;
    });
    let out = crate::util::sundial()
        .args(["topology", "apply", "--broker", &v.url()])
        .envs(crate::util::TEST_ENV.iter().copied())
        .output()
        .expect("topology apply");
    assert!(out.status.success(), "{}", crate::util::stderr(&out));
    let err = crate::util::stderr(&out);
    assert!(
        err.contains("sundial.watermark.0") && err.contains("classic queue lives on one node"),
        "{err}"
    );
    let kept = v.list("list_queues", &["name", "type"]);
    assert!(
        kept.iter().any(|l| l == "sundial.watermark.0\tclassic"),
        "{kept:?}"
    );
}

#[test]
fn status_on_a_topology_without_the_workers_exchange_lists_no_workers() {
    // A topology applied by a release before worker heartbeats: no
    // `sundial.workers`; `sundial status` answers as before.
    let v = Vhost::new("no-workers-ex");
    crate::util::topology_apply(&v);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let conn = bounded(
            "connect",
            sundial_amqp::broker::connect(&v.url(), "it-no-workers-ex"),
        )
        .await
        .expect("connects");
        let ch = conn.create_channel().await.expect("channel");
        ch.exchange_delete(
            "sundial.workers".into(),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await
        .expect("delete the workers exchange");
        let _ = conn.close(200, "done".into()).await;
    });
    assert!(
        !v.list("list_exchanges", &["name"])
            .iter()
            .any(|e| e == "sundial.workers"),
        "the exchange is gone"
    );
    let out = sundial()
        .args(["status", "--broker", &v.url()])
        .envs(crate::util::TEST_ENV.iter().copied())
        .output()
        .expect("status");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("workers: 0"), "{text}");
    assert!(text.contains("timer shards:"), "{text}");
}
