//! Workflow steps: the refusals name their path, and the decision of what
//! runs next, by table (issue 24's story: extract → transform → load, and a
//! failure step).

use sundial_core::{
    job::Executor,
    workflow::{check, next, Ending, StepSpec, StepState, When},
};

fn step(id: &str, after: &[&str], when: When) -> StepSpec {
    StepSpec {
        id: id.into(),
        executor: Executor::Noop,
        timeout: None,
        retry: None,
        pool: None,
        after: after.iter().map(|a| a.to_string()).collect(),
        when,
        fanout: None,
    }
}

/// extract → transform → load, and `page` after extract/transform/load on failure.
fn etl() -> Vec<StepSpec> {
    vec![
        step("extract", &[], When::Success),
        step("transform", &["extract"], When::Success),
        step("load", &["transform"], When::Success),
        step("page", &["extract", "transform", "load"], When::Failure),
    ]
}

use StepState::{Dead, Running, Succeeded, Waiting};

#[test]
fn refusals_name_the_path() {
    let cases: Vec<(Vec<StepSpec>, &str, &str)> = vec![
        (vec![], "jobs[3].steps", "at least one step"),
        (
            vec![
                step("a", &[], When::Success),
                step("b", &["zz"], When::Success),
            ],
            "jobs[3].steps[1].after[0]",
            "no step \"zz\"",
        ),
        (
            vec![step("a", &["a"], When::Success)],
            "jobs[3].steps[0].after[0]",
            "itself",
        ),
        (
            vec![step("a", &[], When::Success), step("a", &[], When::Success)],
            "jobs[3].steps[1].id",
            "also steps[0]",
        ),
        (
            vec![step("Bad Id", &[], When::Success)],
            "jobs[3].steps[0].id",
            "must match",
        ),
        (
            vec![step("a", &[], When::Failure)],
            "jobs[3].steps[0].when",
            "could never run",
        ),
        (
            vec![
                step("a", &["c"], When::Success),
                step("b", &["a"], When::Success),
                step("c", &["b"], When::Success),
            ],
            "after[0]",
            "cycle: ",
        ),
        (
            vec![
                step("a", &[], When::Success),
                step("b", &["a", "a"], When::Success),
            ],
            "jobs[3].steps[1].after[1]",
            "named twice",
        ),
    ];
    for (steps, field, message) in cases {
        let e = check(&steps, "jobs[3]").expect_err(field);
        assert!(
            e.field.ends_with(field),
            "{field}: got {} ({})",
            e.field,
            e.message
        );
        assert!(e.message.contains(message), "{field}: {}", e.message);
    }
    let e = check(
        &[
            step("a", &["c"], When::Success),
            step("b", &["a"], When::Success),
            step("c", &["b"], When::Success),
        ],
        "jobs[0]",
    )
    .expect_err("cycle");
    assert!(e.message.contains("a → c → b → a"), "{}", e.message);
    check(&etl(), "jobs[0]").expect("the ETL workflow is fine");
}

fn skipped(failure: bool) -> StepState {
    StepState::Skipped {
        reason: String::new(),
        failure,
    }
}

/// (states before, steps to start, steps skipped with failure flag, ending)
type Row = (
    Vec<StepState>,
    Vec<usize>,
    Vec<(usize, bool)>,
    Option<Ending>,
);

#[test]
fn the_decision_by_table() {
    let rows: Vec<Row> = vec![
        // A new occurrence: only extract starts.
        (
            vec![Waiting, Waiting, Waiting, Waiting],
            vec![0],
            vec![],
            None,
        ),
        // Extract running: nothing new.
        (
            vec![Running, Waiting, Waiting, Waiting],
            vec![],
            vec![],
            None,
        ),
        // Extract succeeded: transform starts.
        (
            vec![Succeeded, Waiting, Waiting, Waiting],
            vec![1],
            vec![],
            None,
        ),
        // Transform succeeded: load starts.
        (
            vec![Succeeded, Succeeded, Waiting, Waiting],
            vec![2],
            vec![],
            None,
        ),
        // All succeeded: page is skipped (nothing failed), the occurrence succeeded.
        (
            vec![Succeeded, Succeeded, Succeeded, Waiting],
            vec![],
            vec![(3, false)],
            Some(Ending::Succeeded),
        ),
        // Extract dead: transform and load skipped (failure), page runs, not ended yet.
        (
            vec![Dead, Waiting, Waiting, Waiting],
            vec![3],
            vec![(1, true), (2, true)],
            None,
        ),
        // Page ran after the failure: the occurrence failed.
        (
            vec![Dead, skipped(true), skipped(true), Succeeded],
            vec![],
            vec![],
            Some(Ending::Failed),
        ),
        // Load dead: page runs.
        (
            vec![Succeeded, Succeeded, Dead, Waiting],
            vec![3],
            vec![],
            None,
        ),
    ];
    let steps = etl();
    for (k, (states, start, skip, ended)) in rows.into_iter().enumerate() {
        let d = next(&steps, &states);
        assert_eq!(d.start, start, "row {k}: start");
        let got: Vec<(usize, bool)> = d
            .skip
            .iter()
            .map(|(i, st)| match st {
                StepState::Skipped { failure, .. } => (*i, *failure),
                other => panic!("row {k}: skip with {other:?}"),
            })
            .collect();
        assert_eq!(got, skip, "row {k}: skip");
        assert_eq!(d.ended, ended, "row {k}: ended");
    }
}

