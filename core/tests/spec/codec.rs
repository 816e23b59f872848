//! Codec: every message round-trips in each of its formats; every kind of bad
//! input gives its own typed error, never a panic.

use std::collections::BTreeMap;

use sundial_core::{
    codec::{decode, encode, encode_as, Meta},
    job::Executor,
    protocol::{
        control::{Command, ItemResult, Reply, ReplyError},
        fire::{FireEvent, Watermark},
        registry::{RegistryRecord, StoredJob},
        run::{RunEvent, RunKind},
        Format, Message, CONTENT_TYPE_BINCODE, CONTENT_TYPE_JSON, VERSION,
    },
    CodecError, HumanDuration, JobSpec,
};

use super::util::utc;

fn job() -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "id": "nightly-backup", "schedule": "0 3 * * *", "timezone": "Asia/Shanghai",
        "payload": {"full": true, "paths": ["/a", "/b"]}, "labels": {"team": "ops"},
        "executor": {"type": "shell", "command": ["/usr/local/bin/backup.sh", "--full"]},
        "jitter": "30s", "start_at": "2026-06-01T00:00:00Z"
    }))
    .expect("valid job json")
}

fn fire() -> FireEvent {
    FireEvent {
        fire_id: "nightly-backup@2026-03-08T07:00:00.000Z".into(),
        job_id: "nightly-backup".into(),
        pool: "default".into(),
        shard: 17,
        epoch: 3,
        scheduled_at: utc("2026-03-08T07:00:00Z"),
        fired_at: utc("2026-03-08T07:00:00.004Z"),
        attempt: 1,
        manual: false,
        executor: Executor::Http(sundial_core::job::HttpExecutor {
            method: "POST".into(),
            url: "https://example.invalid/hook".into(),
            headers: BTreeMap::from([("x-a".into(), "1".into())]),
            body: Some("{}".into()),
            expect: vec![200, 204],
        }),
        payload: serde_json::json!({"n": 1, "nested": {"list": [1, 2, null]}}),
        timeout: HumanDuration::from_secs(30),
        retry: Default::default(),
        overlap: Default::default(),
        first_failure: None,
        signature: Some("abc".into()),
    }
}

fn watermark() -> Watermark {
    Watermark {
        shard: 3,
        epoch: 9,
        up_to: utc("2026-03-08T07:00:00Z"),
        owner: "node-a".into(),
    }
}

