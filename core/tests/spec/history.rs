//! The history row of an attempt, merged from its run records in any order,
//! and the summary over rows.

use sundial_core::{
    history::{percentile, Outcome, RunRow, Summary},
    protocol::run::{RunEvent, RunKind},
};

use crate::util::utc as at;

fn rec(kind: RunKind, when: &str, worker: &str) -> RunEvent {
    RunEvent {
        kind,
        fire_id: "j@2026-03-08T07:00:00.000Z".into(),
        job_id: "j".into(),
        pool: "default".into(),
        attempt: 1,
        worker: worker.into(),
        at: at(when),
        duration_ms: matches!(kind, RunKind::Succeeded | RunKind::Failed).then_some(250),
        reason: (kind == RunKind::Failed).then(|| "exit 3".into()),
        output: (kind == RunKind::Failed).then(|| "boom\n".into()),
        deadline: None,
        scheduled_at: None,
        replay: None,
        payload: None,
        by: None,
    }
}

fn merged(records: &[RunEvent]) -> RunRow {
    let mut row = RunRow::from_record(&records[0]).expect("a row");
    for r in &records[1..] {
        row.apply(r);
    }
    row
}

#[test]
fn an_attempt_that_failed_and_was_retried_keeps_its_reason_output_and_times() {
    let row = merged(&[
        rec(RunKind::Started, "2026-03-08T07:00:00.010Z", "w1"),
        rec(RunKind::Failed, "2026-03-08T07:00:00.260Z", "w1"),
        rec(RunKind::Retrying, "2026-03-08T07:00:00.270Z", "w1"),
    ]);
    assert_eq!(row.outcome, Outcome::Failed);
    assert!(row.retried);
    assert_eq!(row.reason.as_deref(), Some("exit 3"));
    assert_eq!(row.output.as_deref(), Some("boom\n"));
    assert_eq!(row.duration_ms, Some(250));
    assert_eq!(row.started_at, Some(at("2026-03-08T07:00:00.010Z")));
    assert_eq!(row.finished_at, Some(at("2026-03-08T07:00:00.260Z")));
    // From the fire id when the record does not say.
    assert_eq!(row.scheduled_at, Some(at("2026-03-08T07:00:00Z")));
}

#[test]
fn a_late_start_or_a_duplicate_skip_never_undoes_an_outcome() {
    let row = merged(&[
        rec(RunKind::Succeeded, "2026-03-08T07:00:01Z", "w1"),
        rec(RunKind::Started, "2026-03-08T07:00:00.750Z", "w1"),
        rec(RunKind::Skipped, "2026-03-08T07:00:02Z", "w2"),
    ]);
    assert_eq!(row.outcome, Outcome::Succeeded);
    assert_eq!(row.started_at, Some(at("2026-03-08T07:00:00.750Z")));
    // An outcome alone: its start is its end less its duration.
    let alone = merged(&[rec(RunKind::Succeeded, "2026-03-08T07:00:01Z", "w1")]);
    assert_eq!(alone.started_at, Some(at("2026-03-08T07:00:00.750Z")));
    // Dead stays dead.
    let dead = merged(&[
        rec(RunKind::Failed, "2026-03-08T07:00:01Z", "w1"),
        rec(RunKind::Dead, "2026-03-08T07:00:01.100Z", "w1"),
        rec(RunKind::Failed, "2026-03-08T07:00:01Z", "w1"),
    ]);
    assert_eq!(dead.outcome, Outcome::Dead);
    // A fired record is not an attempt.
    assert!(RunRow::from_record(&rec(RunKind::Fired, "2026-03-08T07:00:00Z", "n")).is_none());
}

#[test]
fn the_summary_counts_finished_attempts_and_takes_nearest_rank_percentiles() {
    let rows: Vec<(Outcome, Option<u64>)> = (1..=20)
        .map(|i| {
            let o = if i % 5 == 0 {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            };
            (o, Some(i * 10))
        })
        .chain([(Outcome::Running, None), (Outcome::Skipped, None)])
        .collect();
    let s = Summary::of("j", at("2026-03-08T00:00:00Z"), &rows, None, None);
    assert_eq!((s.runs, s.succeeded, s.failed), (20, 16, 4));
    assert_eq!(s.success_rate, Some(0.8));
    assert_eq!((s.p50_ms, s.p95_ms), (Some(100), Some(190)));
    assert_eq!(percentile(&[], 50.0), None);
    assert_eq!(percentile(&[7], 95.0), Some(7));
    let none = Summary::of("j", at("2026-03-08T00:00:00Z"), &[], None, None);
    assert_eq!((none.runs, none.success_rate), (0, None));
}
