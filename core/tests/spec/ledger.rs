//! The fire ledger: expected fire ids of a window, compared with observed.

use chrono::{DateTime, Utc};
use sundial_core::{
    ledger::{expected, Ledger},
    registry::JobEntry,
    JobSpec,
};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("instant")
        .with_timezone(&Utc)
}

fn job(id: &str, schedule: &str) -> JobEntry {
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "id": id, "schedule": schedule, "executor": {"type": "noop"}
    }))
    .expect("spec");
    JobEntry::new(spec, utc("2026-01-01T00:00:00Z")).expect("entry")
}

#[test]
fn expected_lists_each_occurrence_of_the_window_once() {
    let mut paused = job("p", "* * * * * *");
    paused.paused = true;
    let jobs = [job("s", "*/10 * * * * *"), job("m", "0 * * * * *"), paused];
    let ids = expected(
        &jobs,
        utc("2026-03-01T10:00:00Z"),
        utc("2026-03-01T10:01:00Z"),
    );
    // (10:00:00, 10:01:00]: s at :10 :20 :30 :40 :50 and 10:01:00; m at 10:01:00.
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert!(ids.contains("s@2026-03-01T10:00:10.000Z"));
    assert!(ids.contains("m@2026-03-01T10:01:00.000Z"));
    assert!(
        !ids.contains("s@2026-03-01T10:00:00.000Z"),
        "the window is open at its start"
    );
    assert!(
        !ids.iter().any(|i| i.starts_with("p@")),
        "paused jobs are not expected"
    );
}

#[test]
fn compare_reports_missing_duplicate_and_unexpected() {
    let exp = ["a@1", "a@2", "a@3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let l = Ledger::compare(&exp, ["a@1", "a@2", "a@2", "b@9"]);
    assert_eq!(l.missing, vec!["a@3".to_string()]);
    assert_eq!(l.duplicates.get("a@2"), Some(&2));
    assert_eq!(l.unexpected, vec!["b@9".to_string()]);
    assert_eq!((l.expected, l.observed), (3, 3));
}
