//! The registry: snapshots are written and a restart replays from them.

use futures_util::StreamExt;
use lapin::{options::BasicConsumeOptions, types::FieldTable};
use sundial_amqp::broker::meta_of;
use sundial_core::codec::decode;

use crate::util::{bounded, SchedulerProcess, Vhost};

use crate::{
    control_client::{v1, RawClient},
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
    let reply = client
        .call(
            serde_json::json!({"command": "upsert-many", "jobs": jobs})
                .to_string()
                .as_bytes(),
            v1(),
        )
        .await;
    assert!(reply.ok, "{reply:?}");
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
    let index = bounded("snapshot index", async {
        let d = index_consumer
            .next()
            .await
            .expect("index stream open")
            .expect("delivery");
        let ix: sundial_core::protocol::registry::RegistryIndex =
            decode(&meta_of(&d.properties), &d.data).expect("index decodes");
        // Leave it for the restarted scheduler.
        d.acker
            .nack(lapin::options::BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .expect("requeue");
        ix
    })
    .await;
    let _ = ch.close(200, "done".into()).await;
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
