//! The fire ledger: expected fire ids of a window, compared with observed.

use chrono::{DateTime, Utc};
use sundial_core::{
    ledger::{due, expected, Ledger},
    registry::{Fired, JobEntry},
    JobSpec,
};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("instant")
        .with_timezone(&Utc)
}

fn job(id: &str, schedule: &str) -> Fired {
    Fired::from_entry(&entry_of(id, schedule)).expect("fired")
}

fn entry_of(id: &str, schedule: &str) -> JobEntry {
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "id": id, "schedule": schedule, "executor": {"type": "noop"}
    }))
    .expect("spec");
    JobEntry::new(spec, utc("2026-01-01T00:00:00Z")).expect("entry")
}

#[test]
fn expected_lists_each_occurrence_of_the_window_once() {
    let mut paused = entry_of("p", "* * * * * *");
    paused.paused = true;
    let paused = Fired::from_entry(&paused).expect("fired");
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

#[test]
fn only_occurrences_while_the_job_existed_unpaused_and_inside_its_window_are_due() {
    let created = utc("2026-03-01T10:00:05Z");
    let entry = |patch: serde_json::Value, paused_at: Option<&str>, paused: bool| {
        let mut v =
            serde_json::json!({"id": "j", "schedule": "* * * * * *", "executor": {"type": "noop"}});
        if let (Some(o), Some(p)) = (v.as_object_mut(), patch.as_object()) {
            o.extend(p.clone());
        }
        let spec: JobSpec = serde_json::from_value(v).expect("spec");
        let mut e = JobEntry::new(spec, created).expect("entry");
        e.paused = paused;
        if let Some(p) = paused_at {
            e.paused = true;
            e.set_pause(sundial_core::registry::PauseNote {
                at: Some(utc(p)),
                ..Default::default()
            });
        }
        Fired::from_entry(&e).expect("fired")
    };
    let plain = entry(serde_json::json!({}), None, false);
    let ended = entry(
        serde_json::json!({"end_at": "2026-03-01T10:00:08Z"}),
        None,
        false,
    );
    let started = entry(
        serde_json::json!({"start_at": "2026-03-01T10:00:07Z"}),
        None,
        false,
    );
    let paused = entry(serde_json::json!({}), Some("2026-03-01T10:00:07Z"), true);
    let paused_unknown = entry(serde_json::json!({}), None, true);
    // (job, occurrence, due?)
    let table = [
        (&plain, "2026-03-01T10:00:04Z", false), // before it existed
        (&plain, "2026-03-01T10:00:05Z", true),  // the instant it was created
        (&plain, "2026-03-01T10:00:06Z", true),
        (&ended, "2026-03-01T10:00:07Z", true),
        (&ended, "2026-03-01T10:00:08Z", false), // end_at is exclusive
        (&started, "2026-03-01T10:00:06Z", false),
        (&started, "2026-03-01T10:00:07Z", true),
        (&paused, "2026-03-01T10:00:06Z", true), // owed before the pause
        (&paused, "2026-03-01T10:00:07Z", false),
        (&paused, "2026-03-01T10:00:09Z", false),
        (&paused_unknown, "2026-03-01T10:00:06Z", false),
    ];
    for (job, at, want) in table {
        assert_eq!(due(job, utc(at)), want, "{at} of {:?}", job);
    }
    // The window starts before the job was created: 5 s later it was.
    let ids = expected(
        std::slice::from_ref(&plain),
        utc("2026-03-01T10:00:00Z"),
        utc("2026-03-01T10:00:10Z"),
    );
    assert_eq!(ids.len(), 6, "10:00:05 ..= 10:00:10: {ids:?}");
    let ids = expected(
        std::slice::from_ref(&paused),
        utc("2026-03-01T10:00:00Z"),
        utc("2026-03-01T10:00:10Z"),
    );
    assert_eq!(ids.len(), 2, "10:00:05 and :06, then paused: {ids:?}");
}
