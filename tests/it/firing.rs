//! A scheduler process fires what the schedules say: consecutive
//! occurrences in order; pause, resume, trigger and jitter.

use std::time::Duration;

use chrono::Utc;
use sundial_core::topology::shard_of;

use crate::util::{FireTap, SchedulerProcess, Vhost, TEST_SHARDS};

use crate::{
    control_client::{upsert, v1, RawClient},
    fires::connect,
};

#[tokio::test(flavor = "multi_thread")]
async fn every_second_job_fires_consecutive_occurrences_in_order() {
    let v = Vhost::new("sched-tick");
    let _s = SchedulerProcess::start(&v, "tick");
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    upsert(
        &mut client,
        serde_json::json!({"id": "tick", "schedule": "* * * * * *", "executor": {"type": "noop"}}),
    )
    .await;
    let mut tap = FireTap::new(&conn).await;
    let (first, _) = tap.next("tick").await;
    let mut expected = first.scheduled_at;
    for _ in 0..5 {
        expected += chrono::Duration::seconds(1);
        let (ev, arrived) = tap.next("tick").await;
        assert_eq!(
            ev.fire_id,
            format!(
                "tick@{}",
                expected.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            )
        );
        assert_eq!(ev.scheduled_at, expected);
        let late = arrived - ev.scheduled_at;
        assert!(
            late >= chrono::Duration::zero() && late < chrono::Duration::seconds(1),
            "{} arrived {late} after its time",
            ev.fire_id
        );
        assert_eq!(
            (ev.attempt, ev.pool.as_str(), ev.shard),
            (1, "default", shard_of("tick", TEST_SHARDS))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_resume_trigger_and_jitter() {
    let v = Vhost::new("sched-controls");
    let _s = SchedulerProcess::start(&v, "ctl");
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    let mut tap = FireTap::new(&conn).await;
    upsert(&mut client, serde_json::json!({"id": "p", "schedule": "* * * * * *", "executor": {"type": "noop"}, "misfire": {"policy": "skip"}})).await;
    upsert(&mut client, serde_json::json!({"id": "j", "schedule": "* * * * * *", "jitter": "700ms", "executor": {"type": "noop"}})).await;

    // Jitter: deterministic per fire id, never before the scheduled time.
    for _ in 0..3 {
        let (ev, _) = tap.next("j").await;
        let expected = sundial_core::misfire::jitter(&ev.fire_id, Duration::from_millis(700));
        let delay = (ev.fired_at - ev.scheduled_at)
            .to_std()
            .expect("fired after scheduled");
        assert!(
            delay >= expected,
            "{}: fired {delay:?} after, jitter {expected:?}",
            ev.fire_id
        );
    }

    tap.next("p").await;
    let pause = client.call(br#"{"command":"pause","id":"p"}"#, v1()).await;
    assert!(pause.ok, "{pause:?}");
    let paused_at = Utc::now();
    // Paused for 2.5 s (the interval under test, not a synchronisation).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resume = client.call(br#"{"command":"resume","id":"p"}"#, v1()).await;
    assert!(resume.ok, "{resume:?}");
    let resumed_at = Utc::now();
    let trigger = client
        .call(br#"{"command":"trigger","id":"p"}"#, v1())
        .await;
    assert!(trigger.ok, "{trigger:?}");

    let mut manual = None;
    let mut regular_after_resume = 0;
    while manual.is_none() || regular_after_resume < 2 {
        let (ev, _) = tap.next("p").await;
        if ev.manual {
            assert!(ev.fire_id.starts_with("p@trigger:"), "{}", ev.fire_id);
            manual = Some(ev);
            continue;
        }
        let t = ev.scheduled_at;
        assert!(
            t <= paused_at + chrono::Duration::seconds(1)
                || t >= resumed_at - chrono::Duration::seconds(1),
            "fired while paused: {} (paused {paused_at}, resumed {resumed_at})",
            ev.fire_id
        );
        if t > resumed_at {
            regular_after_resume += 1;
        }
    }
}
