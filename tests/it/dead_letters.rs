//! Dead letters: what keeps failing, is refused or cannot be read ends in
//! `sundial.dead.{pool}` with its reason; `sundial dlq` lists, shows,
//! replays, purges and watches them; the DlqWatcher alerts when they grow.

use std::{collections::HashMap, time::Duration};

use lapin::{options::BasicPublishOptions, BasicProperties};
use sundial_amqp::dlq::Dlq;
use sundial_core::{
    job::Executor,
    protocol::{headers, run::RunKind},
};
use sundial_worker::JobError;

use crate::util::{stderr, stdout, sundial, test_topology, Daemon, HttpSink};

use crate::fires::{
    fire, kinds, publish, setup, shell, wait_for_consumers, EventTap, InProcess, Setup,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_job_is_dead_lettered_with_headers_and_replays() {
    let Setup {
        v,
        conn,
        tap: _,
        ch,
    } = setup("w-dead").await;
    // Every step one by one (the in-process worker publishes all run
    // events): the history leaves out the start of an attempt that ended
    // in the same batch, and these tests count attempts by their starts.
    let mut tap = EventTap::events(&conn).await;
    let w = InProcess::start(&v, &[], |w| {
        w.handler("broken", |_ctx, _payload| async {
            Err(JobError::retry("upstream says no"))
        })
    });
    let f = fire(
        "broken",
        Executor::Handler {
            name: "broken".into(),
        },
        3,
        &[1],
    );
    publish(&ch, std::slice::from_ref(&f)).await;

    let evs = tap.until(&f.fire_id, RunKind::Dead).await;
    let started: Vec<u32> = kinds(&evs, RunKind::Started)
        .iter()
        .map(|e| e.attempt)
        .collect();
    assert_eq!(started, vec![1, 2, 3], "exactly three attempts: {evs:?}");
    assert!(
        kinds(&evs, RunKind::Skipped).is_empty(),
        "no duplicate deliveries: {evs:?}"
    );
    let dead = kinds(&evs, RunKind::Dead);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason.as_deref(), Some("upstream says no"));

    let topo = test_topology();
    let dlq = Dlq::new(&conn, &topo, "default");
    let letters = dlq.list().await.expect("list");
    assert_eq!(letters.len(), 1, "one dead letter: {letters:?}");
    let d = &letters[0];
    assert_eq!(d.fire_id.as_deref(), Some(f.fire_id.as_str()));
    assert_eq!(d.error, "upstream says no");
    assert_eq!(d.attempts, Some(3));
    for h in [
        headers::ERROR,
        headers::ATTEMPTS,
        headers::FIRST_FAILURE,
        headers::LAST_FAILURE,
        headers::WORKER,
    ] {
        assert!(d.headers.contains_key(h), "header {h} in {:?}", d.headers);
    }
    assert_eq!(d.headers[headers::WORKER], "in-process");
    assert!(d.headers[headers::FIRST_FAILURE] < d.headers[headers::LAST_FAILURE]);

    // The CLI lists it and replays it: attempted again from attempt 1.
    let mut list = sundial();
    list.args(["dlq", "list", "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4");
    let out = crate::util::output_within(list, Duration::from_secs(60), "sundial dlq list");
    assert!(out.status.success(), "dlq list: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&f.fire_id) && stdout(&out).contains("upstream says no"),
        "{}",
        stdout(&out)
    );
    let mut replay = sundial();
    replay
        .args(["dlq", "replay", &f.fire_id, "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4");
    let out = crate::util::output_within(replay, Duration::from_secs(60), "sundial dlq replay");
    assert!(out.status.success(), "dlq replay: {}", stderr(&out));
    let again = tap.until(&f.fire_id, RunKind::Started).await;
    assert_eq!(again.last().map(|e| e.attempt), Some(1), "attempts reset");
    let dead_again = tap.until(&f.fire_id, RunKind::Dead).await;
    assert_eq!(
        kinds(&dead_again, RunKind::Started).len(),
        2,
        "attempts 2 and 3 after the replay: {dead_again:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_refused_shell_and_garbage_are_dead_lettered_and_worker_goes_on() {
    let Setup {
        v,
        conn,
        tap: _,
        ch,
    } = setup("w-poison").await;
    // Every step one by one (the in-process worker publishes all run
    // events): the history leaves out the start of an attempt that ended
    // in the same batch, and these tests count attempts by their starts.
    let mut tap = EventTap::events(&conn).await;
    let w = InProcess::start(&v, &[], |w| {
        w.handler("strict", |_ctx, _payload| async {
            Err(JobError::Abort("payload is not a report".into()))
        })
    });
    let abort = fire(
        "strict",
        Executor::Handler {
            name: "strict".into(),
        },
        5,
        &[1],
    );
    let shell = fire("shelly", shell(&["/bin/echo", "hi"]), 5, &[1]);
    publish(&ch, &[abort.clone(), shell.clone()]).await;
    // Garbage: no type, no version, not bincode.
    ch.basic_publish(
        "sundial.fire".into(),
        "default.0".into(),
        BasicPublishOptions::default(),
        b"definitely not a fire event",
        BasicProperties::default().with_message_id("garbage-1".into()),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");

    let a = tap.until(&abort.fire_id, RunKind::Dead).await;
    assert_eq!(kinds(&a, RunKind::Started).len(), 1, "abort: no retry");
    let s = tap.until(&shell.fire_id, RunKind::Dead).await;
    assert!(
        s.last()
            .and_then(|e| e.reason.as_deref())
            .is_some_and(|r| r.starts_with("executor-not-allowed")),
        "{s:?}"
    );

    // Still consuming: a good fire succeeds.
    let ok = fire("fine", Executor::Noop, 1, &[]);
    publish(&ch, std::slice::from_ref(&ok)).await;
    tap.until(&ok.fire_id, RunKind::Succeeded).await;

    let letters = Dlq::new(&conn, &test_topology(), "default")
        .list()
        .await
        .expect("list");
    let reasons: HashMap<String, String> = letters
        .iter()
        .map(|d| (d.fire_id.clone().unwrap_or_default(), d.error.clone()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[&abort.fire_id], "payload is not a report");
    assert!(reasons[&shell.fire_id].contains("/bin/echo is not in"));
    assert!(
        reasons["garbage-1"].starts_with("undecodable fire event"),
        "{reasons:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_show_purge_and_watch() {
    let Setup {
        v,
        conn,
        mut tap,
        ch,
    } = setup("w-dlqcli").await;
    let w = InProcess::start(&v, &[], |w| {
        w.handler("refuse", |_ctx, _payload| async {
            Err(JobError::Abort("refused on purpose".into()))
        })
    });
    let refuse = || Executor::Handler {
        name: "refuse".into(),
    };
    let (p1, p2) = (fire("p1", refuse(), 1, &[]), fire("p2", refuse(), 1, &[]));
    publish(&ch, &[p1.clone(), p2.clone()]).await;
    tap.until(&p1.fire_id, RunKind::Dead).await;
    tap.until(&p2.fire_id, RunKind::Dead).await;
    // Bounded: a CLI that hangs after its work fails this test, loudly.
    let cli = |args: &[&str]| {
        let mut c = sundial();
        c.arg("dlq").args(args).args(["--broker", &v.url()]);
        crate::util::output_within(c, Duration::from_secs(60), &format!("sundial dlq {args:?}"))
    };

    let out = cli(&["show", &p1.fire_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("error:    refused on purpose"), "{text}");
    assert!(text.contains("x-sundial-attempts: 1"), "{text}");
    assert!(
        text.contains("\"job_id\": \"p1\""),
        "the fire event: {text}"
    );
    let out = cli(&["show", "nope@2026-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(1), "unknown fire id fails");

    let out = cli(&["purge", "--job", "p1"]);
    assert_eq!(out.status.code(), Some(2), "purge needs --yes");
    let out = cli(&["purge", "--job", "p1", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 purged"), "{}", stdout(&out));
    let topo = test_topology();
    let left: Vec<Option<String>> = Dlq::new(&conn, &topo, "default")
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.job_id)
        .collect();
    assert_eq!(left, vec![Some("p2".to_string())], "only p1 purged");

    // `dlq watch` prints new dead letters as they arrive.
    let mut watch = sundial()
        .args(["dlq", "watch", "--json", "--broker", &v.url()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dlq watch starts");
    let out = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The watch queue must exist before the dead letter: send new fires
    // (new ids: a repeated one is dropped as a duplicate) until one is seen.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut tries = 0;
    let line = loop {
        tries += 1;
        let mut p3 = fire("p3", refuse(), 1, &[]);
        p3.fire_id = format!("p3@try-{tries}");
        publish(&ch, std::slice::from_ref(&p3)).await;
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(3)) {
            break line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dlq watch printed nothing"
        );
    };
    let _ = watch.kill();
    let _ = watch.wait();
    let seen: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert!(
        seen["fire_id"]
            .as_str()
            .is_some_and(|f| f.starts_with("p3@try-")),
        "{seen}"
    );
    assert_eq!(seen["job_id"], "p3");
    assert_eq!(seen["error"], "refused on purpose");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_watcher_alerts_the_webhook_when_dead_letters_grow() {
    let Setup {
        v, conn: _conn, ch, ..
    } = setup("w-alert").await;
    let mut sink = HttpSink::start(vec![]).await;
    let _w = Daemon::worker(
        &v,
        "watched",
        &[
            (
                "SUNDIAL__WORKER__DLQ_WEBHOOK",
                &format!("{}/alert", sink.url),
            ),
            ("SUNDIAL__WORKER__DLQ_CHECK_INTERVAL", "1s"),
        ],
    );
    wait_for_consumers(&v, 1).await;
    let f = fire(
        "doomed",
        Executor::Handler {
            name: "nobody".into(),
        },
        1,
        &[],
    );
    publish(&ch, std::slice::from_ref(&f)).await;
    let (head, body) = sink.next().await;
    assert!(head.starts_with("POST /alert"), "{head}");
    let alert: serde_json::Value = serde_json::from_str(&body).expect("JSON alert");
    assert_eq!(alert["alert"], "dead-letters-growing");
    assert_eq!(alert["pool"], "default");
    assert_eq!(alert["queue"], "sundial.dead.default");
    assert_eq!(alert["depth"], 1);
}
