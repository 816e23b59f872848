//! Job files, validation messages and fire ids.

use sundial_core::{
    job::{parse_job_file, Executor, FileFormat, Misfire, Overlap},
    FireId, JobSpec,
};

use super::util::utc;

const TOML_FILE: &str = r#"
[[jobs]]
id = "nightly-backup"
schedule = "0 3 * * *"
timezone = "Asia/Shanghai"
pool = "default"
timeout = "30m"
overlap = "forbid"
payload = { full = true }
labels = { team = "ops" }
[jobs.executor]
type = "shell"
command = ["/usr/local/bin/backup.sh", "--full"]
[jobs.retry]
max_attempts = 5
backoff = ["10s", "1m", "10m"]
[jobs.misfire]
policy = "fire-once"
grace = "10m"
max_catch_up = 100
"#;

fn now() -> chrono::DateTime<chrono::Utc> {
    utc("2026-06-01T00:00:00Z")
}

#[test]
fn design_toml_example_parses_and_validates() {
    let jobs = parse_job_file(TOML_FILE, FileFormat::Toml).expect("parses");
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    assert_eq!(j.id, "nightly-backup");
    assert_eq!(j.overlap, Overlap::Forbid);
    assert_eq!(j.misfire.policy, Misfire::FireOnce);
    assert_eq!(j.retry.max_attempts, 5);
    assert_eq!(j.payload, serde_json::json!({"full": true}));
    assert!(
        matches!(&j.executor, Some(Executor::Shell(s)) if s.command[0] == "/usr/local/bin/backup.sh")
    );
    j.validate(now(), now()).expect("valid");
}

#[test]
fn json_single_and_many_and_round_trip() {
    let one = r#"{"id":"a","schedule":"@every 90s","executor":{"type":"noop"}}"#;
    let jobs = parse_job_file(one, FileFormat::Json).expect("one job");
    assert_eq!(jobs[0].pool, "default");
    assert_eq!(jobs[0].timezone, "UTC");
    let many = format!(r#"{{"jobs":[{one},{one}]}}"#);
    assert_eq!(
        parse_job_file(&many, FileFormat::Json).expect("many").len(),
        2
    );
    let array = format!("[{one},{one},{one}]");
    assert_eq!(
        parse_job_file(&array, FileFormat::Json)
            .expect("a bare array")
            .len(),
        3
    );
    let text = serde_json::to_string(&jobs[0]).expect("serializes");
    let back: JobSpec = serde_json::from_str(&text).expect("reads back");
    assert_eq!(back, jobs[0]);
}

fn file_error(json: &str) -> (String, String) {
    let e = parse_job_file(json, FileFormat::Json).expect_err("must fail");
    (e.field, e.message)
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let (field, msg) = file_error(
        r#"{"id":"a","schedule":"* * * * *","executor":{"type":"noop"},"colour":"red"}"#,
    );
    assert_eq!(field, "colour");
    assert!(msg.contains("unknown field"), "{msg}");
    let (field, _) = file_error(
        r#"{"id":"a","schedule":"* * * * *","executor":{"type":"noop"},"retry":{"max_attempt":3}}"#,
    );
    assert_eq!(field, "retry.max_attempt");
    let (field, msg) = file_error(
        r#"{"id":"a","schedule":"* * * * *","executor":{"type":"shell","command":["/bin/true"],"shell":true}}"#,
    );
    assert_eq!(field, "executor");
    assert!(msg.contains("shell"), "{msg}");
    let (field, _) = file_error(
        r#"{"jobs":[{"id":"a","schedule":"* * * * *","executor":{"type":"noop"},"timeout":"soon"}]}"#,
    );
    assert_eq!(field, "jobs[0].timeout");
}

fn invalid(patch: serde_json::Value) -> (String, String) {
    let mut base = serde_json::json!({"id":"a","schedule":"* * * * *","executor":{"type":"noop"}});
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
    }
    let job: JobSpec = serde_json::from_value(base).expect("shape is fine");
    let e = job.validate(now(), now()).expect_err("must be invalid");
    (e.field, e.message)
}

#[test]
fn validation_names_field_and_rule() {
    use serde_json::json;
    assert_eq!(
        invalid(json!({"retry": {"max_attempts": 0}})),
        (
            "retry.max_attempts".to_string(),
            "must be 1..=100, got 0".to_string()
        )
    );
    assert_eq!(invalid(json!({"id": "Bad Id"})).0, "id");
    assert_eq!(invalid(json!({"pool": "a.b"})).0, "pool");
    assert_eq!(invalid(json!({"pool": "control"})).0, "pool");
    assert_eq!(invalid(json!({"timezone": "Mars/Olympus"})).0, "timezone");
    assert_eq!(
        invalid(json!({"schedule": "61 * * * *"})),
        (
            "schedule".to_string(),
            "invalid schedule \"61 * * * *\": minute must be 0-59".to_string()
        )
    );
    assert_eq!(invalid(json!({"schedule": "0 0 30 2 *"})).0, "schedule");
    assert_eq!(
        invalid(json!({"schedule": "@at 2020-01-01T00:00:00Z"})).0,
        "schedule"
    );
    assert_eq!(invalid(json!({"timeout": "0s"})).0, "timeout");
    assert_eq!(
        invalid(json!({"retry": {"max_attempts": 3, "backoff": []}})).0,
        "retry.backoff"
    );
    assert_eq!(
        invalid(json!({"retry": {"backoff": ["500ms"]}})).0,
        "retry.backoff[0]"
    );
    assert_eq!(
        invalid(json!({"misfire": {"max_catch_up": 0}})).0,
        "misfire.max_catch_up"
    );
    assert_eq!(invalid(json!({"jitter": "2h"})).0, "jitter");
    assert_eq!(
        invalid(json!({"start_at": "2026-07-01T00:00:00Z", "end_at": "2026-06-01T00:00:00Z"})).0,
        "end_at"
    );
    assert_eq!(
        invalid(json!({"end_at": "2026-05-01T00:00:00Z"})).0,
        "schedule"
    );
    assert_eq!(
        invalid(json!({"executor": {"type": "shell", "command": []}})).0,
        "executor.command"
    );
    assert_eq!(
        invalid(json!({"executor": {"type": "shell", "command": ["backup.sh"]}})).0,
        "executor.command"
    );
    assert_eq!(
        invalid(json!({"executor": {"type": "http", "url": "ftp://x"}})).0,
        "executor.url"
    );
    assert_eq!(
        invalid(json!({"executor": {"type": "http", "url": "http://x", "expect": [99]}})).0,
        "executor.expect"
    );
    assert_eq!(
        invalid(json!({"executor": {"type": "handler", "name": ""}})).0,
        "executor.name"
    );
    assert_eq!(invalid(json!({"labels": {"Team": "x"}})).0, "labels.Team");
}

