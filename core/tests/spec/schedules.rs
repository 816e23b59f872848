//! `@every`, `@at`, parse errors and "never fires" validation.

use chrono_tz::Tz;
use sundial_core::{Schedule, ScheduleError};

use super::util::{sched, utc};

#[test]
fn every_is_anchored_and_deterministic() {
    let anchor = utc("2026-06-01T00:00:00Z");
    let s = Schedule::parse("@every 90s", Tz::UTC, anchor).expect("parses");
    let v: Vec<_> = s
        .iter_after(utc("2026-06-01T00:02:00Z"))
        .take(3)
        .map(|o| o.at)
        .collect();
    assert_eq!(
        v,
        [
            utc("2026-06-01T00:03:00Z"),
            utc("2026-06-01T00:04:30Z"),
            utc("2026-06-01T00:06:00Z")
        ]
    );
    // Before the anchor: the first fire is one interval after it.
    assert_eq!(
        s.next_after(utc("2025-01-01T00:00:00Z")).map(|o| o.at),
        Some(utc("2026-06-01T00:01:30Z"))
    );
}

#[test]
fn every_follows_elapsed_time_across_dst() {
    let tz: Tz = "America/New_York".parse().expect("zone");
    let s = Schedule::parse("@every 1h", tz, utc("2026-11-01T04:00:00Z")).expect("parses");
    let v: Vec<_> = s
        .iter_after(utc("2026-11-01T04:00:00Z"))
        .take(3)
        .map(|o| o.at)
        .collect();
    assert_eq!(
        v,
        [
            utc("2026-11-01T05:00:00Z"),
            utc("2026-11-01T06:00:00Z"),
            utc("2026-11-01T07:00:00Z")
        ]
    );
}

#[test]
fn at_fires_once() {
    let s = sched("@at 2026-12-01T03:00:00+01:00", "UTC");
    assert_eq!(
        s.next_after(utc("2026-11-01T00:00:00Z")).map(|o| o.at),
        Some(utc("2026-12-01T02:00:00Z"))
    );
    assert_eq!(s.next_after(utc("2026-12-01T02:00:00Z")), None);
    assert!(s.is_one_shot());
}

fn reason(expr: &str) -> String {
    match Schedule::parse(expr, Tz::UTC, utc("2026-01-01T00:00:00Z")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{expr} should not parse"),
    }
}

#[test]
fn parse_errors_name_the_field_and_rule() {
    assert_eq!(
        reason("61 * * * *"),
        "invalid schedule \"61 * * * *\": minute must be 0-59"
    );
    assert_eq!(
        reason("0 24 * * *"),
        "invalid schedule \"0 24 * * *\": hour must be 0-23"
    );
    assert_eq!(
        reason("0 0 32 * *"),
        "invalid schedule \"0 0 32 * *\": day-of-month must be 1-31"
    );
    assert_eq!(
        reason("0 0 * 13 *"),
        "invalid schedule \"0 0 * 13 *\": month must be 1-12"
    );
    assert_eq!(
        reason("0 0 * * 8"),
        "invalid schedule \"0 0 * * 8\": day-of-week must be 0-7"
    );
    assert_eq!(
        reason("60 * * * * *"),
        "invalid schedule \"60 * * * * *\": second must be 0-59"
    );
    assert!(
        reason("* * *").contains("expected 5 fields"),
        "{}",
        reason("* * *")
    );
    assert!(reason("*/0 * * * *").contains("minute step"));
    assert!(reason("0 0 * * FOO").contains("day-of-week"));
    assert!(reason("@reboot").contains("not supported"));
    assert!(reason("@every 0s").contains("at least 1s"));
    assert!(reason("@every soon").contains("@every needs a duration"));
    assert!(reason("@at tomorrow").contains("RFC 3339"));
}

#[test]
fn never_firing_expressions_are_refused_at_submit() {
    let now = utc("2026-06-01T00:00:00Z");
    let err = Schedule::parse_for_submit("0 0 30 2 *", Tz::UTC, now, now)
        .expect_err("Feb 30 never comes");
    assert!(matches!(err, ScheduleError::NeverFires { .. }), "{err}");
    let err = Schedule::parse_for_submit("@at 2026-01-01T00:00:00Z", Tz::UTC, now, now)
        .expect_err("past");
    assert!(matches!(err, ScheduleError::NeverFires { .. }), "{err}");
    assert!(Schedule::parse_for_submit("0 0 29 2 *", Tz::UTC, now, now).is_ok());
}

#[test]
fn next_after_is_strictly_after_subsecond_instants() {
    let s = sched("* * * * * *", "UTC");
    let t = utc("2026-06-01T00:00:00.999Z");
    assert_eq!(
        s.next_after(t).map(|o| o.at),
        Some(utc("2026-06-01T00:00:01Z"))
    );
}
