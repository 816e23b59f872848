//! The scheduler as users run it: a `sundial scheduler` process, jobs
//! defined through the control queue (raw AMQP or the CLI), fires observed on
//! the work queues.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, Consumer,
};
use sundial_actors::broker::meta_of;
use sundial_core::{codec::decode, protocol::control::Reply, topology::shard_of};

use crate::util::{bounded, drain, stderr, sundial, FireTap, SchedulerProcess, Vhost, TEST_SHARDS};

async fn connect(v: &Vhost) -> Connection {
    bounded(
        "connect",
        sundial_actors::broker::connect(&v.url(), "it-scheduler"),
    )
    .await
    .expect("connects")
}

/// A raw control client, as any AMQP client would be: an exclusive reply
/// queue, JSON bodies, the version header.
pub(crate) struct RawClient {
    ch: Channel,
    reply_queue: String,
    replies: Consumer,
    n: u32,
    /// The properties of the last reply.
    pub(crate) last_props: Option<BasicProperties>,
}

impl RawClient {
    pub(crate) async fn new(conn: &Connection) -> Self {
        let ch = conn.create_channel().await.expect("channel");
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("reply queue");
        let reply_queue = q.name().to_string();
        let replies = ch
            .basic_consume(
                reply_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume replies");
        Self {
            ch,
            reply_queue,
            replies,
            n: 0,
            last_props: None,
        }
    }

    /// Publishes `body` with `props` (plus reply_to and correlation_id) and
    /// returns the reply.
    pub(crate) async fn call(&mut self, body: &[u8], props: BasicProperties) -> Reply {
        self.n += 1;
        let corr = format!("c{}", self.n);
        let props = props
            .with_reply_to(self.reply_queue.as_str().into())
            .with_correlation_id(corr.as_str().into());
        self.ch
            .basic_publish(
                "sundial.control".into(),
                "".into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .expect("publish command");
        let (replies, last_props) = (&mut self.replies, &mut self.last_props);
        bounded("reply", async {
            loop {
                let d = replies
                    .next()
                    .await
                    .expect("reply stream open")
                    .expect("reply delivery");
                if d.properties.correlation_id().as_ref().map(|c| c.as_str()) == Some(corr.as_str())
                {
                    *last_props = Some(d.properties.clone());
                    return decode::<Reply>(&meta_of(&d.properties), &d.data)
                        .expect("reply decodes");
                }
            }
        })
        .await
    }
}

pub(crate) fn v1() -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert("x-sundial-version".into(), AMQPValue::LongInt(1));
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(h)
}

async fn upsert(client: &mut RawClient, job: serde_json::Value) {
    let body = serde_json::json!({"command": "upsert", "job": job});
    let reply = client.call(body.to_string().as_bytes(), v1()).await;
    assert!(reply.ok, "upsert refused: {reply:?}");
}

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
async fn raw_json_from_the_protocol_doc_creates_a_job() {
    let v = Vhost::new("sched-raw");
    let _s = SchedulerProcess::start(&v, "raw");
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    // docs/protocol.md §3, first example, byte for byte.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md"))
        .expect("protocol.md");
    let line = doc
        .lines()
        .find(|l| l.starts_with("{\"command\": \"upsert\""))
        .expect("upsert example");
    let reply = client.call(line.as_bytes(), v1()).await;
    assert!(reply.ok, "{reply:?}");
    let reply = client
        .call(br#"{"command": "get", "id": "nightly-backup"}"#, v1())
        .await;
    assert!(reply.ok, "{reply:?}");
    let result = reply.result.expect("get has a result");
    assert_eq!(result["timezone"], "Asia/Shanghai");
    assert!(
        result["next"]
            .as_str()
            .is_some_and(|n| n.ends_with("T19:00:00.000Z")),
        "03:00 Shanghai is 19:00Z: {result}"
    );
    // The same job again is a no-op that still answers ok.
    let again = client.call(line.as_bytes(), v1()).await;
    assert_eq!(again.result.expect("result")["changed"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_control_input_is_answered_naming_the_problem_and_dead_lettered() {
    let v = Vhost::new("sched-bad");
    let _s = SchedulerProcess::start(&v, "bad");
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    let job = |patch: &str| {
        format!(
            r#"{{"command":"upsert","job":{{"id":"a","schedule":"* * * * *","executor":{{"type":"noop"}}{patch}}}}}"#
        )
    };
    let mut wrong_version = FieldTable::default();
    wrong_version.insert("x-sundial-version".into(), AMQPValue::LongInt(99));
    let cases: Vec<(&str, Vec<u8>, BasicProperties, &str)> = vec![
        ("not json", b"hello".to_vec(), v1(), "body"),
        (
            "truncated json",
            br#"{"command":"get","#.to_vec(),
            v1(),
            "body",
        ),
        (
            "unknown command",
            br#"{"command":"explode","id":"a"}"#.to_vec(),
            v1(),
            "command",
        ),
        (
            "missing command",
            br#"{"id":"a"}"#.to_vec(),
            v1(),
            "command",
        ),
        (
            "unknown field",
            br#"{"command":"get","id":"a","force":true}"#.to_vec(),
            v1(),
            "force",
        ),
        (
            "missing id",
            br#"{"command":"delete"}"#.to_vec(),
            v1(),
            "id",
        ),
        (
            "bad schedule",
            job("").replace("* * * * *", "61 * * * *").into_bytes(),
            v1(),
            "job.schedule",
        ),
        (
            "bad zone",
            job(r#","timezone":"Mars/Olympus""#).into_bytes(),
            v1(),
            "job.timezone",
        ),
        (
            "bad attempts",
            job(r#","retry":{"max_attempts":0}"#).into_bytes(),
            v1(),
            "job.retry.max_attempts",
        ),
        (
            "never fires",
            job("").replace("* * * * *", "0 0 30 2 *").into_bytes(),
            v1(),
            "job.schedule",
        ),
        (
            "unknown job field",
            job(r#","colour":"red""#).into_bytes(),
            v1(),
            "job.colour",
        ),
        ("oversized", vec![b' '; 1024 * 1024 + 1], v1(), "body"),
        (
            "wrong version",
            br#"{"command":"list"}"#.to_vec(),
            BasicProperties::default().with_headers(wrong_version),
            "x-sundial-version",
        ),
        (
            "missing version",
            br#"{"command":"list"}"#.to_vec(),
            BasicProperties::default(),
            "x-sundial-version",
        ),
        (
            "wrong type",
            br#"{"command":"list"}"#.to_vec(),
            v1().with_type("sundial.fire".into()),
            "type",
        ),
        (
            "wrong content type",
            br#"{"command":"list"}"#.to_vec(),
            v1().with_content_type("text/plain".into()),
            "content_type",
        ),
        (
            "unknown job",
            br#"{"command":"pause","id":"ghost"}"#.to_vec(),
            v1(),
            "id",
        ),
    ];
    for (what, body, props, field) in &cases {
        let reply = client.call(body, props.clone()).await;
        assert!(!reply.ok, "{what}: accepted");
        let err = reply.error.unwrap_or_else(|| panic!("{what}: no error"));
        assert_eq!(&err.field, field, "{what}: {}", err.message);
        assert!(!err.message.is_empty(), "{what}");
    }
    // Every refused command is in the control DLQ with its reason.
    let ch = conn.create_channel().await.expect("channel");
    let dead_letters = drain(&ch, "sundial.dead.control").await;
    for d in &dead_letters {
        let reason = d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-sundial-error").cloned());
        assert!(
            matches!(reason, Some(AMQPValue::LongString(ref s)) if !s.as_bytes().is_empty()),
            "dead letter without reason"
        );
    }
    let dead = dead_letters.len();
    assert_eq!(dead, cases.len(), "one dead letter per refused command");
    // And the scheduler still works.
    upsert(
        &mut client,
        serde_json::json!({"id": "after", "schedule": "@every 1h", "executor": {"type": "noop"}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_applies_each_misfire_policy_and_fires_nothing_twice() {
    let v = Vhost::new("sched-misfire");
    let mut s = SchedulerProcess::start(&v, "m1");
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    for (id, policy) in [
        ("once", "fire-once"),
        ("catch", "catch-up"),
        ("skip", "skip"),
    ] {
        upsert(&mut client, serde_json::json!({"id": id, "schedule": "* * * * * *", "executor": {"type": "noop"}, "misfire": {"policy": policy, "grace": "1m"}})).await;
    }
    let ids = ["once", "catch", "skip"];
    let mut tap = FireTap::new(&conn).await;
    let mut fires: Vec<Vec<DateTime<Utc>>> = vec![Vec::new(); 3];
    let index = |job: &str| ids.iter().position(|i| *i == job).expect("known job");
    while fires.iter().any(|f| f.len() < 2) {
        let (ev, _) = tap.next_any().await;
        fires[index(&ev.job_id)].push(ev.scheduled_at);
    }
    s.stop();
    let stopped_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(5)).await; // the downtime itself, not a synchronisation
    let _s2 = SchedulerProcess::start(&v, "m2");
    // Read until each job has fired 3 regular occurrences after the restart.
    let restart_regular = stopped_at + chrono::Duration::seconds(5);
    while fires
        .iter()
        .any(|f| f.iter().filter(|t| **t > restart_regular).count() < 3)
    {
        let (ev, _) = tap.next_any().await;
        fires[index(&ev.job_id)].push(ev.scheduled_at);
    }
    let one_sec = chrono::Duration::seconds(1);
    for (i, f) in fires.iter().enumerate() {
        let mut sorted = f.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            f.len(),
            "job {i}: an occurrence fired twice: {f:?}"
        );
    }
    let gaps = |f: &[DateTime<Utc>]| f.windows(2).filter(|w| w[1] - w[0] > one_sec).count();
    let (once, catch, skip) = (&fires[0], &fires[1], &fires[2]);
    assert_eq!(
        gaps(catch),
        0,
        "catch-up fires every missed occurrence: {catch:?}"
    );
    assert_eq!(gaps(skip), 1, "skip leaves the downtime out: {skip:?}");
    // fire-once: exactly one occurrence from the downtime, the latest missed.
    let last_before = *skip
        .iter()
        .filter(|t| **t <= stopped_at)
        .max()
        .expect("fires before the stop");
    let first_regular = *skip
        .iter()
        .filter(|t| **t > stopped_at)
        .min()
        .expect("fires after the restart");
    let in_gap: Vec<_> = once
        .iter()
        .filter(|t| **t > last_before && **t < first_regular)
        .collect();
    assert_eq!(
        in_gap.len(),
        1,
        "fire-once fires one missed occurrence: {once:?} (gap {last_before}..{first_regular})"
    );
    assert_eq!(*in_gap[0], first_regular - one_sec, "the latest missed one");
}

#[test]
fn job_apply_twice_changes_nothing_and_cli_errors_exit_nonzero() {
    let v = Vhost::new("sched-cli");
    let _s = SchedulerProcess::start(&v, "cli");
    let dir = std::env::temp_dir().join(format!("{}-jobs", v.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("jobs.toml");
    std::fs::write(&file, "[[jobs]]\nid = \"a\"\nschedule = \"@daily\"\n[jobs.executor]\ntype = \"noop\"\n[[jobs]]\nid = \"b\"\nschedule = \"0 9 * * 1-5\"\ntimezone = \"Europe/Berlin\"\n[jobs.executor]\ntype = \"noop\"\n").expect("write");
    let run = |args: &[&str]| {
        sundial()
            .args(args)
            .args(["--broker", &v.url(), "--timeout", "30s"])
            .env("SUNDIAL__TOPOLOGY__SHARDS", TEST_SHARDS.to_string())
            .output()
            .expect("runs")
    };
    let f = file.to_string_lossy().to_string();
    let first = run(&["job", "apply", "-f", &f, "--json"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let r: serde_json::Value = serde_json::from_slice(&first.stdout).expect("json");
    assert_eq!(r["result"]["changed"], 2);
    let second = run(&["job", "apply", "-f", &f, "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&second.stdout).expect("json");
    assert_eq!(r["result"]["changed"], 0, "second apply changes nothing");
    let list = run(&["job", "list"]);
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(
        out.lines().count() == 3 && out.contains("Europe/Berlin"),
        "{out}"
    );
    let missing = run(&["job", "delete", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no job \"nope\""),
        "{}",
        stderr(&missing)
    );
    let next = run(&["job", "next", "b", "-n", "2"]);
    let lines: Vec<String> = String::from_utf8_lossy(&next.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.contains("T09:00:00+0")),
        "09:00 Berlin with its offset: {lines:?}"
    );

    // Declarative: a file with only `a` (changed) and --prune deletes `b`.
    std::fs::write(
        &file,
        "[[jobs]]\nid = \"a\"\nschedule = \"@hourly\"\n[jobs.executor]\ntype = \"noop\"\n",
    )
    .expect("write");
    let dry = run(&["job", "apply", "-f", &f, "--prune", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let plan = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        plan.contains("a") && plan.contains("update") && plan.contains("delete"),
        "{plan}"
    );
    let still = run(&["job", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&still.stdout).lines().count(),
        3,
        "dry run changed nothing"
    );
    let pruned = run(&["job", "apply", "-f", &f, "--prune"]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let after = String::from_utf8_lossy(&run(&["job", "list"]).stdout).to_string();
    assert!(
        after.lines().count() == 2 && after.contains("@hourly") && !after.contains("Europe/Berlin"),
        "{after}"
    );
    let del = run(&["job", "delete", "a"]);
    assert!(del.status.success(), "{}", stderr(&del));
    let _ = std::fs::remove_dir_all(&dir);
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

#[tokio::test(flavor = "multi_thread")]
async fn registry_snapshot_is_written_and_a_restart_replays_from_it() {
    let v = Vhost::new("sched-snap");
    let env = [("SUNDIAL__REGISTRY__SNAPSHOT_AFTER_BYTES", "2048")];
    let mut s = SchedulerProcess::start_with_env(&v, "s1", &env);
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    let jobs: Vec<_> = (0..20)
        .map(|i| serde_json::json!({"id": format!("job-{i:02}"), "schedule": "@daily", "executor": {"type": "noop"}}))
        .collect();
    let reply = client
        .call(
            serde_json::json!({"command": "upsert-many", "jobs": jobs})
                .to_string()
                .as_bytes(),
            v1(),
        )
        .await;
    assert!(reply.ok, "{reply:?}");
    for i in 0..3 {
        let reply = client
            .call(
                format!(r#"{{"command":"delete","id":"job-{i:02}"}}"#).as_bytes(),
                v1(),
            )
            .await;
        assert!(reply.ok, "{reply:?}");
    }
    // The snapshot is written after the batch crossed 2 KiB; the index names it.
    let ch = conn.create_channel().await.expect("channel");
    let mut index_consumer = ch
        .basic_consume(
            "sundial.registry.index".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume index");
    let index = bounded("snapshot index", async {
        let d = index_consumer
            .next()
            .await
            .expect("index stream open")
            .expect("delivery");
        let ix: sundial_core::protocol::registry::RegistryIndex =
            decode(&meta_of(&d.properties), &d.data).expect("index decodes");
        // Leave it for the restarted scheduler.
        d.acker
            .nack(lapin::options::BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .expect("requeue");
        ix
    })
    .await;
    let _ = ch.close(200, "done".into()).await;
    assert!(index.jobs >= 17, "{index:?}");
    s.stop();
    let _s2 = SchedulerProcess::start_with_env(&v, "s2", &env);
    let reply = client.call(br#"{"command":"list"}"#, v1()).await;
    let ids: Vec<String> = reply.result.expect("result")["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        ids,
        (3..20).map(|i| format!("job-{i:02}")).collect::<Vec<_>>()
    );
    let log = std::fs::read_to_string(&_s2.log).expect("log");
    assert!(
        log.contains("from_snapshot"),
        "replay started from the snapshot: {log}"
    );
}

#[test]
fn job_apply_sends_a_large_file_in_batches_and_reports_each_job() {
    let v = Vhost::new("sched-bulk");
    let _s = SchedulerProcess::start(&v, "bulk");
    let jobs: Vec<serde_json::Value> = (0..1_200)
        .map(|i| {
            // One bad job in the third batch: its error names its place in
            // the file, and every other job is applied.
            let schedule = if i == 1_100 { "61 * * * *" } else { "@hourly" };
            serde_json::json!({"id": format!("bulk-{i:04}"), "schedule": schedule, "executor": {"type": "noop"}})
        })
        .collect();
    let body = serde_json::to_vec(&jobs).expect("json");
    let out = crate::util::job_apply(&v, &body, "json", &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reply JSON");
    let results = reply["results"].as_array().expect("results");
    assert_eq!(results.len(), 1_200, "one result per job");
    let bad: Vec<&serde_json::Value> = results.iter().filter(|r| r["ok"] == false).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["id"], "bulk-1100");
    assert_eq!(bad[0]["error"]["field"], "jobs[1100].schedule", "{bad:?}");
    let list = sundial()
        .args(["job", "list", "--json", "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("list runs");
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).expect("list JSON");
    assert_eq!(
        listed["result"]["jobs"].as_array().map(Vec::len),
        Some(1_199),
        "the others were applied"
    );

    // The protocol's pages, as a client in another language walks them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pages = rt.block_on(async {
        let conn = connect(&v).await;
        let (mut pages, mut after) = (Vec::new(), None::<String>);
        loop {
            let cmd = sundial_core::protocol::control::Command::List {
                labels: Default::default(),
                after: after.take(),
                limit: Some(500),
            };
            let reply = sundial_actors::client::call(
                &conn,
                &crate::util::test_topology(),
                &cmd,
                Duration::from_secs(20),
            )
            .await
            .expect("list reply");
            let result = reply.result.expect("list result");
            let ids: Vec<String> = result["jobs"]
                .as_array()
                .expect("jobs")
                .iter()
                .filter_map(|j| j["id"].as_str().map(str::to_string))
                .collect();
            let next = result["next_after"].as_str().map(str::to_string);
            pages.push(ids);
            match next {
                Some(n) => after = Some(n),
                None => break pages,
            }
        }
    });
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [500, 500, 199]
    );
    assert_eq!(pages[1][0], "bulk-0500", "page 2 starts after page 1");
    assert_eq!(pages[2].last().map(String::as_str), Some("bulk-1199"));
}