#[test]
fn fire_id_format() {
    let id = FireId::new("nightly-backup", utc("2026-03-08T07:00:00Z"));
    assert_eq!(id.as_str(), "nightly-backup@2026-03-08T07:00:00.000Z");
    assert_eq!(
        FireId::parse(id.as_str()),
        Some(("nightly-backup", utc("2026-03-08T07:00:00Z")))
    );
    assert_eq!(FireId::parse("garbage"), None);
    assert!(FireId::for_trigger("a", utc("2026-03-08T07:00:00Z"))
        .as_str()
        .starts_with("a@trigger:"));
}

#[test]
fn retry_delay_uses_last_step_after_the_list() {
    let j: JobSpec = serde_json::from_str(r#"{"id":"a","schedule":"* * * * *","executor":{"type":"noop"},"retry":{"max_attempts":5,"backoff":["10s","1m"]}}"#).expect("parses");
    let d: Vec<_> = (1..=4)
        .map(|a| j.retry.delay_after(a).map(|d| d.to_string()))
        .collect();
    assert_eq!(
        d,
        [
            Some("10s".into()),
            Some("1m".into()),
            Some("1m".into()),
            Some("1m".into())
        ]
    );
}

#[test]
fn shard_hash_matches_the_documented_examples() {
    use sundial_core::topology::shard_of;
    // docs/protocol.md §2: clients in other languages compute the same.
    assert_eq!(shard_of("nightly-backup", 64), 31);
    assert_eq!(shard_of("reports.daily", 64), 23);
    assert_eq!(shard_of("a", 64), 12);
}

#[test]
fn toml_datetimes_may_be_quoted_or_native() {
    for start in [
        "\"2026-12-01T03:00:00Z\"",
        "2026-12-01T03:00:00Z",
        "2026-12-01T04:00:00+01:00",
    ] {
        let text = format!("id = \"a\"\nschedule = \"@every 90s\"\nstart_at = {start}\n[executor]\ntype = \"noop\"\n");
        let jobs =
            parse_job_file(&text, FileFormat::Toml).unwrap_or_else(|e| panic!("{start}: {e}"));
        assert_eq!(
            jobs[0].start_at,
            Some(utc("2026-12-01T03:00:00Z")),
            "{start}"
        );
    }
    let text = "id = \"a\"\nschedule = \"@every 90s\"\nstart_at = 2026-12-01\n[executor]\ntype = \"noop\"\n";
    let e = parse_job_file(text, FileFormat::Toml)
        .expect_err("a date without time and offset is not an instant");
    assert_eq!(e.field, "start_at");
}

#[test]
fn registry_view_applies_records_and_complete_snapshots_only() {
    use sundial_core::{
        protocol::registry::{RegistryRecord, StoredJob},
        registry::{Change, RegistryView},
    };
    let job = |id: &str| -> JobSpec {
        serde_json::from_value(
            serde_json::json!({"id": id, "schedule": "@daily", "executor": {"type": "noop"}}),
        )
        .expect("job")
    };
    let t = utc("2026-06-01T00:00:00Z");
    // Every job compact (a node that holds no shard), and every job full
    // (a node that holds them all): the same answers (ADR 0024).
    let mut full = RegistryView::new(4);
    assert_eq!(full.hold(&[0, 1, 2, 3]).len(), 4);
    for mut view in [RegistryView::default(), full] {
        for id in ["a", "b", "c"] {
            assert_eq!(
                view.apply(&RegistryRecord::Upsert {
                    job: Box::new(job(id)),
                    created_at: t
                }),
                Ok(Change::Upserted(id.into()))
            );
        }
        assert_eq!(
            view.apply(&RegistryRecord::Pause {
                by: None,
                id: "a".into(),
                reason: Some("disk full".into()),
                at: Some(t),
            }),
            Ok(Change::Paused("a".into()))
        );
        assert_eq!(
            view.apply(&RegistryRecord::Pause {
                by: None,
                id: "a".into(),
                reason: None,
                at: None,
            }),
            Ok(Change::None),
            "already paused"
        );
        assert_eq!(
            view.apply(&RegistryRecord::Delete { id: "b".into() }),
            Ok(Change::Deleted("b".into()))
        );
        assert_eq!(
            view.apply(&RegistryRecord::Delete { id: "zz".into() }),
            Ok(Change::None)
        );
        let stored = |id: &str| StoredJob {
            paused_by: None,
            job: job(id),
            created_at: t,
            paused: (id == "q").then_some(true),
            paused_reason: (id == "q").then(|| "kept".to_string()),
            paused_at: None,
        };
        let part = |sid: &str, part, parts, ids: &[&str]| RegistryRecord::Snapshot {
            snapshot_id: sid.into(),
            part,
            parts,
            jobs: ids.iter().map(|i| stored(i)).collect(),
        };
        // A snapshot whose first part is missing (retention cut it) is ignored.
        assert_eq!(view.apply(&part("old", 1, 2, &["x"])), Ok(Change::None));
        assert_eq!(view.len(), 2);
        // A complete snapshot replaces the view.
        assert_eq!(view.apply(&part("s1", 0, 2, &["p"])), Ok(Change::None));
        assert_eq!(view.apply(&part("s1", 1, 2, &["q"])), Ok(Change::Reloaded));
        let ids: Vec<_> = view.iter_held().map(|(id, _)| id.to_string()).collect();
        assert_eq!(ids, ["p", "q"]);
        // The pause state travels in the snapshot (it is not in the definition).
        assert!(view.get("q").is_some_and(|j| j.paused && !j.spec.paused));
        assert!(view.get("p").is_some_and(|j| !j.paused));
        assert_eq!(
            view.get("q")
                .and_then(|j| j.paused_reason().map(str::to_string))
                .as_deref(),
            Some("kept")
        );
    }
}

#[test]
fn a_node_holds_its_shards_jobs_full_and_the_others_compact() {
    use sundial_core::{
        protocol::registry::{RegistryRecord, StoredJob},
        registry::{Held, JobFilter, RegistryView},
        topology::shard_of,
    };
    let t = utc("2026-06-01T00:00:00Z");
    let mut view = RegistryView::new(8);
    let jobs: Vec<StoredJob> = (0..200)
        .map(|i| {
            let job: JobSpec = serde_json::from_value(serde_json::json!({
                "id": format!("j-{i}"), "schedule": "*/5 * * * *",
                "pool": if i % 2 == 0 { "even" } else { "odd" },
                "labels": {"team": format!("t{}", i % 3)},
                "executor": {"type": "noop"}
            }))
            .expect("job");
            StoredJob::new(job, t)
        })
        .collect();
    view.apply(&RegistryRecord::UpsertMany { jobs: jobs.clone() })
        .expect("applies");
    let compact = |v: &RegistryView| {
        v.iter_held()
            .filter(|(_, h)| matches!(h, Held::Compact(_)))
            .count()
    };
    assert_eq!(compact(&view), 200, "no shard held: every job compact");
    let before: Vec<_> = jobs
        .iter()
        .map(|s| view.get(&s.job.id).expect("there").stored())
        .collect();
    // Holding shards 2 and 5 parses exactly their jobs and hands them out.
    let loads = view.hold(&[2, 5]);
    let mine: usize = loads.values().map(Vec::len).sum();
    let expected = jobs
        .iter()
        .filter(|s| [2, 5].contains(&shard_of(&s.job.id, 8)))
        .count();
    assert_eq!(mine, expected);
    assert!(mine > 0 && compact(&view) == 200 - mine);
    for (shard, entries) in &loads {
        assert!(entries.iter().all(|e| shard_of(e.id(), 8) == *shard));
    }
    // A job upserted now into a held shard is full, one elsewhere compact.
    let in_held = loads[&2][0].id().to_string();
    let e = view.fired(&in_held).expect("held");
    assert!(std::sync::Arc::ptr_eq(
        &e,
        &view.fired(&in_held).expect("held")
    ));
    // A pause and a resume of a fired job: its definition says so, and its
    // fired form keeps the last pause (only that form does).
    let resumed_at = t + chrono::Duration::minutes(1);
    view.apply(&RegistryRecord::Pause {
        id: in_held.clone(),
        reason: Some("disk full".into()),
        at: Some(t),
        by: Some("ana".into()),
    })
    .expect("pauses");
    let p = view.get(&in_held).expect("there");
    assert!(p.paused && p.paused_reason() == Some("disk full") && p.paused_at() == Some(t));
    assert!(view.fired(&in_held).expect("held").paused());
    view.apply(&RegistryRecord::Resume {
        id: in_held.clone(),
        at: Some(resumed_at),
    })
    .expect("resumes");
    let r = view.fired(&in_held).expect("held");
    assert!(
        !r.paused() && !std::sync::Arc::ptr_eq(&e, &r),
        "a new fired form"
    );
    assert_eq!(r.last_pause(), Some((t, resumed_at)));
    let g = view.get(&in_held).expect("there");
    assert_eq!(g.last_pause(), Some((t, resumed_at)));
    assert!(!g.paused && g.paused_reason().is_none());
    assert_eq!(r.spec().ok().as_ref(), Some(&g.spec));
    assert_eq!(
        Some(&g.spec),
        jobs.iter().map(|s| &s.job).find(|j| j.id == in_held),
        "the definition reads back unchanged"
    );
    // Searches and pages answer the same whatever the form.
    let f = JobFilter {
        pool: Some("even".into()),
        labels: [("team".to_string(), "t1".to_string())].into(),
        ..JobFilter::default()
    };
    let n = view.count(&f);
    assert_eq!(
        n,
        (0..200).filter(|i| i % 2 == 0 && i % 3 == 1).count(),
        "pool and label filters read compact jobs"
    );
    let (page, more) = view.list(&f, None, 1_000);
    assert!(!more && page.len() == n);
    assert_eq!(
        view.labels_of("j-4")
            .and_then(|l| l.get("team"))
            .map(String::as_str),
        Some("t1")
    );
    assert_eq!(
        view.pools().into_iter().collect::<Vec<_>>(),
        ["even", "odd"]
    );
    // A pause of a compact job changes it (and not its definition).
    let far = jobs
        .iter()
        .find(|s| ![2, 5].contains(&shard_of(&s.job.id, 8)))
        .expect("a job of another shard");
    view.apply(&RegistryRecord::Pause {
        id: far.job.id.clone(),
        reason: Some("noisy".into()),
        at: Some(t),
        by: Some("ana".into()),
    })
    .expect("pauses");
    let p = view.get(&far.job.id).expect("there");
    assert!(p.paused && p.paused_by() == Some("ana") && p.spec == far.job);
    let paused = JobFilter {
        paused: Some(true),
        ..JobFilter::default()
    };
    assert_eq!(view.count(&paused), 1);
    // Letting the shards go makes their jobs compact again, unchanged.
    view.mark(&[2, 5], false);
    assert!(view.convert_some(None, usize::MAX).is_none(), "one step");
    assert_eq!(compact(&view), 200);
    let after: Vec<_> = jobs
        .iter()
        .map(|s| view.get(&s.job.id).expect("there").stored())
        .filter(|s| s.job.id != far.job.id)
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|s| s.job.id != far.job.id)
        .collect();
    assert_eq!(after, before);
    // The same in steps (the registry actor walks so, between heartbeats).
    let walk = |v: &mut RegistryView| {
        let mut at = v.convert_some(None, 7);
        let mut steps = 1;
        while let Some(k) = at {
            at = v.convert_some(Some(&k), 7);
            steps += 1;
        }
        steps
    };
    view.mark(&[3], true);
    assert_eq!(walk(&mut view), 200usize.div_ceil(7));
    let in3 = jobs.iter().filter(|s| shard_of(&s.job.id, 8) == 3).count();
    assert!(in3 > 0 && compact(&view) == 200 - in3);
    assert_eq!(view.hold(&[3])[&3].len(), in3, "parsed already, collected");
    view.mark(&[3], false);
    walk(&mut view);
    assert_eq!(compact(&view), 200);
}

