//! Hostile input from every door (outside checks, issue 22): names longer
//! than an AMQP short string, error texts larger than a frame, and probes of
//! pools that do not exist. Nothing crashes, nothing wedges, every answer
//! names the field.

use std::time::Duration;

use lapin::types::AMQPValue;
use serde_json::json;
use sundial_core::protocol::run::RunKind;

use crate::{
    control_client::{upsert, v1, RawClient},
    fires::{connect, noop_fire, publish, setup, InProcess},
    util::{drain, free_addr, http_call, job_apply, stderr, wait_status, Daemon, Vhost},
};

fn long(n: usize) -> String {
    "p".repeat(n)
}

/// A scheduler on `v` serving the open API on a free loopback port, ready.
fn scheduler_with_api(v: &Vhost, node: &str) -> (Daemon, String) {
    let addr = free_addr();
    let d = Daemon::start_with_env(
        v,
        node,
        &[
            ("SUNDIAL__HTTP__ENABLED", "true"),
            ("SUNDIAL__HTTP__LISTEN", &addr),
        ],
    );
    wait_status(&addr, "/readyz", 200, Duration::from_secs(30));
    (d, addr)
}

/// (status, JSON body) of an API call without a token.
fn api(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let bytes = body.map(|b| b.to_string().into_bytes());
    let (status, text) = http_call(addr, method, path, &[], bytes.as_deref())
        .unwrap_or_else(|| panic!("{method} {path}: no answer (connection dropped?)"));
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_and_huge_error_texts_never_crash_the_scheduler() {
    let v = Vhost::new("hostile-names");
    let (mut s, addr) = scheduler_with_api(&v, "hostile");
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    let job = |id: &str, pool: &str| json!({"id": id, "pool": pool, "schedule": "@every 1h", "executor": {"type": "noop"}});

    // Raw AMQP: a 300-character pool, alone and in an upsert-many.
    for (what, cmd, field) in [
        (
            "upsert",
            json!({"command": "upsert", "job": job("a", &long(300))}),
            "job.pool",
        ),
        (
            "upsert-many",
            json!({"command": "upsert-many", "jobs": [job("b", "default"), job("c", &long(300))]}),
            "jobs[1].pool",
        ),
    ] {
        let reply = client.call(cmd.to_string().as_bytes(), v1()).await;
        assert!(!reply.ok, "{what}: accepted");
        let text = format!("{reply:?}");
        assert!(
            text.contains(field),
            "{what}: the reply names {field}: {text}"
        );
    }

    // A 200 KB unknown field name: the reply arrives, the dead letter's
    // reason header is cut (a whole one would close the connection).
    let huge = format!(r#"{{"command":"list","{}":1}}"#, "f".repeat(200 * 1024));
    let reply = client.call(huge.as_bytes(), v1()).await;
    assert!(!reply.ok, "an unknown field is refused");
    let ch = conn.create_channel().await.expect("channel");
    let dead = drain(&ch, "sundial.dead.control").await;
    assert_eq!(dead.len(), 3, "one dead letter per refused command");
    for d in &dead {
        let reason = match d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-sundial-error"))
        {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => panic!("reason header: {other:?}"),
        };
        assert!(
            reason.len() <= 4096,
            "reason header of {} bytes",
            reason.len()
        );
    }
    assert!(
        dead.iter().any(|d| matches!(
            d.properties.headers().as_ref().and_then(|h| h.inner().get("x-sundial-error")),
            Some(AMQPValue::LongString(s)) if String::from_utf8_lossy(s.as_bytes()).contains("bytes in all)")
        )),
        "the long reason says it was cut"
    );

    // The CLI: refused naming the field, before and with --dry-run.
    let file = format!("[[jobs]]\nid = \"cli\"\npool = \"{}\"\nschedule = \"@every 1h\"\n[jobs.executor]\ntype = \"noop\"\n", long(300));
    let out = job_apply(&v, file.as_bytes(), "toml", &[]);
    assert!(
        !out.status.success(),
        "job apply accepted a 300-character pool"
    );
    assert!(stderr(&out).contains("job.pool"), "{}", stderr(&out));
    let out = job_apply(&v, file.as_bytes(), "toml", &["--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "dry run: {}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("invalid jobs[0].pool"),
        "the plan names it: {plan}"
    );

    // The open loopback API: the body and the path.
    let (status, body) = api(&addr, "POST", "/api/v1/jobs", Some(job("api", &long(300))));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "job.pool", "{body}");
    let path = format!("/api/v1/pools/{}/dead", long(300));
    let (status, body) = api(&addr, "GET", &path, None);
    assert_eq!(status, 404, "{body}");
    let (status, body) = api(
        &addr,
        "POST",
        &format!("{path}/purge"),
        Some(json!({"all": true})),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = api(
        &addr,
        "POST",
        "/api/v1/pools/ghost/dead/replay",
        Some(json!({"all": true})),
    );
    assert_eq!(status, 404, "replay of an unknown pool: {body}");

    assert!(s.alive(), "the scheduler died; log {}", s.log.display());
    upsert(&mut client, job("after", "default")).await;
}

/// Each probe of an unknown pool closes a channel with 404; none of them
/// may use up the API's connection or answer for another request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_probes_for_unknown_pools_leave_the_api_working() {
    let v = Vhost::new("hostile-probes");
    let (_s, addr) = scheduler_with_api(&v, "probes");
    let addr2 = addr.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..2_200 {
            let (status, body) = api(&addr2, "GET", &format!("/api/v1/pools/nope{i}/dead"), None);
            assert_eq!(status, 404, "probe {i}: {body}");
        }
    })
    .await
    .expect("probes");
    let (status, body) = api(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"id": "after-probes", "schedule": "@every 1h", "executor": {"type": "noop"}})),
    );
    assert_eq!(status, 200, "a write after 2,200 probes: {body}");
    let (status, body) = api(&addr, "GET", "/api/v1/pools/default/dead", None);
    assert_eq!(status, 200, "a dead-letter read after the probes: {body}");

    // The scheduler's own connection: one upsert-many naming 2,100
    // unknown pools gets its reply.
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    let jobs: Vec<_> = (0..2_100)
        .map(|i| json!({"id": format!("j{i}"), "pool": format!("unknown{i}"), "schedule": "@every 1h", "executor": {"type": "noop"}}))
        .collect();
    let reply = client
        .call(
            json!({"command": "upsert-many", "jobs": jobs})
                .to_string()
                .as_bytes(),
            v1(),
        )
        .await;
    assert!(!reply.ok, "jobs of pools without queues are refused");
    assert!(format!("{reply:?}").contains("pool"), "{reply:?}");
    upsert(
        &mut client,
        json!({"id": "still-fine", "schedule": "@every 1h", "executor": {"type": "noop"}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_with_names_too_long_for_amqp_is_dead_lettered_and_the_worker_goes_on() {
    let mut s = setup("hostile-fire").await;
    let w = InProcess::start(&s.v, &[], |b| b);
    crate::fires::wait_for_consumers(&s.v, 1).await;
    let mut bad_id = noop_fire("ok");
    bad_id.job_id = long(300);
    bad_id.fire_id = "bad-id@1".into();
    let mut bad_pool = noop_fire("ok2");
    bad_pool.pool = long(300);
    bad_pool.fire_id = "bad-pool@1".into();
    // A publish executor whose routing key no AMQP publish can carry.
    let mut bad_key = noop_fire("ok3");
    bad_key.fire_id = "bad-key@1".into();
    bad_key.executor = sundial_core::job::Executor::Publish(sundial_core::job::PublishExecutor {
        exchange: "elsewhere".into(),
        routing_key: long(300),
    });
    // Routed as a fire of the default pool; its body names the long pool.
    for f in [&bad_id, &bad_pool, &bad_key] {
        let enc = sundial_core::codec::encode(f).expect("encodes");
        sundial_amqp::publish::publish_confirmed(
            &s.ch,
            "sundial.fire",
            &sundial_core::topology::Topology::work_routing_key("default", f.shard),
            &enc,
            || {},
        )
        .await
        .expect("published");
    }
    let ch = s.conn.create_channel().await.expect("channel");
    let mut letters = sundial_amqp::broker::consume_no_ack(&ch, "sundial.dead.default")
        .await
        .expect("consume the dead letters");
    let dead = crate::util::bounded("three dead letters", async {
        let mut dead = Vec::new();
        while dead.len() < 3 {
            use futures_util::StreamExt;
            let d = letters
                .next()
                .await
                .expect("consumer open")
                .expect("delivery");
            dead.push(d);
        }
        dead
    })
    .await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| {
            sundial_amqp::broker::header_string(&d.properties, "x-sundial-error")
                .unwrap_or_default()
        })
        .collect();
    assert!(reasons.iter().any(|r| r.contains("job_id")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("pool")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("executor.routing_key")),
        "{reasons:?}"
    );
    // The worker still runs fires (no prefetch slot held, no dead task).
    let good = noop_fire("good");
    publish(&s.ch, std::slice::from_ref(&good)).await;
    s.tap.until(&good.fire_id, RunKind::Succeeded).await;
    w.stop().await;
}

/// lapin keeps a broker-closed channel's error for its id: once ids wrap at
/// `channel_max` (2,047), a new channel on such an id fails at once with
/// the old error. `broker::open_channel` skips those ids (the lease
/// connection gets a 405 for every shard a peer still holds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_opens_after_channel_ids_closed_by_the_broker_are_reused() {
    let v = Vhost::new("hostile-ids");
    let conn = connect(&v).await;
    // Every other channel id closed by the broker (404), the rest closed by
    // us; then past channel_max, so ids are reused.
    for i in 0..2_100 {
        let Ok(ch) = conn.create_channel().await else {
            continue;
        };
        if i % 2 == 0 {
            let r = ch
                .queue_declare(
                    format!("missing-{i}").as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await;
            assert!(r.is_err(), "passive declare of a missing queue");
        } else {
            ch.close(200, "done".into()).await.expect("close");
        }
    }
    // What lapin does (if this starts failing, lapin fixed it).
    let mut plain_failures = 0;
    for _ in 0..4 {
        match conn.create_channel().await {
            Ok(ch) => {
                let _ = ch.close(200, "done".into()).await;
            }
            Err(_) => plain_failures += 1,
        }
    }
    assert!(
        plain_failures > 0,
        "lapin reused a closed id without its old error"
    );
    for _ in 0..8 {
        let ch = crate::util::bounded("open_channel", sundial_amqp::broker::open_channel(&conn))
            .await
            .expect("a channel opens on a connection with closed ids");
        ch.queue_declare(
            "present".into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("and works");
        ch.close(200, "done".into()).await.expect("close");
    }
}

/// Idle clients cannot take the process's file handles: the HTTP endpoint
/// serves at most 128 connections (more are closed at accept) and drops a
/// client that sends no request headers within 10 s, so `/readyz` answers
/// again and the broker connections never run out of handles.
#[test]
fn idle_http_clients_are_bounded_and_dropped() {
    let v = Vhost::new("hostile-idle");
    let (s, addr) = scheduler_with_api(&v, "idle");
    let pid = s.pid().expect("running");
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = fds();
    let idle: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(idle.len() >= 250, "connected {}", idle.len());
    // The server accepts them all (it closes those past its cap at once):
    // wait until its accept queue is drained, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut during = fds();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = fds();
        if now == during || std::time::Instant::now() > deadline {
            break;
        }
        during = now;
    }
    assert!(
        during <= before + 140,
        "300 idle clients hold {} more file handles (cap 128)",
        during.saturating_sub(before)
    );
    // The idle ones are dropped within the header timeout, and it answers
    // while they are still connected.
    wait_status(&addr, "/readyz", 200, Duration::from_secs(30));
    drop(idle);
}
