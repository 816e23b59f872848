//! A scheduler process fires what the schedules say: consecutive
//! occurrences in order; pause, resume, trigger and jitter.

use std::time::Duration;

use chrono::{DurationRound, Utc};
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

/// A fire the broker nacks is sent again, on a fresh channel (RabbitMQ
/// 3.10 can hand a publisher a channel that nacks everything for as long
/// as it lives), until confirmed: every occurrence arrives, none is lost,
/// and the watermark waits for them.
#[tokio::test(flavor = "multi_thread")]
async fn nacked_fires_are_sent_again_on_a_fresh_channel_and_none_is_lost() {
    use lapin::{
        options::{QueueBindOptions, QueueDeleteOptions},
        types::FieldTable,
    };
    let v = Vhost::new("nacked-fires");
    let addr = crate::util::free_addr();
    let _s = SchedulerProcess::start_with_env(
        &v,
        "nacks",
        &[
            ("SUNDIAL__HTTP__ENABLED", "true"),
            ("SUNDIAL__HTTP__LISTEN", &addr),
        ],
    );
    let conn = connect(&v).await;
    let ch = sundial_amqp::broker::confirming_channel(&conn)
        .await
        .expect("channel");
    // A full queue that rejects publishes, bound to the job's shard: the
    // broker nacks each of its fires while the connection stays fine.
    crate::fires::declare_rejecting_queue(&ch, "nack-fires").await;
    let key = format!("default.{}", shard_of("tick", TEST_SHARDS));
    ch.queue_bind(
        "nack-fires".into(),
        "sundial.fire".into(),
        key.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let mut tap = FireTap::new(&conn).await;
    let mut client = RawClient::new(&conn).await;
    upsert(
        &mut client,
        serde_json::json!({"id": "tick", "schedule": "* * * * * *", "executor": {"type": "noop"}}),
    )
    .await;

    // The shard opens a fresh channel after the first nack.
    let renewed = |body: &str| {
        body.lines()
            .find(|l| l.starts_with("sundial_fire_channel_renewals_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = crate::util::http_get(&addr, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        if renewed(&body) >= 2.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fresh channel after nacks within 30 s:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ch.queue_delete("nack-fires".into(), QueueDeleteOptions::default())
        .await
        .expect("delete the nacking queue");
    let unblocked = Utc::now();

    // Every occurrence from the first one fired (a new job's first
    // occurrence is after the timer took it) to two seconds after the broker
    // accepts again arrives; duplicates allowed (same fire id).
    let last = unblocked
        .duration_trunc(chrono::Duration::seconds(1))
        .expect("trunc")
        + chrono::Duration::seconds(2);
    let mut seen_at = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut duplicates = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let gaps = loop {
        let (ev, _) = tap.next("tick").await;
        if !seen.insert(ev.fire_id.clone()) {
            duplicates += 1;
        }
        seen_at.insert(ev.scheduled_at);
        let first = *seen_at.first().expect("one fire");
        let mut gaps = Vec::new();
        let mut t = first;
        while t <= last {
            if !seen_at.contains(&t) {
                gaps.push(t);
            }
            t += chrono::Duration::seconds(1);
        }
        if gaps.is_empty() || std::time::Instant::now() > deadline {
            break gaps;
        }
    };
    assert!(gaps.is_empty(), "occurrences never fired: {gaps:?}");
    let expected = seen_at.range(..=last).count();
    assert!(
        expected >= 3,
        "the nacks lasted a while: {expected} occurrences"
    );
    println!("{expected} occurrences through the nacks, all arrived; {duplicates} duplicates");
}