#[test]
fn misfire_policies_plan_missed_occurrences() {
    use sundial_core::{misfire, registry::Fired};
    let entry = |policy: &str, grace: &str, max: u32| {
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "id": "m", "schedule": "* * * * *", "executor": {"type": "noop"},
            "misfire": {"policy": policy, "grace": grace, "max_catch_up": max}
        }))
        .expect("job");
        Fired::new(spec, utc("2026-01-01T00:00:00Z")).expect("entry")
    };
    let (from, now) = (utc("2026-06-01T10:00:00Z"), utc("2026-06-01T10:05:30Z"));
    let minutes = |v: &[chrono::DateTime<chrono::Utc>]| {
        v.iter()
            .map(|t| t.format("%M").to_string())
            .collect::<Vec<_>>()
    };

    let once = misfire::plan(&entry("fire-once", "10m", 100), from, now);
    assert_eq!(minutes(&once.fire), ["05"], "the latest missed one");
    assert_eq!(minutes(&once.skipped), ["01", "02", "03", "04"]);
    let stale = misfire::plan(&entry("fire-once", "10s", 100), from, now);
    assert!(stale.fire.is_empty(), "latest is 30 s old, grace 10 s");
    assert_eq!(stale.skipped_count(), 5);

    let skip = misfire::plan(&entry("skip", "10m", 100), from, now);
    assert!(skip.fire.is_empty());
    assert_eq!(skip.skipped_count(), 5);

    let catch = misfire::plan(&entry("catch-up", "10m", 3), from, now);
    assert_eq!(
        minutes(&catch.fire),
        ["03", "04", "05"],
        "oldest first, at most max_catch_up"
    );
    assert_eq!(minutes(&catch.skipped), ["01", "02"]);

    let undelivered = misfire::undelivered(&entry("skip", "10m", 1), from, now);
    assert_eq!(
        minutes(&undelivered.fire),
        ["01", "02", "03", "04", "05"],
        "a broker outage loses nothing"
    );

    // Jitter is deterministic per fire id and below its bound.
    let j = misfire::jitter(
        "m@2026-06-01T10:01:00.000Z",
        std::time::Duration::from_secs(30),
    );
    assert_eq!(
        j,
        misfire::jitter(
            "m@2026-06-01T10:01:00.000Z",
            std::time::Duration::from_secs(30)
        )
    );
    assert!(j < std::time::Duration::from_secs(30));
}

