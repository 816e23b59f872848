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
    let one = FireId::for_step(&occurrence, "extract", None);
    assert_eq!(one.as_str(), "nightly-etl@2026-12-05T03:00:00.000Z/extract");
    let shard = FireId::for_step(&occurrence, "transform", Some((3, 8)));
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
            shard: Some((3, 8))
        })
    );
    assert_eq!(
        FireId::split_step(one.as_str()),
        Some(StepRef {
            occurrence: occ,
            step: "extract",
            shard: None
        })
    );
    // The occurrence of a step's fire, as the ledger reads it.
    assert_eq!(FireId::parse(shard.as_str()), Some(("nightly-etl", at)));
    // Not step ids: a plain fire, a shard past its count, no step name.
    assert_eq!(FireId::split_step(occurrence.as_str()), None);
    assert_eq!(FireId::split_step("j@2026-12-05T03:00:00.000Z/t#8/8"), None);
    assert_eq!(FireId::split_step("j@2026-12-05T03:00:00.000Z/"), None);
    // The same inputs give the same id on any node.
    assert_eq!(FireId::for_step(&occurrence, "extract", None), one);
}
