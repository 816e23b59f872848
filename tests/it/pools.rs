//! Jobs and pools without queues: such an upsert is refused naming `pool`;
//! a fire that stays unroutable is set aside (dead-lettered, counted, shown
//! by `sundial status`) instead of holding its shard's watermark back; and
//! the protocol's reply details a client in another language relies on.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::BasicProperties;
use sundial_core::topology::shard_of;

use crate::{
    control_client::{v1, RawClient},
    fires::connect,
    util::{bounded, rabbitmqctl, stderr, sundial, Daemon, Vhost, TEST_SHARDS},
};

fn upsert(id: &str, pool: &str) -> Vec<u8> {
    serde_json::json!({"command": "upsert", "job": {
        "id": id, "schedule": "* * * * * *", "pool": pool, "executor": {"type": "noop"}}})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_into_a_pool_without_queues_is_refused_naming_pool() {
    let v = Vhost::new("pool-none");
    let _s = Daemon::start(&v, "pool-none");
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    let reply = client.call(&upsert("orphan", "other"), v1()).await;
    assert!(!reply.ok, "{reply:?}");
    assert_eq!(reply.command.as_deref(), Some("upsert"));
    let e = reply.error.expect("an error");
    assert_eq!(e.field, "job.pool", "{e:?}");
    assert!(e.message.contains("sundial topology apply"), "{e:?}");
    // Replies are persistent, as docs/protocol.md §1 says of every message.
    let props: BasicProperties = client.last_props.clone().expect("reply properties");
    assert_eq!(*props.delivery_mode(), Some(2));

    // Refused and dead-lettered, like every refused command.
    let ch = conn.create_channel().await.expect("channel");
    let dead = crate::util::drain(&ch, "sundial.dead.control").await;
    assert_eq!(dead.len(), 1, "one dead letter");
    let reason = sundial_amqp::broker::header_string(&dead[0].properties, "x-sundial-error");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.starts_with("job.pool: ")),
        "{reason:?}"
    );

    // A batch: the good job is applied, the reply counts it and names the
    // refused job by its path.
    let batch = serde_json::json!({"command": "upsert-many", "jobs": [
        {"id": "fine", "schedule": "@hourly", "executor": {"type": "noop"}},
        {"id": "orphan", "schedule": "@hourly", "pool": "other", "executor": {"type": "noop"}}]});
    let reply = client.call(batch.to_string().as_bytes(), v1()).await;
    assert!(!reply.ok);
    assert_eq!(
        reply.result,
        Some(serde_json::json!({"accepted": 1, "changed": 1}))
    );
    let results = reply.results.expect("results");
    assert_eq!(
        results[1].error.as_ref().map(|e| e.field.as_str()),
        Some("jobs[1].pool")
    );
    // An unreadable command still says which command it answers.
    let reply = client
        .call(br#"{"command": "upsert", "job": {"id": "x"}}"#, v1())
        .await;
    assert_eq!(reply.command.as_deref(), Some("upsert"));
    let e = reply.error.expect("an error");
    assert_eq!(
        (e.field.as_str(), e.message.as_str()),
        ("job.schedule", "missing field `schedule`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_that_stays_unroutable_is_set_aside_and_the_watermark_moves_on() {
    let v = Vhost::new("pool-gone");
    // The pool "gone" exists when its job is accepted...
    let out = sundial()
        .args(["topology", "apply", "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", TEST_SHARDS.to_string())
        .env("SUNDIAL__TOPOLOGY__POOLS", "default,gone")
        .output()
        .expect("topology apply");
    assert!(out.status.success(), "{}", stderr(&out));
    let s = Daemon::start(&v, "pool-gone");
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    let reply = client.call(&upsert("lost", "gone"), v1()).await;
    assert!(reply.ok, "{reply:?}");
    // A copy of every dead letter of the pool, to await the set-aside.
    let (_tap_ch, mut dead_tap) = bounded(
        "dead-letter tap",
        sundial_amqp::broker::subscribe(&conn, "sundial.dead", &["gone"]),
    )
    .await
    .expect("tap");
    // ...then its work queue goes: every fire comes back unroutable.
    let shard = shard_of("lost", TEST_SHARDS);
    let queue = format!("sundial.work.gone.{shard}");
    rabbitmqctl(&["delete_queue", "-p", &v.name, &queue]);

    // Set aside within ~11 s of backoff: dead-lettered to the pool.
    let dead = bounded("a fire set aside", dead_tap.next())
        .await
        .expect("tap open")
        .expect("dead letter");
    let reason = sundial_amqp::broker::header_string(&dead.properties, "x-sundial-error");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.starts_with("unroutable: ")),
        "{reason:?}"
    );
    let listed = sundial()
        .args([
            "dlq",
            "list",
            "--pool",
            "gone",
            "--json",
            "--broker",
            &v.url(),
        ])
        .env("SUNDIAL__TOPOLOGY__SHARDS", TEST_SHARDS.to_string())
        .output()
        .expect("dlq list");
    let text = crate::util::stdout(&listed);
    assert!(text.contains("unroutable"), "the reason is kept: {text}");

    // The shard's watermark is not held back (the job keeps firing into
    // nowhere every second; fires already retrying clear within one
    // backoff step), and status says what happened.
    let status = || {
        let out = sundial()
            .args(["status", "--json", "--broker", &v.url()])
            .env("SUNDIAL__TOPOLOGY__SHARDS", TEST_SHARDS.to_string())
            .output()
            .expect("status");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("status JSON")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status();
        let lag = st["shards"][shard as usize]["lag_ms"].as_i64();
        if lag.is_some_and(|l| l < 3_000) {
            let n = st["nodes"][0]["unroutable"].as_u64();
            assert!(n.is_some_and(|n| n >= 1), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "watermark still held back: {st}");
    }
    let text = sundial()
        .args(["status", "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", TEST_SHARDS.to_string())
        .output()
        .expect("status");
    assert!(
        crate::util::stdout(&text).contains("unroutable fires set aside"),
        "{}",
        crate::util::stdout(&text)
    );

    // The log: a few rate-limited lines, never lapin's returned-message dump.
    let path = s.log.clone();
    drop(s);
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let retry_lines = log.lines().filter(|l| l.contains("retrying")).count();
    assert!(retry_lines <= 6, "{retry_lines} retry lines: {log}");
    assert!(!log.contains("lapin"), "{log}");
}