fn run_event() -> RunEvent {
    RunEvent {
        kind: RunKind::Succeeded,
        fire_id: "a@2026-03-08T07:00:00.000Z".into(),
        job_id: "a".into(),
        pool: "default".into(),
        attempt: 2,
        worker: "w1".into(),
        at: utc("2026-03-08T07:00:01Z"),
        duration_ms: Some(120),
        reason: None,
        output: Some("ok\n".into()),
        deadline: Some(utc("2026-03-08T08:00:00Z")),
        scheduled_at: Some(utc("2026-03-08T07:00:00Z")),
        replay: None,
        payload: None,
        by: None,
    }
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(msg: &M) {
    for &format in M::FORMATS {
        let enc = encode_as(msg, format).expect("encodes");
        assert_eq!(enc.meta.kind.as_deref(), Some(M::KIND));
        assert_eq!(
            enc.meta.content_type.as_deref(),
            Some(format.content_type())
        );
        assert_eq!(enc.meta.version, Some(VERSION));
        // Pure: no clock, no process id (the AMQP adapter stamps both).
        assert_eq!(enc.meta.timestamp, None);
        assert_eq!(enc.meta.message_id, msg.natural_id());
        let back: M = decode(&enc.meta, &enc.body).expect("decodes");
        assert_eq!(&back, msg, "{format:?}");
    }
}

#[test]
fn every_message_round_trips_in_each_format() {
    for cmd in [
        Command::Upsert {
            by: None,
            reason: None,
            job: Box::new(job()),
        },
        Command::UpsertMany {
            by: None,
            reason: None,
            jobs: vec![job(), job()],
        },
        Command::Delete {
            by: None,
            reason: None,
            id: "a".into(),
        },
        Command::Pause {
            by: None,
            id: "a".into(),
            reason: None,
        },
        Command::Pause {
            by: None,
            id: "a".into(),
            reason: Some("disk full".into()),
        },
        Command::Resume {
            by: None,
            reason: None,
            id: "a".into(),
        },
        Command::Trigger {
            id: "a".into(),
            payload: Some(serde_json::json!({"full": true})),
            reason: Some("restore test".into()),
            by: Some("ana".into()),
        },
        Command::Backfill {
            by: None,
            dry_run: false,
            reason: None,
            id: "a".into(),
            from: utc("2026-01-01T00:00:00Z"),
            to: utc("2026-01-02T00:00:00Z"),
            overlap: Some(sundial_core::job::Overlap::Forbid),
        },
        Command::Get { id: "a".into() },
        Command::List {
            labels: BTreeMap::from([("team".into(), "ops".into())]),
            q: Some("back".into()),
            pool: Some("default".into()),
            paused: Some(false),
            after: None,
            limit: None,
        },
        Command::List {
            labels: BTreeMap::new(),
            q: None,
            pool: None,
            paused: None,
            after: Some("job-0999".into()),
            limit: Some(10_000),
        },
    ] {
        round_trip(&cmd);
    }
    round_trip(&Reply::ok(
        "get",
        Some(serde_json::json!({"job": {"id": "a"}})),
    ));
    round_trip(&Reply::error(
        Some("upsert"),
        ReplyError {
            field: "schedule".into(),
            message: "bad".into(),
        },
    ));
    round_trip(&Reply {
        results: Some(vec![ItemResult {
            id: "a".into(),
            ok: true,
            error: None,
        }]),
        ..Reply::ok("upsert-many", None)
    });
    for rec in [
        RegistryRecord::Upsert {
            job: Box::new(job()),
            created_at: utc("2026-01-01T00:00:00Z"),
        },
        RegistryRecord::Delete { id: "a".into() },
        RegistryRecord::Pause {
            by: None,
            id: "a".into(),
            reason: None,
            at: None,
        },
        RegistryRecord::Pause {
            by: None,
            id: "a".into(),
            reason: Some("disk full".into()),
            at: Some(utc("2026-01-01T00:00:00Z")),
        },
        RegistryRecord::Resume {
            id: "a".into(),
            at: None,
        },
        RegistryRecord::Snapshot {
            snapshot_id: "s1".into(),
            part: 0,
            parts: 1,
            jobs: vec![StoredJob {
                paused_by: None,
                job: job(),
                created_at: utc("2026-01-01T00:00:00Z"),
                paused: Some(true),
                paused_reason: Some("disk full".into()),
                paused_at: Some(utc("2026-01-01T00:00:00Z")),
            }],
        },
    ] {
        round_trip(&rec);
    }
    let mut f = fire();
    round_trip(&f);
    for executor in [
        Executor::Noop,
        Executor::Handler {
            name: "reports.daily".into(),
        },
        Executor::Publish(sundial_core::job::PublishExecutor {
            exchange: "jobs".into(),
            routing_key: "r".into(),
        }),
        job().executor.expect("a one-executor job"),
    ] {
        f.executor = executor;
        round_trip(&f);
    }
    round_trip(&watermark());
    round_trip(&run_event());
}

#[test]
fn fire_event_is_bincode_and_named_by_fire_id() {
    let enc = encode(&fire()).expect("encodes");
    assert_eq!(enc.meta.content_type.as_deref(), Some(CONTENT_TYPE_BINCODE));
    assert_eq!(
        enc.meta.message_id.as_deref(),
        Some("nightly-backup@2026-03-08T07:00:00.000Z")
    );
    assert_eq!(
        encode(&run_event())
            .expect("encodes")
            .meta
            .content_type
            .as_deref(),
        Some(CONTENT_TYPE_JSON)
    );
}

#[test]
fn json_only_messages_refuse_bincode() {
    assert!(matches!(
        encode_as(&run_event(), Format::Bincode),
        Err(CodecError::UnsupportedContentType { .. })
    ));
}

fn meta_for<M: Message>(ct: &str) -> Meta {
    Meta {
        kind: Some(M::KIND.into()),
        content_type: Some(ct.into()),
        version: Some(VERSION),
        ..Meta::default()
    }
}

#[test]
fn truncated_input() {
    let enc = encode(&fire()).expect("encodes");
    for cut in [0, 1, enc.body.len() / 2, enc.body.len() - 1] {
        let e = decode::<FireEvent>(&enc.meta, &enc.body[..cut]).expect_err("truncated");
        assert!(matches!(e, CodecError::Truncated { .. }), "cut {cut}: {e}");
    }
    let json = br#"{"command":"delete","id":"a""#;
    let e =
        decode::<Command>(&meta_for::<Command>(CONTENT_TYPE_JSON), json).expect_err("truncated");
    assert!(matches!(e, CodecError::Truncated { .. }), "{e}");
}

#[test]
fn oversized_input() {
    let body = vec![b' '; FireEvent::MAX_SIZE + 1];
    let e = decode::<FireEvent>(&meta_for::<FireEvent>(CONTENT_TYPE_BINCODE), &body)
        .expect_err("too big");
    assert!(matches!(e, CodecError::TooLarge { .. }), "{e}");
    let body = vec![b' '; Command::MAX_SIZE + 1];
    let e = decode::<Command>(&meta_for::<Command>(CONTENT_TYPE_JSON), &body).expect_err("too big");
    assert!(matches!(e, CodecError::TooLarge { .. }), "{e}");
    // A length prefix that claims more than the limit inside a small body.
    let mut huge_len = vec![0xfd]; // bincode varint: u64 follows
    huge_len.extend_from_slice(&u64::MAX.to_le_bytes());
    let e = decode::<FireEvent>(&meta_for::<FireEvent>(CONTENT_TYPE_BINCODE), &huge_len)
        .expect_err("limit");
    assert!(
        matches!(
            e,
            CodecError::Truncated { .. } | CodecError::Malformed { .. }
        ),
        "{e}"
    );
    assert!(
        !e.to_string().contains("too large"),
        "a 9-byte body is not too large: {e}"
    );
}

#[test]
fn wrong_or_missing_version() {
    let enc = encode(&watermark()).expect("encodes");
    let mut meta = enc.meta.clone();
    meta.version = Some(sundial_core::protocol::MAX_VERSION + 1);
    assert!(matches!(
        decode::<Watermark>(&meta, &enc.body),
        Err(CodecError::UnsupportedVersion { found: 3, .. })
    ));
    meta.version = Some(VERSION - 1);
    assert!(matches!(
        decode::<Watermark>(&meta, &enc.body),
        Err(CodecError::UnsupportedVersion { found: 0, .. })
    ));
    meta.version = None;
    assert!(matches!(
        decode::<Watermark>(&meta, &enc.body),
        Err(CodecError::MissingHeader("x-sundial-version"))
    ));
}

#[test]
fn wrong_type_and_content_type() {
    let enc = encode(&watermark()).expect("encodes");
    let e = decode::<FireEvent>(&enc.meta, &enc.body).expect_err("watermark is not a fire");
    assert!(
        matches!(
            e,
            CodecError::WrongType {
                expected: "sundial.fire",
                ..
            }
        ),
        "{e}"
    );
    let mut meta = enc.meta.clone();
    meta.content_type = Some("text/plain".into());
    assert!(matches!(
        decode::<Watermark>(&meta, &enc.body),
        Err(CodecError::UnsupportedContentType { .. })
    ));
    let cmd = encode(&Command::Delete {
        by: None,
        reason: None,
        id: "a".into(),
    })
    .expect("encodes");
    let mut meta = cmd.meta.clone();
    meta.content_type = Some(CONTENT_TYPE_BINCODE.into());
    assert!(matches!(
        decode::<Command>(&meta, &cmd.body),
        Err(CodecError::UnsupportedContentType { .. })
    ));
}

#[test]
fn garbage_input() {
    let garbage: Vec<u8> = (0u16..600)
        .map(|i| (i.wrapping_mul(7919) % 251) as u8)
        .collect();
    let e = decode::<FireEvent>(&meta_for::<FireEvent>(CONTENT_TYPE_BINCODE), &garbage)
        .expect_err("garbage");
    assert!(
        matches!(
            e,
            CodecError::Malformed { .. }
                | CodecError::Truncated { .. }
                | CodecError::TooLarge { .. }
        ),
        "{e}"
    );
    let e = decode::<Command>(&meta_for::<Command>(CONTENT_TYPE_JSON), b"\x00\xffnot json")
        .expect_err("garbage");
    assert!(matches!(e, CodecError::Malformed { .. }), "{e}");
    let enc = encode(&watermark()).expect("encodes");
    let mut body = enc.body.clone();
    body.push(0);
    assert!(matches!(
        decode::<Watermark>(&enc.meta, &body),
        Err(CodecError::TrailingBytes { extra: 1, .. })
    ));
}

#[test]
fn decoding_random_bytes_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..400usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed & 0xff) as u8
            })
            .collect();
        let _ = decode::<FireEvent>(&meta_for::<FireEvent>(CONTENT_TYPE_BINCODE), &bytes);
        let _ = decode::<Watermark>(&meta_for::<Watermark>(CONTENT_TYPE_BINCODE), &bytes);
        let _ = decode::<Command>(&meta_for::<Command>(CONTENT_TYPE_JSON), &bytes);
    }
}

