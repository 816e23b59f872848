//! With `control.hmac_key` set: the scheduler refuses unsigned, badly signed,
//! old and replayed commands (error reply + dead letter), the CLI signs; the
//! scheduler signs fire events and a worker refuses a shell job from an
//! unsigned one.

use lapin::types::AMQPValue;
use sundial_core::{protocol::run::RunKind, sign::sign_command};

use crate::{
    control_client::{v1, RawClient},
    fires::{connect, publish, wait_for_consumers, EventTap},
    util::{drain, stderr, sundial, Daemon, SchedulerProcess, Vhost},
};

const KEY: &str = "it-signing-key-0123456789";

fn signed(body: &[u8], at: i64, key: &str) -> lapin::BasicProperties {
    signed_with(body, at, key, None)
}

fn signed_with(body: &[u8], at: i64, key: &str, nonce: Option<&str>) -> lapin::BasicProperties {
    let props = v1();
    let mut h = props.headers().clone().unwrap_or_default();
    h.insert(
        "x-sundial-signature".into(),
        AMQPValue::LongString(
            sign_command(key.as_bytes(), at, nonce, body)
                .as_str()
                .into(),
        ),
    );
    h.insert("x-sundial-signed-at".into(), AMQPValue::LongLongInt(at));
    if let Some(n) = nonce {
        h.insert("x-sundial-nonce".into(), AMQPValue::LongString(n.into()));
    }
    props.with_headers(h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_must_be_signed_and_fresh_and_fires_are_signed() {
    let v = Vhost::new("sign");
    let addr = crate::util::free_addr();
    let key_env = [
        ("SUNDIAL__CONTROL__HMAC_KEY", KEY),
        ("SUNDIAL__HTTP__ENABLED", "true"),
        ("SUNDIAL__HTTP__LISTEN", addr.as_str()),
    ];
    let _s = SchedulerProcess::start_with_env(&v, "signer", &key_env);
    crate::util::wait_status(&addr, "/readyz", 200, std::time::Duration::from_secs(30));
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    let now = chrono::Utc::now().timestamp();
    let body = |id: &str| {
        serde_json::json!({"command": "upsert", "job": {"id": id, "schedule": "@every 1h", "executor": {"type": "noop"}}})
            .to_string()
            .into_bytes()
    };

    let cases: Vec<(&str, Vec<u8>, lapin::BasicProperties, &str)> = vec![
        ("unsigned", body("u"), v1(), "missing x-sundial-signature"),
        (
            "wrong key",
            body("w"),
            signed(&body("w"), now, "not-the-key-0123456789"),
            "does not match",
        ),
        (
            "altered body",
            body("a2"),
            signed(&body("a1"), now, KEY),
            "does not match",
        ),
        (
            "signed 10 minutes ago",
            body("o"),
            signed(&body("o"), now - 600, KEY),
            "older than",
        ),
    ];
    for (what, b, props, expect) in cases {
        let reply = client.call(&b, props).await;
        assert!(!reply.ok, "{what}: accepted");
        let err = reply.error.expect("error");
        assert_eq!(err.field, "signature", "{what}");
        assert!(err.message.contains(expect), "{what}: {}", err.message);
    }
    let good = body("good");
    let props = signed(&good, now, KEY);
    assert!(
        client.call(&good, props.clone()).await.ok,
        "a fresh signed command"
    );
    let replay = client.call(&good, props).await;
    assert!(!replay.ok, "the same signed command again");
    assert!(replay
        .error
        .expect("error")
        .message
        .contains("already used"));

    // Honest repeats in one second carry their own nonces: both accepted;
    // the same nonce again is a replay.
    let again = body("again");
    for nonce in ["n-1", "n-2"] {
        let reply = client
            .call(&again, signed_with(&again, now, KEY, Some(nonce)))
            .await;
        assert!(reply.ok, "repeat with nonce {nonce}: {:?}", reply.error);
    }
    let replay = client
        .call(&again, signed_with(&again, now, KEY, Some("n-2")))
        .await;
    assert!(!replay.ok, "the same nonce again");

    // Refused commands are dead-lettered with the reason.
    let ch = conn.create_channel().await.expect("channel");
    let dead = drain(&ch, "sundial.dead.control").await.len();
    assert_eq!(dead, 6, "four bad commands and two replays");

    // The CLI signs with the configured key, and fails clearly without it.
    let file = std::env::temp_dir().join(format!("{}-jobs.toml", v.name));
    std::fs::write(
        &file,
        "[[jobs]]\nid = \"shelly\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"shell\"\ncommand = [\"/bin/true\"]\n",
    )
    .expect("write");
    let apply = |key: Option<&str>| {
        let mut c = sundial();
        c.args(["job", "apply", "-f"])
            .arg(&file)
            .args(["--broker", &v.url()])
            .env("SUNDIAL__TOPOLOGY__SHARDS", "4");
        if let Some(k) = key {
            c.env("SUNDIAL__CONTROL__HMAC_KEY", k);
        }
        c.output().expect("job apply runs")
    };
    let out = apply(None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("signature"), "{}", stderr(&out));

    // Fires of the scheduler are signed: a worker with the key runs the
    // shell job; an unsigned shell fire published by anyone else is refused.
    let mut tap = EventTap::new(&conn).await;
    let _w = Daemon::worker(
        &v,
        "sig-w",
        &[
            ("SUNDIAL__CONTROL__HMAC_KEY", KEY),
            ("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/true"),
        ],
    );
    wait_for_consumers(&v, 1).await;
    let out = apply(Some(KEY));
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}", stderr(&out));
    loop {
        let ev = tap.next().await;
        if ev.job_id == "shelly" && ev.kind == RunKind::Succeeded {
            break;
        }
    }
    let mut forged = crate::fires::noop_fire("forged");
    forged.executor = sundial_core::job::Executor::Shell(sundial_core::job::ShellExecutor {
        command: vec!["/bin/true".into()],
        env: Default::default(),
        cwd: None,
    });
    let pch = sundial_amqp::broker::confirming_channel(&conn)
        .await
        .expect("channel");
    publish(&pch, std::slice::from_ref(&forged)).await;
    let evs = tap.until(&forged.fire_id, RunKind::Dead).await;
    let reason = evs
        .last()
        .and_then(|e| e.reason.clone())
        .unwrap_or_default();
    assert!(reason.starts_with("signature-invalid"), "{reason}");

    // Every executor is verified, not only shell: an unsigned http fire
    // aimed at the scheduler's open API (which signs what it forwards) is
    // dead-lettered, never sent: no job is created.
    let evil = r#"{"id": "evil", "schedule": "@every 1h", "executor": {"type": "shell", "command": ["/bin/true"]}}"#;
    let mut forged_http = crate::fires::noop_fire("forged-http");
    forged_http.executor = sundial_core::job::Executor::Http(sundial_core::job::HttpExecutor {
        method: "POST".into(),
        url: format!("http://{addr}/api/v1/jobs"),
        headers: Default::default(),
        body: Some(evil.into()),
        expect: Vec::new(),
    });
    publish(&pch, std::slice::from_ref(&forged_http)).await;
    let evs = tap.until(&forged_http.fire_id, RunKind::Dead).await;
    let reason = evs
        .last()
        .and_then(|e| e.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("unsigned fire event"),
        "an unsigned fire says so: {reason}"
    );
    assert!(
        !evs.iter().any(|e| e.kind == RunKind::Succeeded),
        "the unsigned http fire ran"
    );
    let (status, _) = crate::util::http_get(&addr, "/api/v1/jobs/evil").expect("answer");
    assert_eq!(status, 404, "the forged fire created a job");

    // A job's own http request (it carries the fire headers) cannot write
    // through the open API while a key is set; the same request without
    // them (an operator's curl) can.
    let headers = [("X-Sundial-Fire-Id", "some-job@2026-01-01T00:00:00.000Z")];
    let (status, text) = crate::util::http_call(
        &addr,
        "POST",
        "/api/v1/jobs",
        &headers,
        Some(evil.as_bytes()),
    )
    .expect("answer");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("x-sundial-fire-id"), "{text}");
    let fine = r#"{"id": "by-hand", "schedule": "@every 1h", "executor": {"type": "noop"}}"#;
    let (status, text) =
        crate::util::http_call(&addr, "POST", "/api/v1/jobs", &[], Some(fine.as_bytes()))
            .expect("answer");
    assert_eq!(status, 200, "{text}");

    // The CLI sends the same trigger twice in one second: both accepted.
    for i in 0..2 {
        let out = sundial()
            .args(["job", "trigger", "shelly", "--broker", &v.url()])
            .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
            .env("SUNDIAL__CONTROL__HMAC_KEY", KEY)
            .output()
            .expect("job trigger runs");
        assert!(out.status.success(), "trigger {i}: {}", stderr(&out));
    }
}
