//! Executors: what they hand the job about its run (the idempotency key and
//! the occurrence, docs/protocol.md §9: environment and stdin for `shell`,
//! headers and body for `http`), timeouts that kill the whole process group,
//! the `publish` executor, secrets from the worker's environment, and cancel
//! requests.

use std::collections::BTreeMap;

use sundial_core::{
    job::{Executor, HttpExecutor},
    protocol::run::RunKind,
    HumanDuration,
};

use crate::util::{Daemon, HttpSink};

use crate::fires::{fire, kinds, publish, setup, shell, wait_for_consumers, InProcess, Setup};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_group() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-timeout").await;
    let w = InProcess::start(&v, &["/bin/sh"], |w| w);
    let pidfile = std::env::temp_dir().join(format!("{}-grandchild.pid", v.name));
    let _ = std::fs::remove_file(&pidfile);
    let mut f = fire(
        "hang",
        shell(&[
            "/bin/sh",
            "-c",
            &format!("sleep 300 & echo $! > {}; wait", pidfile.display()),
        ]),
        1,
        &[],
    );
    f.timeout = HumanDuration::from_secs(1);
    publish(&ch, std::slice::from_ref(&f)).await;
    let evs = tap.until(&f.fire_id, RunKind::Dead).await;
    assert_eq!(
        evs.last().and_then(|e| e.reason.as_deref()),
        Some("timed out after 1s"),
        "{evs:?}"
    );
    let pid = std::fs::read_to_string(&pidfile).expect("the job wrote its child's pid");
    let pid = pid.trim();
    // Gone, or a zombie waiting for an init that does not reap.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let alive = state
        .as_deref()
        .and_then(|s| s.rsplit(')').next())
        .map(|rest| rest.trim_start().starts_with(|c| c != 'Z' && c != 'X'))
        .unwrap_or(false);
    assert!(!alive, "grandchild {pid} still running: {state:?}");
    let _ = std::fs::remove_file(&pidfile);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_job_hands_the_payload_to_your_queue() {
    let Setup {
        v,
        conn,
        mut tap,
        ch,
    } = setup("w-publish").await;
    let w = InProcess::start(&v, &[], |w| w);
    let target = conn.create_channel().await.expect("channel");
    target
        .queue_declare(
            "it.target".into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("target queue");
    let to = |exchange: &str| {
        Executor::Publish(sundial_core::job::PublishExecutor {
            exchange: exchange.into(),
            routing_key: "it.target".into(),
        })
    };
    // Through the default exchange to the queue named by the routing key.
    let good = fire("forward", to(""), 1, &[]);
    // A missing exchange fails the attempt (retried), not the worker.
    let bad = fire("misrouted", to("no.such.exchange"), 2, &[1]);
    publish(&ch, &[good.clone(), bad.clone()]).await;
    tap.until(&good.fire_id, RunKind::Succeeded).await;
    let got = target
        .basic_get(
            "it.target".into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic.get")
        .expect("the payload arrived");
    let body: serde_json::Value = serde_json::from_slice(&got.delivery.data).expect("JSON");
    assert_eq!(body, good.payload);
    assert_eq!(
        got.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string()),
        Some(good.fire_id.clone())
    );
    let evs = tap.until(&bad.fire_id, RunKind::Dead).await;
    assert_eq!(kinds(&evs, RunKind::Retrying).len(), 1, "{evs:?}");
    assert!(
        evs.last()
            .and_then(|e| e.reason.as_deref())
            .is_some_and(|r| r.contains("no.such.exchange")),
        "{evs:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_env_secrets_come_from_the_workers_environment() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-secret").await;
    let _w = Daemon::worker(
        &v,
        "keeper",
        &[
            ("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh"),
            ("IT_DB_PASSWORD", "s3cret"),
        ],
    );
    wait_for_consumers(&v, 1).await;
    let job = |id: &str, var: &str| {
        let mut f = fire(
            id,
            shell(&["/bin/sh", "-c", "test \"$PASSWORD\" = s3cret"]),
            1,
            &[],
        );
        if let Executor::Shell(s) = &mut f.executor {
            s.env.insert("PASSWORD".into(), format!("${{{var}}}"));
        }
        f
    };
    let (ok, missing) = (
        job("uses-secret", "IT_DB_PASSWORD"),
        job("no-secret", "IT_NOT_SET"),
    );
    publish(&ch, &[ok.clone(), missing.clone()]).await;
    tap.until(&ok.fire_id, RunKind::Succeeded).await;
    let evs = tap.until(&missing.fire_id, RunKind::Dead).await;
    let reason = evs
        .last()
        .and_then(|e| e.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("${IT_NOT_SET} is not set in this worker's environment"),
        "{reason}"
    );
}
