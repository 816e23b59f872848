//! The registry: snapshots are written and a restart replays from them.

use futures_util::StreamExt;
use lapin::{options::BasicConsumeOptions, types::FieldTable};
use sundial_amqp::broker::meta_of;
use sundial_core::codec::decode;

use crate::util::{SchedulerProcess, Vhost};

use crate::{
    control_client::{upsert_many, v1, RawClient},
    fires::connect,
};

#[tokio::test(flavor = "multi_thread")]
async fn registry_snapshot_is_written_and_a_restart_replays_from_it() {
    let v = Vhost::new("sched-snap");
    let env = [("SUNDIAL__REGISTRY__SNAPSHOT_AFTER_BYTES", "2048")];
    let mut s = SchedulerProcess::start_with_env(&v, "s1", &env);
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    let jobs: Vec<_> = (0..20)
        .map(|i| serde_json::json!({"id": format!("job-{i:02}"), "schedule": "@daily", "executor": {"type": "noop"}}))
        .collect();
    upsert_many(&mut client, jobs).await;
    for i in 0..3 {
        let reply = client
            .call(
                format!(r#"{{"command":"delete","id":"job-{i:02}"}}"#).as_bytes(),
                v1(),
            )
            .await;
        assert!(reply.ok, "{reply:?}");
    }
    // The snapshot is written after the batch crossed 2 KiB; the index names it.
    let index = snapshot_index(&conn, 17, sundial_testkit::BROKER_TIMEOUT)
        .await
        .expect("a snapshot of the jobs within the broker timeout");
    assert!(index.jobs >= 17, "{index:?}");
    s.stop();
    let _s2 = SchedulerProcess::start_with_env(&v, "s2", &env);
    let reply = client.call(br#"{"command":"list"}"#, v1()).await;
    let ids: Vec<String> = reply.result.expect("result")["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        ids,
        (3..20).map(|i| format!("job-{i:02}")).collect::<Vec<_>>()
    );
    let log = std::fs::read_to_string(&_s2.log).expect("log");
    assert!(
        log.contains("from_snapshot"),
        "replay started from the snapshot: {log}"
    );
}

/// A snapshot is written while commands go on (only its first part waits
/// for them): what the log says between its first and last part is applied
/// again on top of it by a scheduler that replays from it.
#[tokio::test(flavor = "multi_thread")]
async fn commands_while_a_snapshot_is_written_survive_a_replay_from_it() {
    let v = Vhost::new("sched-snap-live");
    let env = [("SUNDIAL__REGISTRY__SNAPSHOT_AFTER_BYTES", "2048")];
    let mut s = SchedulerProcess::start_with_env(&v, "s1", &env);
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    // Six batches of 500 large jobs: each batch is more bytes than a
    // snapshot of every job (256 B a job), so each is followed by a
    // snapshot of several parts that the next commands run beside.
    let filler = "x".repeat(1_800);
    let job = |i: usize, schedule: &str| {
        serde_json::json!({"id": format!("job-{i:05}"), "schedule": schedule,
            "payload": {"filler": filler}, "executor": {"type": "noop"}})
    };
    let batch_of = |from: usize| -> Vec<serde_json::Value> {
        (from..from + 500).map(|i| job(i, "@daily")).collect()
    };
    for batch in 0..6 {
        let jobs = batch_of(batch * 500);
        upsert_many(&mut client, jobs).await;
    }
    let command = |c: serde_json::Value| c.to_string().into_bytes();
    for i in 0..10 {
        let deleted = client
            .call(
                &command(serde_json::json!({"command": "delete", "id": format!("job-{i:05}")})),
                v1(),
            )
            .await;
        let paused = client
            .call(&command(serde_json::json!({"command": "pause", "id": format!("job-{:05}", 10 + i), "reason": "between parts"})), v1())
            .await;
        let changed = client
            .call(
                &command(serde_json::json!({"command": "upsert", "job": job(20 + i, "@hourly")})),
                v1(),
            )
            .await;
        assert!(
            deleted.ok && paused.ok && changed.ok,
            "{deleted:?} {paused:?} {changed:?}"
        );
    }
    // The restarted scheduler must replay from a snapshot of them all. A
    // snapshot that was still being written when the last command came
    // writes no other: one more batch then makes another due.
    let mut total = 2_990;
    while snapshot_index(&conn, 2_990, std::time::Duration::from_secs(5))
        .await
        .is_none()
    {
        assert!(total < 5_000, "no snapshot of the jobs after {total} jobs");
        upsert_many(&mut client, batch_of(total + 10)).await;
        total += 500;
    }
    s.stop();
    let s2 = SchedulerProcess::start_with_env(&v, "s2", &env);
    let reply = client
        .call(br#"{"command":"list","limit":10000}"#, v1())
        .await;
    let result = reply.result.expect("result");
    let jobs = result["jobs"].as_array().expect("jobs");
    let field = |i: usize, f: &str| {
        jobs.iter()
            .find(|j| j["id"] == format!("job-{i:05}"))
            .map(|j| j[f].clone())
    };
    assert_eq!(jobs.len(), total, "deleted jobs stay deleted");
    assert!((0..10).all(|i| field(i, "id").is_none()));
    for i in 10..20 {
        assert_eq!(field(i, "paused"), Some(serde_json::json!(true)), "job {i}");
        assert_eq!(
            field(i, "paused_reason"),
            Some(serde_json::json!("between parts"))
        );
    }
    for i in 20..30 {
        assert_eq!(
            field(i, "schedule"),
            Some(serde_json::json!("@hourly")),
            "job {i}"
        );
    }
    assert_eq!(field(30, "schedule"), Some(serde_json::json!("@daily")));
    let log = std::fs::read_to_string(&s2.log).expect("log");
    assert!(
        log.contains("from_snapshot"),
        "replayed from a snapshot: {log}"
    );
}

/// The first index entry (`sundial.registry.index`) naming a snapshot of at
/// least `jobs` jobs; each one read is left in the queue for the scheduler
/// that replays from it.
async fn snapshot_index(
    conn: &lapin::Connection,
    jobs: u64,
    within: std::time::Duration,
) -> Option<sundial_core::protocol::registry::RegistryIndex> {
    let ch = conn.create_channel().await.expect("channel");
    let mut index_consumer = ch
        .basic_consume(
            "sundial.registry.index".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume index");
    let index = tokio::time::timeout(within, async {
        loop {
            let d = index_consumer
                .next()
                .await
                .expect("index stream open")
                .expect("delivery");
            let ix: sundial_core::protocol::registry::RegistryIndex =
                decode(&meta_of(&d.properties), &d.data).expect("index decodes");
            d.acker
                .nack(lapin::options::BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
                .expect("requeue");
            if ix.jobs >= jobs {
                break ix;
            }
        }
    })
    .await
    .ok();
    let _ = ch.close(200, "done".into()).await;
    index
}