#[test]
fn fan_in_waits_for_every_branch_and_done_runs_either_way() {
    // a → (b, c) → d; e after d whatever happened.
    let steps = vec![
        step("a", &[], When::Success),
        step("b", &["a"], When::Success),
        step("c", &["a"], When::Success),
        step("d", &["b", "c"], When::Success),
        step("e", &["d"], When::Done),
    ];
    check(&steps, "jobs[0]").expect("a diamond is fine");
    assert_eq!(
        next(&steps, &[Succeeded, Waiting, Waiting, Waiting, Waiting]).start,
        vec![1, 2]
    );
    // One branch done, the other running: d waits.
    let d = next(&steps, &[Succeeded, Succeeded, Running, Waiting, Waiting]);
    assert!(d.start.is_empty() && d.skip.is_empty() && d.ended.is_none());
    // One branch dead: d is skipped, e (done) still runs.
    let d = next(&steps, &[Succeeded, Succeeded, Dead, Waiting, Waiting]);
    assert_eq!(d.start, vec![4]);
    assert_eq!(d.skip.len(), 1);
    assert!(
        matches!(&d.skip[0], (3, StepState::Skipped { reason, failure: true }) if reason == "c did not succeed")
    );
}

#[test]
fn step_fire_ids_are_deterministic_and_split_back() {
    use chrono::TimeZone;
    use sundial_core::{fire_id::StepRef, FireId};
    let at = chrono::Utc.with_ymd_and_hms(2026, 12, 5, 3, 0, 0).unwrap();
    let occurrence = FireId::new("nightly-etl", at);
    let one = FireId::for_step(occurrence.as_str(), "extract", None);
    assert_eq!(one.as_str(), "nightly-etl@2026-12-05T03:00:00.000Z/extract");
    let shard = FireId::for_step(occurrence.as_str(), "transform", Some((3, 8)));
    assert_eq!(
        shard.as_str(),
        "nightly-etl@2026-12-05T03:00:00.000Z/transform#3/8"
    );
    let occ = "nightly-etl@2026-12-05T03:00:00.000Z";
    assert_eq!(
        FireId::split_step(shard.as_str()),
        Some(StepRef {
            occurrence: occ,
            step: "transform",
            shard: Some((3, 8)),
            worker: None,
        })
    );
    assert_eq!(
        FireId::split_step(one.as_str()),
        Some(StepRef {
            occurrence: occ,
            step: "extract",
            shard: None,
            worker: None,
        })
    );
    let on = FireId::for_worker(occurrence.as_str(), "backup", "db-1.example");
    assert_eq!(
        on.as_str(),
        "nightly-etl@2026-12-05T03:00:00.000Z/backup@db-1.example"
    );
    assert_eq!(
        FireId::split_step(on.as_str()),
        Some(StepRef {
            occurrence: occ,
            step: "backup",
            shard: None,
            worker: Some("db-1.example"),
        })
    );
    // The occurrence of a step's fire, as the ledger reads it.
    assert_eq!(FireId::parse(shard.as_str()), Some(("nightly-etl", at)));
    // Not step ids: a plain fire, a shard past its count, no step name.
    assert_eq!(FireId::split_step(occurrence.as_str()), None);
    assert_eq!(FireId::split_step("j@2026-12-05T03:00:00.000Z/t#8/8"), None);
    assert_eq!(FireId::split_step("j@2026-12-05T03:00:00.000Z/"), None);
    // The same inputs give the same id on any node.
    assert_eq!(FireId::for_step(occurrence.as_str(), "extract", None), one);
}

