//! Reading dead letters never consumes them: fifty `dlq list`s leave every
//! letter as it was, and the dead-letter queues carry the delivery limit
//! that keeps this true on RabbitMQ 4.x (whose quorum queues default to 20).

use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties,
};
use sundial_amqp::dlq::{DeadLetter, Dlq};
use sundial_core::{codec::encode, topology::DEAD_LETTER_DELIVERY_LIMIT};

use crate::{
    fires::{connect, noop_fire},
    util::{bounded, stderr, sundial, test_topology, topology_apply, Vhost, TEST_ENV},
};

/// What a reader sees of a letter, minus the broker's own delivery counter.
#[derive(Debug, PartialEq)]
struct Seen {
    fire_id: Option<String>,
    attempts: Option<i64>,
    error: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn seen(dl: &DeadLetter) -> Seen {
    Seen {
        fire_id: dl.fire_id.clone(),
        attempts: dl.attempts,
        error: dl.error.clone(),
        headers: dl
            .headers
            .iter()
            .filter(|(k, _)| k.as_str() != "x-delivery-count")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body: serde_json::to_string(&dl.fire).expect("fire as JSON"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reads_leave_every_dead_letter_unchanged() {
    let v = Vhost::new("dlq-reads");
    topology_apply(&v);
    let conn = connect(&v).await;
    let ch = sundial_amqp::broker::confirming_channel(&conn)
        .await
        .expect("channel");
    for i in 0..3 {
        let f = noop_fire(&format!("dead-{i}"));
        let enc = encode(&f).expect("encodes");
        let mut h = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        h.insert("x-sundial-error".into(), text(&format!("boom {i}")));
        h.insert("x-sundial-attempts".into(), AMQPValue::LongLongInt(3));
        h.insert("x-sundial-pool".into(), text("default"));
        let base = sundial_amqp::broker::properties(&enc.meta);
        for (k, val) in base.headers().clone().unwrap_or_default().inner() {
            h.insert(k.clone(), val.clone());
        }
        let props: BasicProperties = base.with_headers(h);
        let confirm = ch
            .basic_publish(
                "sundial.dead".into(),
                "default".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &enc.body,
                props,
            )
            .await
            .expect("publish");
        assert!(confirm.await.expect("confirm").is_ack());
    }
    let topo = test_topology();
    let dlq = Dlq::new(&conn, &topo, "default");
    let first: Vec<_> = bounded("dlq list", dlq.list())
        .await
        .expect("list")
        .iter()
        .map(seen)
        .collect();
    assert_eq!(first.len(), 3, "{first:?}");
    assert!(first[0].error.starts_with("boom"), "{first:?}");
    for read in 1..50 {
        let again: Vec<_> = bounded("dlq list", dlq.list())
            .await
            .expect("list")
            .iter()
            .map(seen)
            .collect();
        assert_eq!(again, first, "read {read} changed the dead letters");
    }
    // The CLI reads the same way.
    let out = sundial()
        .args(["dlq", "list", "--json", "--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("dlq list");
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    // The argument that keeps it so on 4.x.
    let args = v.list("list_queues", &["name", "arguments"]);
    let dead = args
        .iter()
        .find(|l| l.starts_with("sundial.dead.default\t"))
        .expect("the dead-letter queue");
    assert!(
        dead.contains(&format!("x-delivery-limit\",{DEAD_LETTER_DELIVERY_LIMIT}")),
        "{dead}"
    );
}

#[test]
fn a_dead_letter_queue_of_an_older_release_is_kept_with_a_warning() {
    let v = Vhost::new("dlq-old");
    // As an older Sundial declared it: quorum, no delivery limit.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let conn = connect(&v).await;
        let ch = conn.create_channel().await.expect("channel");
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        ch.queue_declare(
            "sundial.dead.default".into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect("declare old queue");
    });
    let out = sundial()
        .args(["topology", "apply", "--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("topology apply");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sundial.dead.default") && err.contains("docs/operations.md"),
        "{err}"
    );
}