#[test]
fn upsert_many_is_one_registry_record_applied_in_order() {
    use sundial_core::{
        control::{decide, Decision},
        protocol::{control::Command, registry::RegistryRecord},
        registry::{Change, RegistryView},
    };
    let job = |id: &str, schedule: &str| -> JobSpec {
        serde_json::from_value(
            serde_json::json!({"id": id, "schedule": schedule, "executor": {"type": "noop"}}),
        )
        .expect("job")
    };
    let mut view = RegistryView::default();
    let cmd = Command::UpsertMany {
        by: None,
        reason: None,
        jobs: vec![job("a", "@hourly"), job("b", "@daily"), job("c", "@hourly")],
    };
    let Decision::Append { records, reply } = decide(&cmd, &view, &Default::default(), now())
    else {
        panic!("upsert-many appends");
    };
    assert!(reply.ok, "{reply:?}");
    assert_eq!(records.len(), 1, "one stream message for the batch");
    let RegistryRecord::UpsertMany { jobs } = &records[0] else {
        panic!("an upsert-many record: {records:?}");
    };
    assert_eq!(jobs.len(), 3);
    assert_eq!(
        view.apply(&records[0]),
        Ok(Change::UpsertedMany(vec![
            "a".into(),
            "b".into(),
            "c".into()
        ]))
    );
    assert_eq!(view.len(), 3);
    // Round trip through the codec, as the stream stores it.
    let enc = sundial_core::codec::encode(&records[0]).expect("encodes");
    let back: RegistryRecord = sundial_core::codec::decode(&enc.meta, &enc.body).expect("decodes");
    assert_eq!(back, records[0]);
    // Re-applying the same batch changes nothing observable but is allowed.
    let again = decide(&cmd, &view, &Default::default(), now());
    assert!(
        matches!(again, Decision::Reply(ref r) if r.ok),
        "identical definitions are not appended again: {again:?}"
    );
}