/// The ETL story as a job: `extract` → `transform` × 8 shards → `load`,
/// and `page` on failure.
fn etl_job(id: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "schedule": "*/10 * * * * *",
        "steps": [
            {"id": "extract", "executor": {"type": "noop"}},
            {"id": "transform", "executor": {"type": "noop"}, "after": ["extract"],
             "fanout": {"shards": 8}, "pool": "etl"},
            {"id": "load", "executor": {"type": "noop"}, "after": ["transform"]},
            {"id": "page", "executor": {"type": "noop"},
             "after": ["extract", "transform", "load"], "when": "failure"}
        ]
    })
}

#[test]
fn workflow_jobs_are_refused_at_upsert_naming_the_path() {
    use sundial_core::{
        control::{decide, Decision},
        protocol::control::Command,
        registry::RegistryView,
        JobSpec,
    };
    let mut cycle = etl_job("cycle");
    cycle["steps"][0]["after"] = serde_json::json!(["load"]);
    let mut unknown = etl_job("unknown");
    unknown["steps"][2]["after"] = serde_json::json!(["transform", "trasnform"]);
    let mut both = etl_job("both");
    both["executor"] = serde_json::json!({"type": "noop"});
    let mut shards = etl_job("shards");
    shards["steps"][1]["fanout"] = serde_json::json!({"shards": 0});
    let mut replace = etl_job("replace");
    replace["overlap"] = serde_json::json!("replace");
    let mut step_exec = etl_job("step-exec");
    step_exec["steps"][3]["executor"] = serde_json::json!({"type": "shell", "command": ["rm"]});
    let jobs: Vec<JobSpec> = [
        etl_job("fine"),
        unknown,
        both,
        cycle,
        shards,
        replace,
        step_exec,
        serde_json::json!({"id": "nothing", "schedule": "@hourly"}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("parses"))
    .collect();
    let missing: std::collections::BTreeSet<String> = ["etl".to_string()].into();
    let cmd = Command::UpsertMany {
        by: None,
        reason: None,
        jobs,
    };
    let view = RegistryView::default();
    let (Decision::Append { reply, .. } | Decision::Reply(reply)) =
        decide(&cmd, &view, &Default::default(), chrono::Utc::now())
    else {
        panic!("upsert-many replies");
    };
    let results = reply.results.expect("per-job results");
    let errors: Vec<(String, String)> = results
        .iter()
        .map(|r| {
            r.error
                .as_ref()
                .map(|e| (e.field.clone(), e.message.clone()))
                .unwrap_or_default()
        })
        .collect();
    let want = [
        ("", ""),
        ("jobs[1].steps[2].after[1]", "no step \"trasnform\""),
        ("jobs[2].executor", "not both"),
        (
            "jobs[3].steps[1].after[0]",
            "extract → load → transform → extract",
        ),
        ("jobs[4].steps[1].fanout.shards", "must be 1..=1000"),
        ("jobs[5].overlap", "not available for workflows"),
        ("jobs[6].steps[3].executor.command", "absolute path"),
        ("jobs[7].executor", "missing"),
    ];
    for (i, (field, message)) in want.iter().enumerate() {
        assert_eq!(errors[i].0, *field, "jobs[{i}]: {:?}", errors[i]);
        assert!(errors[i].1.contains(message), "jobs[{i}]: {:?}", errors[i]);
    }
    // A step's pool without queues is refused by its path, as a job's is.
    let Decision::Reply(reply) = decide(
        &Command::Upsert {
            by: None,
            reason: None,
            job: Box::new(serde_json::from_value(etl_job("fine")).expect("parses")),
        },
        &view,
        &missing,
        chrono::Utc::now(),
    ) else {
        panic!("refused");
    };
    let e = reply.error.expect("an error");
    assert_eq!(e.field, "job.steps[1].pool", "{e:?}");
}

#[test]
fn progress_from_records_by_table() {
    use sundial_core::{
        protocol::run::RunKind::{self, *},
        workflow::{Advance, Progress},
        JobSpec,
    };
    let job: JobSpec = serde_json::from_value(etl_job("etl")).expect("parses");
    let steps = job.workflow().expect("a workflow").into_owned();
    let start = |ids: &[usize]| ids.to_vec();
    // (records since the row before, what the advance says)
    type Rec = (&'static str, u32, RunKind);
    let all_transforms =
        |kind: RunKind| -> Vec<Rec> { (0..8).map(|k| ("transform", k, kind)).collect() };
    let rows: Vec<(Vec<Rec>, Advance)> = vec![
        // The occurrence opens: extract starts.
        (
            vec![],
            Advance {
                start: start(&[0]),
                ..Default::default()
            },
        ),
        // A second look changes nothing (published already).
        (vec![("extract", 0, Started)], Advance::default()),
        // A failed attempt with a retry to come is still running.
        (
            vec![("extract", 0, Failed), ("extract", 0, Retrying)],
            Advance::default(),
        ),
        (
            vec![("extract", 0, Succeeded)],
            Advance {
                start: start(&[1]),
                ..Default::default()
            },
        ),
        // Seven of eight shards: load waits.
        (
            (0..7).map(|k| ("transform", k, Succeeded)).collect(),
            Advance::default(),
        ),
        // A worker's duplicate skip of shard 7 changes nothing.
        (vec![("transform", 7, Skipped)], Advance::default()),
        (
            vec![("transform", 7, Succeeded)],
            Advance {
                start: start(&[2]),
                ..Default::default()
            },
        ),
        (
            vec![("load", 0, Succeeded)],
            Advance {
                skip: vec![(3, "nothing it waits for failed".into())],
                ended: Some(Ending::Succeeded),
                ..Default::default()
            },
        ),
        // Recorded once: a late duplicate record does not end it again.
        (all_transforms(Succeeded), Advance::default()),
    ];
    let mut p = Progress::default();
    for (i, (records, want)) in rows.into_iter().enumerate() {
        for (step, k, kind) in records {
            p.record(step, k, kind);
        }
        assert_eq!(p.advance(&steps), want, "row {i}");
    }

    // Extract dead: transform and load skipped as failures, page runs, and
    // the occurrence fails when page ends.
    let mut p = Progress::default();
    p.advance(&steps);
    p.record("extract", 0, Dead);
    let a = p.advance(&steps);
    assert_eq!(a.start, vec![3]);
    assert_eq!(
        a.skip,
        vec![
            (1, "extract did not succeed".to_string()),
            (2, "transform did not succeed".to_string())
        ]
    );
    p.record("page", 0, Succeeded);
    assert_eq!(p.advance(&steps).ended, Some(Ending::Failed));

    // One dead shard: the step is dead once all eight ended; a replay of it
    // that succeeds counts (the occurrence goes on: load starts).
    let mut p = Progress::default();
    p.record("extract", 0, Succeeded);
    for k in 0..8 {
        p.record("transform", k, if k == 5 { Dead } else { Succeeded });
    }
    let a = p.advance(&steps);
    assert_eq!(a.start, vec![3], "page runs: {a:?}");
    assert_eq!(a.skip, vec![(2, "transform did not succeed".to_string())]);
    p.record("transform", 5, Started);
    assert_eq!(
        p.states(&steps)[1],
        StepState::Dead,
        "a dead shard stays dead until it succeeds"
    );
    p.record("transform", 5, Succeeded);
    p.record("page", 0, Succeeded);
    let a = p.advance(&steps);
    assert_eq!(a.start, vec![2], "the replayed shard counts: load runs");

    // Rebuilt on another node from the same records: the same progress.
    let mut q = Progress::default();
    q.record("extract", 0, Succeeded);
    for k in 0..8 {
        q.record("transform", k, Succeeded);
    }
    q.record("page", 0, Fired);
    q.skip_recorded("load");
    // load was recorded skipped, but its input succeeded now: it starts.
    assert_eq!(q.advance(&steps).start, vec![2]);

    // A takeover mid-way: the old owner published four of eight shards
    // and died before recording them; the new owner publishes the four no
    // record mentions, once.
    let mut t = Progress::default();
    t.record("extract", 0, Succeeded);
    for k in 0..4 {
        t.record("transform", k, Started);
    }
    let a = t.advance(&steps);
    assert_eq!(a.resume, vec![(1, 4), (1, 5), (1, 6), (1, 7)], "{a:?}");
    assert!(a.start.is_empty(), "{a:?}");
    assert_eq!(t.advance(&steps), Advance::default(), "resumed once");
    // Steps this node started itself are never resumed.
    let mut own = Progress::default();
    own.record("extract", 0, Succeeded);
    assert_eq!(own.advance(&steps).start, vec![1]);
    own.record("transform", 0, Started);
    assert_eq!(own.advance(&steps), Advance::default());
}

#[test]
fn a_fanout_job_is_a_workflow_of_one_step() {
    let job: sundial_core::JobSpec = serde_json::from_value(serde_json::json!({
        "id": "slices", "schedule": "@hourly", "executor": {"type": "noop"},
        "fanout": {"shards": 4}
    }))
    .expect("parses");
    job.validate(chrono::Utc::now(), chrono::Utc::now())
        .expect("valid");
    let steps = job.workflow().expect("a workflow");
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].id, "main");
    assert_eq!(steps[0].fanout.and_then(|f| f.shards()), Some(4));
    let plain: sundial_core::JobSpec = serde_json::from_value(serde_json::json!({
        "id": "plain", "schedule": "@hourly", "executor": {"type": "noop"}
    }))
    .expect("parses");
    assert!(plain.workflow().is_none());
    // The TOML form, as in a job file.
    let toml_job = r#"
id = "backup"
schedule = "0 3 * * *"
[[steps]]
id = "dump"
executor = { type = "noop" }
fanout = { shards = 3 }
[[steps]]
id = "notify"
executor = { type = "noop" }
after = ["dump"]
when = "failure"
"#;
    let j: sundial_core::JobSpec = toml::from_str(toml_job).expect("toml parses");
    assert_eq!(j.steps.len(), 2);
    j.validate(chrono::Utc::now(), chrono::Utc::now())
        .expect("valid");
    let bad: Result<sundial_core::JobSpec, _> = serde_json::from_value(serde_json::json!({
        "id": "x", "schedule": "@hourly", "executor": {"type": "noop"}, "fanout": "everyone"
    }));
    let e = bad.expect_err("a bad fanout word").to_string();
    assert!(e.contains("every-worker"), "{e}");
}

