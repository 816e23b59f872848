//! `worker.run_events` levels: which run records each level also publishes
//! one by one on `sundial.events` (every record is in the history stream at
//! every level).

use sundial_core::{
    job::Executor,
    protocol::run::{RunEvent, RunKind},
};

use crate::util::{Daemon, Vhost};

use crate::fires::{connect, fire, noop_fire, publish, wait_for_consumers, EventTap};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_outcome_events_started_is_only_in_the_history() {
    let v = Vhost::new("w-outcomes");
    crate::util::topology_apply(&v);
    let conn = connect(&v).await;
    let mut tap = EventTap::events(&conn).await;
    let mut history = EventTap::new(&conn).await;
    let _w = Daemon::worker(&v, "quiet", &[("SUNDIAL__WORKER__RUN_EVENTS", "outcomes")]);
    wait_for_consumers(&v, 1).await;
    let plain = noop_fire("plain");
    let mut guarded = noop_fire("guarded");
    guarded.overlap = sundial_core::job::Overlap::Forbid;
    let ch = sundial_amqp::broker::confirming_channel(&conn)
        .await
        .expect("channel");
    publish(&ch, &[plain.clone(), guarded.clone()]).await;
    let kinds = |evs: Vec<RunEvent>| evs.iter().map(|e| e.kind).collect::<Vec<_>>();
    for f in [&guarded, &plain] {
        assert_eq!(
            kinds(tap.until(&f.fire_id, RunKind::Succeeded).await),
            [RunKind::Succeeded],
            "{}: the outcome only, on sundial.events",
            f.job_id
        );
        // In the history: the outcome (its start too, unless both went in
        // one batch: the start is then its end less its duration).
        let recorded = history.until(&f.fire_id, RunKind::Succeeded).await;
        assert!(
            recorded.last().is_some_and(|r| r.duration_ms.is_some()),
            "{}: {recorded:?}",
            f.job_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_failure_events_only_a_successful_run_is_silent() {
    let v = Vhost::new("w-failures");
    crate::util::topology_apply(&v);
    let conn = connect(&v).await;
    let mut tap = EventTap::events(&conn).await;
    let mut history = EventTap::new(&conn).await;
    // One run at a time: a fire is taken only after the previous one was
    // settled (its events confirmed, then acked).
    let env = [
        ("SUNDIAL__WORKER__RUN_EVENTS", "failures"),
        ("SUNDIAL__WORKER__CONCURRENCY", "1"),
    ];
    let _w = Daemon::worker(&v, "quiet", &env);
    wait_for_consumers(&v, 1).await;
    let ch = sundial_amqp::broker::confirming_channel(&conn)
        .await
        .expect("channel");

    // A silent success leaves nothing to await: a manual trigger of the same
    // job, queued behind it on its shard queue, runs after it and reports.
    let plain = noop_fire("plain");
    let mut after_plain = noop_fire("plain");
    after_plain.fire_id = format!("{}-manual", plain.fire_id);
    after_plain.manual = true;
    publish(&ch, &[plain.clone(), after_plain.clone()]).await;
    let of = |evs: Vec<RunEvent>| evs.iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(
        of(tap.until(&after_plain.fire_id, RunKind::Succeeded).await),
        [RunKind::Started, RunKind::Succeeded],
        "a manual trigger reports every step"
    );

    let mut guarded = noop_fire("guarded");
    guarded.overlap = sundial_core::job::Overlap::Forbid;
    let mut manual = noop_fire("manual");
    manual.manual = true;
    let broken = fire(
        "broken",
        Executor::Handler {
            name: "missing".into(),
        },
        1,
        &[],
    );
    publish(&ch, &[guarded.clone(), manual.clone(), broken.clone()]).await;
    assert!(
        of(history.until(&guarded.fire_id, RunKind::Succeeded).await)
            .ends_with(&[RunKind::Succeeded]),
        "the history has a silent run's outcome"
    );
    assert_eq!(
        of(tap.until(&manual.fire_id, RunKind::Succeeded).await),
        [RunKind::Started, RunKind::Succeeded],
        "a manual trigger reports every step"
    );
    let dead = tap.until(&broken.fire_id, RunKind::Dead).await;
    assert_eq!(of(dead.clone()), [RunKind::Failed, RunKind::Dead]);
    assert!(
        dead[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("handler-not-registered")),
        "{dead:?}"
    );
    // Any event of the plain or guarded run was queued before these.
    assert!(
        tap.backlog
            .iter()
            .all(|e| e.fire_id != plain.fire_id && e.fire_id != guarded.fire_id),
        "a successful run published {:?}",
        tap.backlog
    );
}
