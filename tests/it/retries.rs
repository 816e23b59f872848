//! Retries: a failing attempt goes to the retry tier its backoff names and
//! runs again as the next attempt, until it succeeds.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
};

use sundial_amqp::dlq::Dlq;
use sundial_core::{job::Executor, protocol::run::RunKind};
use sundial_worker::JobError;

use crate::util::{test_topology, HttpSink};

use crate::fires::{fire, kinds, publish, setup, EventTap, InProcess, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_failing_twice_succeeds_on_third_attempt_after_backoff() {
    let Setup {
        v,
        conn,
        tap: _,
        ch,
    } = setup("w-flaky").await;
    // Every step one by one (the in-process worker publishes all run
    // events): the history leaves out the start of an attempt that ended
    // in the same batch, and these tests count attempts by their starts.
    let mut tap = EventTap::events(&conn).await;
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let w = InProcess::start(&v, &[], move |w| {
        w.handler("flaky", move |ctx, _payload| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                if ctx.attempt < 3 {
                    Err(JobError::retry(format!("flaky attempt {}", ctx.attempt)))
                } else {
                    Ok(())
                }
            }
        })
    });
    let f = fire(
        "flaky",
        Executor::Handler {
            name: "flaky".into(),
        },
        5,
        &[1, 2],
    );
    publish(&ch, std::slice::from_ref(&f)).await;

    let evs = tap.until(&f.fire_id, RunKind::Succeeded).await;
    let started: Vec<u32> = kinds(&evs, RunKind::Started)
        .iter()
        .map(|e| e.attempt)
        .collect();
    assert_eq!(started, vec![1, 2, 3], "three attempts in order: {evs:?}");
    let retrying = kinds(&evs, RunKind::Retrying);
    assert_eq!(retrying.len(), 2, "two retries: {evs:?}");
    assert!(
        kinds(&evs, RunKind::Skipped).is_empty(),
        "no duplicate deliveries: {evs:?}"
    );
    assert_eq!(kinds(&evs, RunKind::Succeeded).len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Backoff respected: attempt n+1 starts at least the tier delay after
    // attempt n failed (1 s, then 2 s).
    let start_of = |a: u32| {
        kinds(&evs, RunKind::Started)
            .into_iter()
            .find(|e| e.attempt == a)
            .map(|e| e.at)
            .expect("started")
    };
    let gap1 = start_of(2) - retrying[0].at;
    let gap2 = start_of(3) - retrying[1].at;
    assert!(
        gap1 >= chrono::Duration::milliseconds(950),
        "first backoff {gap1}"
    );
    assert!(
        gap2 >= chrono::Duration::milliseconds(1950),
        "second backoff {gap2}"
    );

    let depth = Dlq::new(&conn, &test_topology(), "default")
        .depth()
        .await
        .expect("dlq depth");
    assert_eq!(depth, Some(0), "nothing dead-lettered");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_job_retries_a_5xx_and_succeeds_on_2xx() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-http").await;
    let mut sink = HttpSink::start(vec![503]).await;
    let w = InProcess::start(&v, &[], |w| w);
    let f = fire(
        "hook",
        Executor::Http(sundial_core::job::HttpExecutor {
            method: "post".into(),
            url: format!("{}/hook", sink.url),
            headers: BTreeMap::from([("x-token".into(), "t1".into())]),
            body: Some("{\"n\":1}".into()),
            expect: vec![],
        }),
        3,
        &[1],
    );
    publish(&ch, std::slice::from_ref(&f)).await;
    let evs = tap.until(&f.fire_id, RunKind::Succeeded).await;
    let retry = kinds(&evs, RunKind::Retrying);
    assert_eq!(retry.len(), 1, "{evs:?}");
    assert!(
        retry[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("503")),
        "{retry:?}"
    );
    for _ in 0..2 {
        let (head, body) = sink.next().await;
        assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
        assert!(head.to_ascii_lowercase().contains("x-token: t1"), "{head}");
        assert_eq!(body, "{\"n\":1}");
    }
    w.stop().await;
}