#[test]
fn the_ledger_expects_the_steps_the_outcomes_call_for() {
    use sundial_core::{ledger::steps, protocol::run::RunKind::*, JobSpec};
    let job: JobSpec = serde_json::from_value(etl_job("etl")).expect("parses");
    let w = job.workflow().expect("a workflow");
    let occ = "etl@2026-12-05T03:00:00.000Z";
    let id = |s: &str| format!("{occ}/{s}");
    // Extract ran, seven of eight shards reported: shard 5 is missing; load
    // waits for it, so it is not expected yet; page neither.
    let mut records = vec![(id("extract"), Started), (id("extract"), Succeeded)];
    records.extend(
        (0..8)
            .filter(|k| *k != 5)
            .map(|k| (id(&format!("transform#{k}/8")), Succeeded)),
    );
    records.push((id("transform#5/8"), Fired));
    let run = |r: &[(String, sundial_core::protocol::run::RunKind)]| {
        steps(
            &w,
            occ,
            r.iter().map(|(f, k)| (f.as_str(), *k)).collect::<Vec<_>>(),
        )
    };
    let l = run(&records);
    assert_eq!(l.expected.len(), 9, "{l:?}");
    assert_eq!(l.missing, vec![id("transform#5/8")]);
    // Shard 5 ran: load is expected, and missing until it reports.
    records.push((id("transform#5/8"), Succeeded));
    assert_eq!(run(&records).missing, vec![id("load")]);
    records.push((id("load"), Succeeded));
    let l = run(&records);
    assert!(l.missing.is_empty(), "{l:?}");
    assert_eq!(l.expected.len(), 10, "page is skipped, not expected");
    // Extract dead: page expected, transform and load not.
    assert_eq!(run(&[(id("extract"), Dead)]).missing, vec![id("page")]);

    // Every worker: the set is the workers it was fired to.
    let backup: JobSpec = serde_json::from_value(serde_json::json!({
        "id": "backup", "schedule": "@daily", "executor": {"type": "noop"},
        "fanout": "every-worker"
    }))
    .expect("parses");
    backup
        .validate(chrono::Utc::now(), chrono::Utc::now())
        .expect("valid");
    let b = backup.workflow().expect("a workflow");
    let occ = "backup@2026-12-05T03:00:00.000Z";
    let l = steps(
        &b,
        occ,
        [
            (format!("{occ}/main@host-a").as_str(), Fired),
            (format!("{occ}/main@host-b").as_str(), Fired),
            (format!("{occ}/main@host-a").as_str(), Succeeded),
        ]
        .map(|(f, k)| (f.to_string(), k))
        .iter()
        .map(|(f, k)| (f.as_str(), *k))
        .collect::<Vec<_>>(),
    );
    assert_eq!(l.expected.len(), 2, "{l:?}");
    assert_eq!(l.missing, vec![format!("{occ}/main@host-b")]);
}