#[test]
fn list_pages_through_every_job_in_id_order() {
    use sundial_core::{
        control::{decide, Decision},
        protocol::control::Command,
        registry::RegistryView,
    };
    let mut view = RegistryView::default();
    let jobs: Vec<JobSpec> = (0..25)
        .map(|i| {
            let team = if i % 5 == 0 { "ops" } else { "web" };
            serde_json::from_value(serde_json::json!({
                "id": format!("job-{i:02}"), "schedule": "@hourly",
                "executor": {"type": "noop"}, "labels": {"team": team}
            }))
            .expect("job")
        })
        .collect();
    let Decision::Append { records, .. } = decide(
        &Command::UpsertMany {
            by: None,
            reason: None,
            jobs,
        },
        &view,
        &Default::default(),
        now(),
    ) else {
        panic!("upsert-many appends");
    };
    view.apply(&records[0]).expect("applies");

    let page = |labels: &[(&str, &str)], after: Option<&str>, limit: Option<usize>| {
        let cmd = Command::List {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            q: None,
            pool: None,
            paused: None,
            after: after.map(str::to_string),
            limit,
        };
        let Decision::Reply(r) = decide(&cmd, &view, &Default::default(), now()) else {
            panic!("list only replies");
        };
        let result = r.result.expect("a result");
        let ids: Vec<String> = result["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["id"].as_str().expect("id").to_string())
            .collect();
        (ids, result["next_after"].as_str().map(str::to_string))
    };
    // Pages of 10: every id once, in order, the cursor null on the last.
    let mut all = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let (ids, next) = page(&[], after.as_deref(), Some(10));
        pages += 1;
        assert!(ids.len() <= 10);
        all.extend(ids);
        match next {
            Some(n) => {
                assert_eq!(Some(&n), all.last(), "the cursor is the page's last id");
                after = Some(n);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..25).map(|i| format!("job-{i:02}")).collect();
    assert_eq!(all, want);
    // Labels filter before paging; an exact fit has no next page.
    let (ops, next) = page(&[("team", "ops")], None, Some(5));
    assert_eq!(ops, ["job-00", "job-05", "job-10", "job-15", "job-20"]);
    assert_eq!(next, None);
    // No limit: the default page (1,000) holds all 25.
    assert_eq!(page(&[], None, None).0.len(), 25);
    assert_eq!(page(&[], Some("job-23"), None).0, ["job-24"]);
}

#[test]
fn list_limit_out_of_range_names_the_field() {
    use sundial_core::protocol::{control::Command, Message};
    for bad in [
        serde_json::json!({"command": "list", "limit": 0}),
        serde_json::json!({"command": "list", "limit": 10_001}),
    ] {
        let e = Command::from_json(bad).expect_err("out of range");
        assert_eq!(e.path, "limit", "{e:?}");
    }
    let e = Command::from_json(serde_json::json!({"command": "list", "after": 3}))
        .expect_err("after is a string");
    assert_eq!(e.path, "after", "{e:?}");
}

#[test]
fn jobs_of_a_pool_without_queues_are_refused_naming_pool() {
    use std::collections::BTreeSet;
    use sundial_core::{
        control::{decide, Decision},
        protocol::control::Command,
        registry::RegistryView,
    };
    let job = |id: &str, pool: &str| -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "id": id, "schedule": "@hourly", "pool": pool, "executor": {"type": "noop"}
        }))
        .expect("job")
    };
    let view = RegistryView::default();
    let missing: BTreeSet<String> = ["other".to_string()].into();
    let Decision::Reply(r) = decide(
        &Command::Upsert {
            by: None,
            reason: None,
            job: Box::new(job("a", "other")),
        },
        &view,
        &missing,
        now(),
    ) else {
        panic!("refused, nothing appended");
    };
    let e = r.error.expect("an error");
    assert_eq!(e.field, "job.pool");
    assert!(
        e.message.contains("topology apply"),
        "says how: {}",
        e.message
    );

    // In a batch: the others are applied, the reply counts them and names
    // the refused job's field by its path.
    let cmd = Command::UpsertMany {
        by: None,
        reason: None,
        jobs: vec![job("b", "default"), job("c", "other"), job("d", "default")],
    };
    let Decision::Append { records, reply } = decide(&cmd, &view, &missing, now()) else {
        panic!("the good jobs are appended");
    };
    assert_eq!(records.len(), 1);
    assert!(!reply.ok);
    assert_eq!(
        reply.result,
        Some(serde_json::json!({"accepted": 2, "changed": 2}))
    );
    let results = reply.results.expect("per-job results");
    assert_eq!(results.len(), 3);
    assert!(results[0].ok && results[2].ok);
    assert_eq!(
        results[1].error.as_ref().map(|e| e.field.as_str()),
        Some("jobs[1].pool")
    );
    // With no pool missing, the same job is accepted.
    let Decision::Append { .. } = decide(
        &Command::Upsert {
            by: None,
            reason: None,
            job: Box::new(job("a", "other")),
        },
        &view,
        &BTreeSet::new(),
        now(),
    ) else {
        panic!("accepted");
    };
}

