//! Several worker processes on one pool: fires spread over them, a killed
//! worker's run is redelivered, a duplicate fire is dropped and reported.

use std::collections::HashMap;

use sundial_core::{
    job::Executor,
    protocol::{fire::FireEvent, run::RunKind},
};

use crate::util::Daemon;

use crate::fires::{fire, kinds, publish, setup, shell, wait_for_consumers, InProcess, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_pool_and_run_each_fire_once() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-three").await;
    let _workers: Vec<Daemon> = (1..=3)
        .map(|i| Daemon::worker(&v, &format!("w{i}"), &[]))
        .collect();
    wait_for_consumers(&v, 3).await;

    let fires: Vec<FireEvent> = (0..3000)
        .map(|i| fire(&format!("bulk-{i}"), Executor::Noop, 1, &[]))
        .collect();
    publish(&ch, &fires).await;

    let mut done: HashMap<String, u32> = HashMap::new();
    let mut by_worker: HashMap<String, u32> = HashMap::new();
    while done.len() < fires.len() {
        let ev = tap.next().await;
        if ev.kind == RunKind::Succeeded {
            *done.entry(ev.fire_id).or_default() += 1;
            *by_worker.entry(ev.worker).or_default() += 1;
        }
    }
    assert!(done.values().all(|&n| n == 1), "each fire once");
    assert!(
        fires.iter().all(|f| done.contains_key(&f.fire_id)),
        "every fire processed"
    );
    assert_eq!(by_worker.len(), 3, "every worker ran some: {by_worker:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_run_is_redelivered_to_another_worker() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-kill").await;
    let allow = [("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sleep")];
    let mut first = Daemon::worker(&v, "doomed", &allow);
    wait_for_consumers(&v, 1).await;
    let f = fire("slow", shell(&["/bin/sleep", "2"]), 1, &[]);
    publish(&ch, std::slice::from_ref(&f)).await;
    let started = tap.until(&f.fire_id, RunKind::Started).await;
    assert_eq!(started.last().map(|e| e.worker.as_str()), Some("doomed"));
    first.kill9();

    let _second = Daemon::worker(&v, "survivor", &allow);
    let evs = tap.until(&f.fire_id, RunKind::Succeeded).await;
    let done = evs.last().expect("succeeded");
    assert_eq!(done.worker, "survivor", "{evs:?}");
    assert_eq!(done.attempt, 1, "a redelivery is the same attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_fire_is_dropped_and_reported() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-dup").await;
    let w = InProcess::start(&v, &[], |w| w);
    let f = fire("twice", Executor::Noop, 1, &[]);
    publish(&ch, std::slice::from_ref(&f)).await;
    tap.until(&f.fire_id, RunKind::Succeeded).await;
    publish(&ch, std::slice::from_ref(&f)).await;
    let evs = tap.until(&f.fire_id, RunKind::Skipped).await;
    assert_eq!(
        evs.last().and_then(|e| e.reason.as_deref()),
        Some("duplicate")
    );
    assert!(
        kinds(&evs, RunKind::Started).is_empty(),
        "not run again: {evs:?}"
    );
    w.stop().await;
}