#[test]
fn a_cancelled_occurrence_starts_nothing_more_and_stays_cancelled() {
    use sundial_core::{
        ledger::steps,
        protocol::run::RunKind::*,
        workflow::{Progress, CANCELLED},
        JobSpec,
    };
    let job: JobSpec = serde_json::from_value(etl_job("etl")).expect("parses");
    let steps_of = job.workflow().expect("a workflow").into_owned();
    // Extract succeeded, the transforms run; then the cancellation.
    let mut p = Progress::default();
    p.record("extract", 0, Succeeded);
    assert_eq!(p.advance(&steps_of).start, vec![1]);
    p.record("transform", 0, Started);
    assert!(p.cancel(), "an open occurrence is cancelled");
    assert!(!p.cancel(), "once");
    assert_eq!(p.ended(), Some(Ending::Cancelled));
    let a = p.advance(&steps_of);
    assert!(a.start.is_empty() && a.resume.is_empty(), "{a:?}");
    assert_eq!(
        a.skip,
        vec![(2, CANCELLED.to_string()), (3, CANCELLED.to_string())],
        "load and page never start"
    );
    assert_eq!(a.ended, None, "the cancel record is its ending");
    // The transforms end (stopped, or they finished): nothing starts, and
    // the occurrence does not end again.
    for k in 0..8 {
        p.record("transform", k, Succeeded);
    }
    assert_eq!(p.advance(&steps_of), Default::default());
    assert_eq!(p.ended(), Some(Ending::Cancelled));
    // An occurrence that ended is not cancelled.
    let mut done = Progress::default();
    done.ending_recorded(Ending::Succeeded);
    assert!(!done.cancel());
    assert_eq!(done.ended(), Some(Ending::Succeeded));

    // The ledger: after the cancellation only what ran is expected.
    let occ = "etl@2026-12-05T03:00:00.000Z";
    let id = |s: &str| format!("{occ}/{s}");
    let records = [
        (id("extract"), Succeeded),
        (id("transform#0/8"), Started),
        (occ.to_string(), Cancelled),
    ];
    let l = steps(
        &steps_of,
        occ,
        records
            .iter()
            .map(|(f, k)| (f.as_str(), *k))
            .collect::<Vec<_>>(),
    );
    assert!(
        l.missing.iter().all(|m| m.contains("transform#")),
        "load and page are not expected: {l:?}"
    );
    let uncancelled = steps(
        &steps_of,
        occ,
        records[..2]
            .iter()
            .map(|(f, k)| (f.as_str(), *k))
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        uncancelled.missing.len(),
        l.missing.len(),
        "the shards are expected either way"
    );
}