/// A view with `jobs` (id, schedule, extra fields) applied.
fn view_of(jobs: &[(&str, &str, serde_json::Value)]) -> sundial_core::registry::RegistryView {
    use sundial_core::protocol::registry::RegistryRecord;
    let mut view = sundial_core::registry::RegistryView::default();
    for (id, schedule, extra) in jobs {
        let mut j =
            serde_json::json!({"id": id, "schedule": schedule, "executor": {"type": "noop"}});
        if let (Some(o), Some(e)) = (j.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        view.apply(&RegistryRecord::Upsert {
            job: Box::new(serde_json::from_value(j).expect("job")),
            created_at: utc("2020-01-01T00:00:00Z"),
        })
        .expect("applies");
    }
    view
}

#[test]
fn backfill_fires_the_window_as_the_overlap_policy_allows() {
    use sundial_core::{
        control::{decide, Decision},
        protocol::control::Command,
    };
    let view = view_of(&[
        ("hourly", "0 * * * *", serde_json::json!({})),
        (
            "hourly-forbid",
            "0 * * * *",
            serde_json::json!({"overlap": "forbid"}),
        ),
    ]);
    let now = utc("2026-06-01T12:00:00Z");
    let backfill = |id: &str, from: &str, to: &str, overlap: Option<Overlap>| {
        decide(
            &Command::Backfill {
                by: None,
                dry_run: false,
                reason: None,
                id: id.into(),
                from: utc(from),
                to: utc(to),
                overlap,
            },
            &view,
            &Default::default(),
            now,
        )
    };
    // [from, to): 09:00, 10:00, 11:00; not 12:00.
    let Decision::Backfill { at, reply, .. } = backfill(
        "hourly",
        "2026-06-01T09:00:00Z",
        "2026-06-01T12:00:00Z",
        None,
    ) else {
        panic!("a backfill fires");
    };
    assert_eq!(
        at,
        ["09:00", "10:00", "11:00"].map(|h| utc(&format!("2026-06-01T{h}:00Z")))
    );
    let r = reply.result.expect("result");
    assert_eq!(
        (
            r["occurrences"].clone(),
            r["fired"].clone(),
            r["skipped"].clone()
        ),
        (3.into(), 3.into(), 0.into())
    );
    // The job's forbid keeps the first; an override to replace keeps the last.
    let Decision::Backfill { at, .. } = backfill(
        "hourly-forbid",
        "2026-06-01T09:00:00Z",
        "2026-06-01T12:00:00Z",
        None,
    ) else {
        panic!("fires one");
    };
    assert_eq!(at, [utc("2026-06-01T09:00:00Z")]);
    let Decision::Backfill { at, .. } = backfill(
        "hourly-forbid",
        "2026-06-01T09:00:00Z",
        "2026-06-01T12:00:00Z",
        Some(Overlap::Replace),
    ) else {
        panic!("fires one");
    };
    assert_eq!(at, [utc("2026-06-01T11:00:00Z")]);
    // The future, an empty window, too many occurrences, an unknown job.
    let refused = |d: Decision| match d {
        Decision::Reply(r) if !r.ok => r.error.expect("error").field,
        other => panic!("refused: {other:?}"),
    };
    assert_eq!(
        refused(backfill(
            "hourly",
            "2026-06-01T09:00:00Z",
            "2026-06-01T13:00:00Z",
            None
        )),
        "to"
    );
    assert_eq!(
        refused(backfill(
            "hourly",
            "2026-06-01T09:00:00Z",
            "2026-06-01T09:00:00Z",
            None
        )),
        "to"
    );
    assert_eq!(
        refused(backfill(
            "hourly",
            "2020-01-01T00:00:00Z",
            "2026-06-01T00:00:00Z",
            None
        )),
        "to",
        "more than 10,000 hours"
    );
    assert_eq!(
        refused(backfill(
            "nope",
            "2026-06-01T09:00:00Z",
            "2026-06-01T10:00:00Z",
            None
        )),
        "id"
    );
    // Nothing in the window: answered, nothing fired.
    let quiet = backfill(
        "hourly",
        "2026-06-01T09:10:00Z",
        "2026-06-01T09:20:00Z",
        None,
    );
    assert!(
        matches!(&quiet, Decision::Reply(r) if r.ok && r.result.as_ref().is_some_and(|v| v["fired"] == 0)),
        "{quiet:?}"
    );
    assert_eq!(
        FireId::for_backfill("hourly", utc("2026-06-01T09:00:00Z")).as_str(),
        "hourly@backfill:2026-06-01T09:00:00.000Z"
    );
}

#[test]
fn list_filters_by_id_substring_pool_pause_and_labels_and_pages_in_order() {
    use sundial_core::{protocol::registry::RegistryRecord, registry::JobFilter};
    let mut view = view_of(&[
        (
            "etl-a",
            "@hourly",
            serde_json::json!({"labels": {"team": "data"}}),
        ),
        (
            "etl-b",
            "@hourly",
            serde_json::json!({"labels": {"team": "data"}, "pool": "gpu"}),
        ),
        (
            "report",
            "@daily",
            serde_json::json!({"labels": {"team": "fin"}}),
        ),
        ("xetl", "@daily", serde_json::json!({})),
    ]);
    view.apply(&RegistryRecord::Pause {
        by: None,
        id: "etl-a".into(),
        reason: Some("backfill running".into()),
        at: Some(utc("2026-06-01T00:00:00Z")),
    })
    .expect("pause");
    let ids = |f: &JobFilter, after: Option<&str>, limit: usize| {
        let (page, more) = view.list(f, after, limit);
        (
            page.iter().map(|j| j.spec.id.clone()).collect::<Vec<_>>(),
            more,
        )
    };
    let q = |s: &str| JobFilter {
        q: Some(s.into()),
        ..JobFilter::default()
    };
    assert_eq!(
        ids(&q("etl"), None, 10),
        (vec!["etl-a".into(), "etl-b".into(), "xetl".into()], false)
    );
    assert_eq!(
        ids(&q("ETL"), None, 10),
        (vec!["etl-a".into(), "etl-b".into(), "xetl".into()], false),
        "in any case"
    );
    assert_eq!(
        ids(&q("etl"), None, 2),
        (vec!["etl-a".into(), "etl-b".into()], true)
    );
    assert_eq!(
        ids(&q("etl"), Some("etl-b"), 2),
        (vec!["xetl".into()], false)
    );
    let gpu = JobFilter {
        pool: Some("gpu".into()),
        ..JobFilter::default()
    };
    assert_eq!(ids(&gpu, None, 10).0, ["etl-b"]);
    let paused = JobFilter {
        paused: Some(true),
        ..JobFilter::default()
    };
    assert_eq!(ids(&paused, None, 10).0, ["etl-a"]);
    assert_eq!(
        view.get("etl-a")
            .and_then(|j| j.paused_reason().map(str::to_string))
            .as_deref(),
        Some("backfill running")
    );
    let data = JobFilter {
        labels: [("team".to_string(), "data".to_string())].into(),
        paused: Some(false),
        ..JobFilter::default()
    };
    assert_eq!(ids(&data, None, 10).0, ["etl-b"]);
    assert_eq!(view.count(&q("etl")), 3);
    assert_eq!(view.count(&JobFilter::default()), 4);
    // A resume clears the reason.
    view.apply(&RegistryRecord::Resume {
        id: "etl-a".into(),
        at: None,
    })
    .expect("resume");
    let a = view.get("etl-a").expect("job");
    assert!(!a.paused && a.paused_reason().is_none() && a.paused_at().is_none());
}

#[test]
fn a_json_syntax_error_names_its_own_line() {
    let mut text = String::from("{\"jobs\": [\n");
    for i in 0..300 {
        text.push_str(&format!(
            "  {{\"id\": \"j{i}\", \"schedule\": \"@hourly\", \"executor\": {{\"type\": \"noop\"}}}},\n"
        ));
    }
    // Line 302: a missing comma between two jobs.
    text.push_str(
        "  {\"id\": \"a\", \"schedule\": \"@hourly\", \"executor\": {\"type\": \"noop\"}}\n",
    );
    text.push_str(
        "  {\"id\": \"b\", \"schedule\": \"@hourly\", \"executor\": {\"type\": \"noop\"}}\n]}\n",
    );
    let e = parse_job_file(&text, FileFormat::Json).expect_err("a syntax error");
    assert!(e.message.contains("line 303"), "{e}");
}

#[test]
fn advisories_name_a_timeout_past_consumer_timeout_and_a_backoff_below_the_tiers() {
    let spec: sundial_core::JobSpec = serde_json::from_value(serde_json::json!({
        "id": "long", "schedule": "@hourly", "executor": {"type": "noop"},
        "timeout": "2h", "retry": {"max_attempts": 3, "backoff": ["5s", "1m"]}
    }))
    .expect("spec");
    let tiers = [
        sundial_core::HumanDuration::from_secs(10),
        sundial_core::HumanDuration::from_secs(60),
    ];
    let advice = spec.advisories(std::time::Duration::from_secs(1800), &tiers);
    assert_eq!(advice.len(), 2, "{advice:?}");
    assert!(advice[0].starts_with("timeout:"), "{advice:?}");
    assert!(advice[1].starts_with("retry.backoff[0]:"), "{advice:?}");
    let default: sundial_core::JobSpec = serde_json::from_value(serde_json::json!({
        "id": "plain", "schedule": "@hourly", "executor": {"type": "noop"}
    }))
    .expect("spec");
    assert_eq!(
        default.advisories(std::time::Duration::from_secs(1800), &tiers),
        Vec::<String>::new(),
        "the defaults agree with each other"
    );
}

#[test]
fn the_view_counts_the_jobs_of_each_pool_as_they_come_and_go() {
    use sundial_core::{
        protocol::registry::{RegistryRecord, StoredJob},
        registry::RegistryView,
    };
    let t = utc("2026-06-01T00:00:00Z");
    let job = |id: &str, pool: &str| {
        StoredJob::new(
            serde_json::from_value(serde_json::json!({
                "id": id, "schedule": "@daily", "pool": pool, "executor": {"type": "noop"}
            }))
            .expect("job"),
            t,
        )
    };
    let mut view = RegistryView::new(4);
    view.hold(&[1]);
    view.apply(&RegistryRecord::UpsertMany {
        jobs: vec![job("a", "x"), job("b", "y"), job("c", "y")],
    })
    .expect("applies");
    let pools = |v: &RegistryView| {
        v.pools()
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(pools(&view), ["x", "y"]);
    // Moved to another pool, deleted: the pool goes when its last job does.
    view.apply(&RegistryRecord::UpsertMany {
        jobs: vec![job("a", "y")],
    })
    .expect("applies");
    assert_eq!(pools(&view), ["y"]);
    view.apply(&RegistryRecord::Delete { id: "b".into() })
        .expect("applies");
    assert_eq!(pools(&view), ["y"]);
    // A complete snapshot counts again.
    view.apply(&RegistryRecord::Snapshot {
        snapshot_id: "s".into(),
        part: 0,
        parts: 1,
        jobs: vec![job("z", "zz")],
    })
    .expect("applies");
    assert_eq!(pools(&view), ["zz"]);
}

#[test]
fn a_snapshot_part_holds_every_definition_whole_however_it_is_held() {
    use sundial_core::{
        codec::decode,
        protocol::registry::{RegistryRecord, StoredJob},
        registry::{snapshot_part, Held, RegistryView},
    };
    let t = utc("2026-06-01T00:00:00Z");
    let mut view = RegistryView::new(4);
    let jobs: Vec<StoredJob> = (0..40)
        .map(|i| {
            let job: JobSpec = serde_json::from_value(serde_json::json!({
                "id": format!("k-{i}"), "schedule": "*/5 * * * * *",
                "timezone": "Europe/Berlin", "labels": {"team": "t"},
                "executor": {"type": "noop"}, "payload": {"n": i}
            }))
            .expect("job");
            StoredJob::new(job, t)
        })
        .collect();
    view.apply(&RegistryRecord::UpsertMany { jobs })
        .expect("applies");
    view.apply(&RegistryRecord::Pause {
        id: "k-3".into(),
        reason: Some("why \"quoted\"".into()),
        at: Some(t),
        by: Some("ops".into()),
    })
    .expect("pauses");
    view.hold(&[1, 3]);
    let kept = view.kept();
    let (full, compact) = view.iter_held().fold((0, 0), |(f, c), (_, h)| match h {
        Held::Full(_) => (f + 1, c),
        Held::Compact(_) => (f, c + 1),
    });
    assert!(full > 0 && compact > 0, "both forms in the part");
    let enc = snapshot_part("n-1", 2, 5, &kept).expect("encodes");
    let read: RegistryRecord = decode(&enc.meta, &enc.body).expect("decodes");
    let typed = RegistryRecord::Snapshot {
        snapshot_id: "n-1".into(),
        part: 2,
        parts: 5,
        jobs: kept.iter().map(|k| k.stored().expect("stored")).collect(),
    };
    assert_eq!(read, typed);
    // Defaults are written out for compact jobs too (a later release's
    // defaults must not change a stored job).
    let body: serde_json::Value = serde_json::from_slice(&enc.body).expect("json");
    let entries = body["jobs"].as_array().expect("jobs");
    assert_eq!(entries.len(), 40);
    assert!(
        entries
            .iter()
            .all(|e| e["job"]["pool"] == "default" && e["job"]["timeout"].is_string()),
        "{}",
        entries[0]
    );
    // A live node reads only the head of another node's part.
    use sundial_core::protocol::registry::SnapshotHead;
    assert_eq!(
        SnapshotHead::of(&enc.body),
        Some(SnapshotHead {
            snapshot_id: "n-1".into(),
            part: 2,
            parts: 5
        })
    );
    let other =
        sundial_core::codec::encode(&RegistryRecord::Delete { id: "k-1".into() }).expect("encodes");
    assert_eq!(SnapshotHead::of(&other.body), None);
    assert_eq!(SnapshotHead::of(b"{\"op\":\"snapshot\""), None);
}

#[test]
fn records_after_a_snapshots_first_part_survive_its_completion() {
    use sundial_core::{
        protocol::registry::{RegistryRecord, StoredJob},
        registry::{Change, RegistryView},
    };
    let t = utc("2026-06-01T00:00:00Z");
    let spec = |id: &str, schedule: &str| -> JobSpec {
        serde_json::from_value(
            serde_json::json!({"id": id, "schedule": schedule, "executor": {"type": "noop"}}),
        )
        .expect("job")
    };
    let upsert = |id: &str, schedule: &str| RegistryRecord::Upsert {
        job: Box::new(spec(id, schedule)),
        created_at: t,
    };
    let part = |part, parts, ids: &[&str]| RegistryRecord::Snapshot {
        snapshot_id: "s".into(),
        part,
        parts,
        jobs: ids
            .iter()
            .map(|i| StoredJob::new(spec(i, "@daily"), t))
            .collect(),
    };
    let pause = |id: &str| RegistryRecord::Pause {
        id: id.into(),
        reason: Some("late".into()),
        at: Some(t),
        by: None,
    };
    // The log as a writer leaves it: the snapshot describes the view at its
    // first part; commands went on while its other parts were written.
    let before = [
        upsert("a", "@daily"),
        upsert("b", "@daily"),
        upsert("c", "@daily"),
        upsert("e", "@daily"),
    ];
    let after_first = [
        upsert("a", "@hourly"),
        RegistryRecord::Delete { id: "b".into() },
        pause("c"),
        upsert("d", "@hourly"),
        RegistryRecord::Delete { id: "d".into() },
        upsert("d", "@weekly"),
        pause("e"),
        upsert("e", "@hourly"),
    ];
    let mut log = before.to_vec();
    log.push(part(0, 2, &["a", "b"]));
    log.extend(after_first.iter().cloned());
    log.push(part(1, 2, &["c", "e"]));
    // A node that read the whole log, one on every shard, and one that
    // started reading at the snapshot's first part all end the same.
    for (start, shards, hold) in [(0, 4, false), (0, 4, true), (before.len(), 2, false)] {
        let mut view = RegistryView::new(shards);
        if hold {
            view.hold(&(0..shards).collect::<Vec<_>>());
        }
        let mut last = Change::None;
        for r in &log[start..] {
            last = view.apply(r).expect("applies");
        }
        assert_eq!(last, Change::Reloaded);
        let ids: Vec<_> = view.iter_held().map(|(id, _)| id.to_string()).collect();
        assert_eq!(ids, ["a", "c", "d", "e"], "start {start}, hold {hold}");
        let schedule = |id: &str| view.get(id).expect("there").spec.schedule.clone();
        assert_eq!(schedule("a"), "@hourly", "upserted after the first part");
        assert_eq!(schedule("d"), "@weekly");
        assert_eq!(schedule("e"), "@hourly");
        let c = view.get("c").expect("c");
        assert!(
            c.paused && c.paused_reason() == Some("late"),
            "paused after"
        );
        assert!(!view.get("e").expect("e").paused, "upsert after its pause");
    }
    // A replay that ends while a snapshot is still being read drops it: the
    // view keeps what the records said, and a later part changes nothing.
    let mut view = RegistryView::new(4);
    for r in &log[..before.len() + 1 + after_first.len()] {
        view.apply(r).expect("applies");
    }
    view.end_replay();
    assert_eq!(view.apply(&part(1, 2, &["c", "e"])), Ok(Change::None));
    let ids: Vec<_> = view.iter_held().map(|(id, _)| id.to_string()).collect();
    assert_eq!(ids, ["a", "c", "d", "e"]);
    assert_eq!(view.get("a").expect("a").spec.schedule, "@hourly");
}