fn command_error(body: &str) -> (String, String) {
    match decode::<Command>(&meta_for::<Command>(CONTENT_TYPE_JSON), body.as_bytes()) {
        Err(e) => (e.field(), e.to_string()),
        Ok(c) => panic!("{body} decoded as {c:?}"),
    }
}

#[test]
fn control_errors_name_the_field() {
    assert_eq!(
        command_error(r#"{"command":"explode","id":"a"}"#).0,
        "command"
    );
    assert_eq!(command_error(r#"{"id":"a"}"#).0, "command");
    assert_eq!(
        command_error(r#"{"command":"delete","id":"a","force":true}"#).0,
        "force"
    );
    assert_eq!(command_error(r#"{"command":"delete"}"#).0, "id");
    let (field, msg) = command_error(
        r#"{"command":"upsert","job":{"id":"a","schedule":"* * * * *","executor":{"type":"noop"},"retry":{"max_attempts":"x"}}}"#,
    );
    assert_eq!(field, "job.retry.max_attempts", "{msg}");
    // A missing field of the job is named by its dotted path, as a missing
    // top-level one is by its name; the message is the detail alone. (A
    // missing `executor` decodes, since a workflow has `steps` instead: the
    // upsert's validation names `job.executor`.)
    for missing in ["id", "schedule"] {
        let mut job =
            serde_json::json!({"id": "a", "schedule": "* * * * *", "executor": {"type": "noop"}});
        job.as_object_mut().expect("object").remove(missing);
        let body = serde_json::json!({"command": "upsert", "job": job}).to_string();
        let e = decode::<Command>(&meta_for::<Command>(CONTENT_TYPE_JSON), body.as_bytes())
            .expect_err("refused");
        assert_eq!(e.field(), format!("job.{missing}"), "{e}");
        assert_eq!(e.reply_message(), format!("missing field `{missing}`"));
    }
    let e = decode::<Command>(
        &meta_for::<Command>(CONTENT_TYPE_JSON),
        br#"{"command":"upsert-many","jobs":[{"id":"a","executor":{"type":"noop"}}]}"#,
    )
    .expect_err("refused");
    assert_eq!(e.field(), "jobs[0].schedule", "{e}");
}

#[test]
fn polyglot_client_without_type_or_content_type_is_accepted() {
    let meta = Meta {
        version: Some(VERSION),
        ..Meta::default()
    };
    let cmd: Command = decode(&meta, br#"{"command":"get","id":"a"}"#).expect("decodes");
    assert_eq!(cmd, Command::Get { id: "a".into() });
}

#[test]
fn header_texts_are_cut_to_their_bound_on_a_character_boundary_and_say_so() {
    use sundial_core::protocol::headers::{bounded, bounded_to, MAX_TEXT};
    assert_eq!(bounded("short"), "short");
    let exact = "x".repeat(MAX_TEXT);
    assert_eq!(bounded(&exact), exact.as_str(), "at the bound: whole");
    let long = "é".repeat(100_000); // 2 bytes each: cuts fall inside one
    let cut = bounded(&long);
    assert!(cut.len() <= MAX_TEXT, "{} bytes", cut.len());
    assert!(
        cut.ends_with("… (cut: 200000 bytes in all)"),
        "{}",
        &cut[cut.len() - 40..]
    );
    assert!(cut.starts_with("éé"));
    let small = bounded_to(&long, 80);
    assert!(small.len() <= 80, "{small}");
}

#[test]
fn a_trigger_may_carry_a_payload_a_reason_and_who_asked() {
    let decode_cmd =
        |body: String| decode::<Command>(&meta_for::<Command>(CONTENT_TYPE_JSON), body.as_bytes());
    let cmd = decode_cmd(
        r#"{"command":"trigger","id":"a","payload":{"day":"2026-12-01"},"reason":"rerun","by":"ana"}"#
            .into(),
    )
    .expect("decodes");
    assert_eq!(
        cmd,
        Command::Trigger {
            id: "a".into(),
            payload: Some(serde_json::json!({"day": "2026-12-01"})),
            reason: Some("rerun".into()),
            by: Some("ana".into()),
        }
    );
    // A null payload is no payload; blank texts are none.
    let cmd = decode_cmd(r#"{"command":"trigger","id":"a","payload":null,"reason":"  "}"#.into())
        .expect("decodes");
    assert_eq!(
        cmd,
        Command::Trigger {
            id: "a".into(),
            payload: None,
            reason: None,
            by: None
        }
    );
    let big = "x".repeat(sundial_core::protocol::control::TRIGGER_PAYLOAD_MAX);
    let e = decode_cmd(format!(
        r#"{{"command":"trigger","id":"a","payload":"{big}"}}"#
    ))
    .expect_err("too large");
    assert_eq!(e.field(), "payload", "{e}");
    let e = decode_cmd(format!(
        r#"{{"command":"trigger","id":"a","by":"{}"}}"#,
        "b".repeat(129)
    ))
    .expect_err("too long");
    assert_eq!(e.field(), "by", "{e}");
    let e = decode_cmd(r#"{"command":"trigger","id":"a","payload":{},"extra":1}"#.into())
        .expect_err("unknown field");
    assert_eq!(e.field(), "extra", "{e}");
}

#[test]
fn a_cancel_names_an_occurrence_and_says_why() {
    let decode_cmd =
        |body: String| decode::<Command>(&meta_for::<Command>(CONTENT_TYPE_JSON), body.as_bytes());
    let cmd = decode_cmd(
        r#"{"command":"cancel","fire_id":"etl@2026-12-05T02:00:00.000Z","reason":"bad input file","by":"ana"}"#
            .into(),
    )
    .expect("decodes");
    assert_eq!(
        cmd,
        Command::Cancel {
            fire_id: "etl@2026-12-05T02:00:00.000Z".into(),
            reason: Some("bad input file".into()),
            by: Some("ana".into()),
        }
    );
    // A step's fire id, no job, a bad job id, no instant: refused naming
    // the field.
    for bad in [
        "etl@2026-12-05T02:00:00.000Z/extract",
        "etl",
        "Bad Job@2026-12-05T02:00:00.000Z",
        "etl@",
    ] {
        let e = decode_cmd(format!(r#"{{"command":"cancel","fire_id":"{bad}"}}"#)).expect_err(bad);
        assert_eq!(e.field(), "fire_id", "{bad}: {e}");
    }
    let e = decode_cmd(r#"{"command":"cancel"}"#.into()).expect_err("no fire id");
    assert_eq!(e.field(), "fire_id", "{e}");
    let e = decode_cmd(format!(
        r#"{{"command":"cancel","fire_id":"a@now","reason":"{}"}}"#,
        "r".repeat(501)
    ))
    .expect_err("too long");
    assert_eq!(e.field(), "reason", "{e}");
}
