//! Reading dead letters never consumes them: fifty `dlq list`s leave every
//! letter as it was, and the dead-letter queues carry the delivery limit
//! that keeps this true on RabbitMQ 4.x (whose quorum queues default to 20).
//! Readers take turns (ADR 0022): parallel readers each see every letter.

use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable, LongString},
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

/// Publishes a dead letter of job `job` to the default pool's queue, with
/// `extra` headers; returns its fire id.
async fn dead_letter(ch: &lapin::Channel, job: &str, extra: &[(&str, AMQPValue)]) -> String {
    let f = noop_fire(job);
    let enc = encode(&f).expect("encodes");
    let base = sundial_amqp::broker::properties(&enc.meta);
    let mut h = base.headers().clone().unwrap_or_default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    h.insert("x-sundial-error".into(), text(&format!("boom {job}")));
    h.insert("x-sundial-attempts".into(), AMQPValue::LongLongInt(3));
    h.insert("x-sundial-pool".into(), text("default"));
    for (k, v) in extra {
        h.insert((*k).into(), v.clone());
    }
    let confirm = ch
        .basic_publish(
            "sundial.dead".into(),
            "default".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &enc.body,
            base.with_headers(h),
        )
        .await
        .expect("publish");
    assert!(confirm.await.expect("confirm").is_ack());
    f.fire_id
}

/// Several readers at once (their own connections, as separate processes
/// are) each see every letter, in the order they died, while a replay of
/// two named letters finds both; headers such as the broker's `x-death`
/// read as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_readers_each_see_every_letter_while_a_replay_finds_its_own() {
    let v = Vhost::new("dlq-parallel");
    topology_apply(&v);
    let conn = connect(&v).await;
    let ch = sundial_amqp::broker::confirming_channel(&conn)
        .await
        .expect("channel");
    let n = 40;
    let t0 = chrono::Utc::now();
    let mut all: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for i in 0..n {
        // Published newest first: queue order is not the order they died.
        let died = t0 - chrono::TimeDelta::seconds(i);
        let mut extra = vec![(
            "x-sundial-last-failure",
            AMQPValue::LongString(LongString::from(sundial_core::protocol::timestamp(died))),
        )];
        if i == n - 1 {
            let mut death = FieldTable::default();
            death.insert("reason".into(), AMQPValue::LongString("rejected".into()));
            death.insert("count".into(), AMQPValue::LongLongInt(1));
            extra.push((
                "x-death",
                AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
            ));
        }
        all.insert(dead_letter(&ch, &format!("par-{i:02}"), &extra).await);
    }
    let replayed: std::collections::BTreeSet<String> = all.iter().take(2).cloned().collect();
    let after: std::collections::BTreeSet<String> = all.difference(&replayed).cloned().collect();
    let topo = test_topology();
    let started = std::sync::Arc::new(tokio::sync::Barrier::new(5));
    let mut readers = Vec::new();
    for r in 0..4 {
        let v_url = v.url();
        let topo = topo.clone();
        let (all, after) = (all.clone(), after.clone());
        let started = started.clone();
        readers.push(tokio::spawn(async move {
            let conn = bounded("connect", sundial_amqp::broker::connect(&v_url, "reader"))
                .await
                .expect("connects");
            let dlq = Dlq::new(&conn, &topo, "default");
            for round in 0..8 {
                let letters = bounded("dlq list", dlq.list()).await.expect("list");
                if round == 0 {
                    started.wait().await;
                }
                let ids: std::collections::BTreeSet<String> =
                    letters.iter().filter_map(|l| l.fire_id.clone()).collect();
                assert!(
                    ids == all || ids == after,
                    "reader {r}, round {round}: saw {} of {} letters: {:?} not among them, {:?} not published",
                    ids.len(),
                    all.len(),
                    all.difference(&ids).collect::<Vec<_>>(),
                    ids.difference(&all).collect::<Vec<_>>()
                );
                let died: Vec<_> = letters.iter().map(|l| l.dead_at).collect();
                assert!(
                    died.windows(2).all(|w| w[0] <= w[1]),
                    "reader {r}: in the order they died: {died:?}"
                );
            }
            let _ = conn.close(200, "done".into()).await;
        }));
    }
    started.wait().await;
    let replay = Dlq::new(&conn, &topo, "default");
    let wanted = replayed.clone();
    let settled = bounded(
        "replay",
        replay.settle(
            sundial_amqp::dlq::Action::Replay,
            |dl| dl.fire_id.as_ref().is_some_and(|f| wanted.contains(f)),
            || {},
        ),
    )
    .await
    .expect("replay");
    let done: std::collections::BTreeSet<String> = settled.done.iter().cloned().collect();
    assert_eq!(done, replayed, "the replay found both letters it named");
    for r in readers {
        r.await.expect("a reader saw every letter each time");
    }
    let left = bounded("dlq list", Dlq::new(&conn, &topo, "default").list())
        .await
        .expect("list");
    assert_eq!(left.len(), after.len());
    let death = left
        .iter()
        .find_map(|l| l.headers.get("x-death"))
        .expect("the letter with x-death");
    let death: serde_json::Value = serde_json::from_str(death).expect("x-death as JSON");
    assert_eq!(death[0]["reason"], "rejected", "{death}");
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
        dead_letter(&ch, &format!("dead-{i}"), &[]).await;
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
