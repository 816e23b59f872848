//! Every delivery ends settled, even when the attempt cannot report: a
//! nacked run-event confirm on a live connection requeues the fire (and the
//! work queue's delivery limit dead-letters one that keeps failing) instead
//! of holding a prefetch slot for ever.

use futures_util::StreamExt;
use lapin::{options::QueueBindOptions, types::FieldTable};
use sundial_core::protocol::run::RunKind;

use crate::{
    fires::{connect, noop_fire, publish, wait_for_consumers, EventTap},
    util::{bounded, stderr, sundial, Daemon, Vhost, TEST_ENV},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_run_event_requeues_the_fire_and_the_worker_goes_on() {
    let v = Vhost::new("settle");
    let limit = [("SUNDIAL__TOPOLOGY__DELIVERY_LIMIT", "2")];
    let out = sundial()
        .args(["topology", "apply", "--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .envs(limit)
        .output()
        .expect("topology apply");
    assert!(out.status.success(), "{}", stderr(&out));
    let conn = connect(&v).await;
    let ch = sundial_amqp::broker::confirming_channel(&conn)
        .await
        .expect("channel");
    // A full queue that rejects publishes, bound to every run event: the
    // broker nacks each event while the connection stays fine.
    crate::fires::declare_rejecting_queue(&ch, "nack-every-event").await;
    // ... and to the history exchange: every batch of run records too.
    for (exchange, key) in [("sundial.events", "#"), ("sundial.history", "")] {
        ch.queue_bind(
            "nack-every-event".into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    }
    let mut env: Vec<(&str, &str)> = limit.to_vec();
    env.push(("SUNDIAL__WORKER__CONCURRENCY", "1"));
    // Every record also on the exchange, so a success is nacked too.
    env.push(("SUNDIAL__WORKER__RUN_EVENTS", "all"));
    let _w = Daemon::worker(&v, "settler", &env);
    wait_for_consumers(&v, 1).await;

    // A copy of every dead letter of the pool, to await the settlement.
    let (_tap_ch, mut dead_tap) = bounded(
        "dead-letter tap",
        sundial_amqp::broker::subscribe(&conn, "sundial.dead", &["default"]),
    )
    .await
    .expect("tap");
    let stuck = noop_fire("cannot-report");
    publish(&ch, std::slice::from_ref(&stuck)).await;
    // Requeued after each failed report, then dead-lettered by the work
    // queue's delivery limit: settled, not held.
    let dead = bounded("the fire settled (dead-lettered)", dead_tap.next())
        .await
        .expect("tap open")
        .expect("dead letter");
    assert_eq!(
        dead.properties.message_id().as_ref().map(|m| m.as_str()),
        Some(stuck.fire_id.as_str())
    );
    let reason = sundial_amqp::broker::header_string(&dead.properties, "x-first-death-reason");
    assert_eq!(reason.as_deref(), Some("delivery_limit"));

    // With concurrency 1, the next fire runs only if the slot was freed.
    // A nacked history batch failed its own attempts only: the recorder
    // goes on once the broker takes its batches again.
    for (exchange, key) in [("sundial.events", "#"), ("sundial.history", "")] {
        ch.queue_unbind(
            "nack-every-event".into(),
            exchange.into(),
            key.into(),
            FieldTable::default(),
        )
        .await
        .expect("unbind");
    }
    let mut tap = EventTap::new(&conn).await;
    let next = noop_fire("reports-fine");
    publish(&ch, std::slice::from_ref(&next)).await;
    tap.until(&next.fire_id, RunKind::Succeeded).await;
}
