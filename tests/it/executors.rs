//! What executors hand the job about its run: the idempotency key and the
//! occurrence (docs/protocol.md §9), in the environment and on stdin for
//! `shell`, in headers and the body for `http`.

use std::collections::BTreeMap;

use sundial_core::{
    job::{Executor, HttpExecutor},
    protocol::run::RunKind,
};

use crate::{
    util::{Daemon, HttpSink},
    worker::{fire, publish, setup, shell, wait_for_consumers, Setup},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_job_gets_its_fire_id_occurrence_attempt_and_payload() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("x-shell").await;
    let _w = Daemon::worker(
        &v,
        "x-shell",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")],
    );
    wait_for_consumers(&v, 1).await;
    let script = "printf '%s|%s|%s|%s|%s|' \"$SUNDIAL_FIRE_ID\" \"$SUNDIAL_JOB_ID\" \
                  \"$SUNDIAL_SCHEDULED_AT\" \"$SUNDIAL_ATTEMPT\" \"$SUNDIAL_PAYLOAD\"; cat";
    let mut f = fire("ctx-shell", shell(&["/bin/sh", "-c", script]), 1, &[]);
    f.payload = serde_json::json!({"full": true, "n": 3});
    if let Executor::Shell(s) = &mut f.executor {
        // Sundial's variables win over the job's own.
        s.env.insert("SUNDIAL_FIRE_ID".into(), "forged".into());
    }
    publish(&ch, std::slice::from_ref(&f)).await;
    let evs = tap.until(&f.fire_id, RunKind::Succeeded).await;
    let output = evs
        .last()
        .and_then(|e| e.output.clone())
        .unwrap_or_default();
    let payload = f.payload.to_string();
    let at = f
        .scheduled_at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // Environment, then stdin (the same JSON).
    let want = format!("{}|ctx-shell|{at}|1|{payload}|{payload}", f.fire_id);
    assert_eq!(output, want);
    assert!(at.ends_with('Z'), "UTC with Z: {at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_job_sends_the_idempotency_key_and_the_payload_as_body() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("x-http").await;
    let mut sink = HttpSink::start(vec![200, 200]).await;
    let _w = Daemon::worker(&v, "x-http", &[]);
    wait_for_consumers(&v, 1).await;
    let url = format!("{}/run", sink.url);
    let http = |body: Option<&str>| {
        Executor::Http(HttpExecutor {
            method: "POST".into(),
            url: url.clone(),
            headers: BTreeMap::from([("x-sundial-attempt".into(), "99".into())]),
            body: body.map(str::to_string),
            expect: vec![],
        })
    };
    let mut f = fire("ctx-http", http(None), 1, &[]);
    f.payload = serde_json::json!({"report": "daily"});
    publish(&ch, std::slice::from_ref(&f)).await;
    tap.until(&f.fire_id, RunKind::Succeeded).await;
    let (head, body) = sink.next().await;
    let head = head.to_ascii_lowercase();
    let at = f
        .scheduled_at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .to_ascii_lowercase();
    for line in [
        format!("idempotency-key: {}", f.fire_id.to_ascii_lowercase()),
        format!("x-sundial-fire-id: {}", f.fire_id.to_ascii_lowercase()),
        "x-sundial-job-id: ctx-http".to_string(),
        format!("x-sundial-scheduled-at: {at}"),
        "x-sundial-attempt: 1".to_string(),
        "content-type: application/json".to_string(),
    ] {
        assert!(head.contains(&line), "{line} in {head}");
    }
    assert!(!head.contains("x-sundial-attempt: 99"), "{head}");
    assert_eq!(body, f.payload.to_string());

    // A job that sets its body keeps it.
    let g = fire("ctx-http-body", http(Some("fixed")), 1, &[]);
    publish(&ch, std::slice::from_ref(&g)).await;
    tap.until(&g.fire_id, RunKind::Succeeded).await;
    let (head, body) = sink.next().await;
    assert_eq!(body, "fixed");
    assert!(
        head.to_ascii_lowercase()
            .contains("idempotency-key: ctx-http-body@"),
        "{head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_a_running_attempt_of_any_job() {
    let Setup {
        v,
        conn,
        mut tap,
        ch,
    } = setup("x-cancel").await;
    let _w = Daemon::worker(
        &v,
        "x-cancel",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sleep")],
    );
    wait_for_consumers(&v, 1).await;
    // overlap = "allow" (the default): no scheduler would cancel it, a user may.
    let f = fire("long-sleep", shell(&["/bin/sleep", "30"]), 3, &[1]);
    publish(&ch, std::slice::from_ref(&f)).await;
    let started = tap.until(&f.fire_id, RunKind::Started).await;
    let worker = started.last().map(|e| e.worker.clone()).expect("a worker");
    let body =
        serde_json::json!({"fire_id": f.fire_id, "job_id": f.job_id, "reason": "stopped by ops"});
    let mut h = lapin::types::FieldTable::default();
    h.insert(
        "x-sundial-version".into(),
        lapin::types::AMQPValue::LongInt(1),
    );
    let cancel_ch = conn.create_channel().await.expect("channel");
    cancel_ch
        .basic_publish(
            "sundial.cancel".into(),
            worker.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            lapin::BasicProperties::default()
                .with_headers(h)
                .with_type("sundial.cancel".into())
                .with_content_type("application/json".into()),
        )
        .await
        .expect("publish cancel");
    let evs = tap.until(&f.fire_id, RunKind::Failed).await;
    let failed = evs.last().expect("a failed event");
    assert_eq!(failed.reason.as_deref(), Some("stopped by ops"), "{evs:?}");
    assert!(
        failed.duration_ms.is_some_and(|ms| ms < 25_000),
        "stopped, not run to the end: {failed:?}"
    );
}