#[test]
fn an_every_worker_step_waits_for_each_worker_it_was_fired_to() {
    use sundial_core::{protocol::run::RunKind::*, workflow::Progress, JobSpec};
    let backup: JobSpec = serde_json::from_value(serde_json::json!({
        "id": "backup", "schedule": "@daily", "executor": {"type": "noop"},
        "fanout": "every-worker"
    }))
    .expect("parses");
    let steps_of = backup.workflow().expect("a workflow").into_owned();
    let mut p = Progress::default();
    assert_eq!(p.advance(&steps_of).start, vec![0]);
    let set = ["host-a", "host-b", "host-c"].map(String::from);
    p.fired_on("main", &set);
    // host-b's success is read before the `fired` records of the three
    // (they are written after the fires are published): the step waits.
    let b = |w| sundial_core::fire_id::StepRef {
        occurrence: "backup@2026-12-05T03:00:00.000Z",
        step: "main",
        shard: None,
        worker: Some(w),
    };
    p.record_fire(&b("host-b"), Succeeded);
    assert_eq!(p.advance(&steps_of).ended, None, "two workers still run");
    for w in ["host-a", "host-b", "host-c"] {
        p.record_fire(&b(w), Fired);
    }
    p.record_fire(&b("host-a"), Succeeded);
    assert_eq!(p.advance(&steps_of).ended, None, "host-c still runs");
    p.record_fire(&b("host-c"), Succeeded);
    assert_eq!(p.advance(&steps_of).ended, Some(Ending::Succeeded));
}
