//! The control protocol from any AMQP client: the document's JSON creates a
//! job; bad input is answered naming the problem and dead-lettered.

use lapin::{
    types::{AMQPValue, FieldTable},
    BasicProperties,
};

use crate::util::{drain, SchedulerProcess, Vhost};

use crate::{
    control_client::{upsert, v1, RawClient},
    fires::connect,
};

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
