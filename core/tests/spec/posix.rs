//! POSIX / Vixie cron semantics that the `cron` crate gets wrong (see
//! docs/adr/0001-croner-for-schedules.md).

use chrono::{Datelike, Timelike, Weekday};

use super::util::{sched, utc};

fn weekdays(expr: &str, n: usize) -> Vec<Weekday> {
    sched(expr, "UTC")
        .iter_after(utc("2026-06-01T00:00:00Z")) // a Monday
        .take(n)
        .map(|o| o.at.weekday())
        .collect()
}

#[test]
fn one_to_five_is_monday_to_friday() {
    let days: Vec<_> = sched("0 12 * * 1-5", "UTC")
        .iter_after(utc("2026-05-31T00:00:00Z")) // a Sunday
        .take(10)
        .map(|o| o.at.weekday())
        .collect();
    use Weekday::*;
    assert_eq!(days, [Mon, Tue, Wed, Thu, Fri, Mon, Tue, Wed, Thu, Fri]);
}

#[test]
fn every_minute_on_weekdays_skips_the_weekend() {
    let s = sched("* * * * 1-5", "UTC");
    // Friday 23:59 → next is Monday 00:00.
    let o = s.next_after(utc("2026-06-05T23:59:00Z")).expect("fires");
    assert_eq!(o.at, utc("2026-06-08T00:00:00Z"));
}

#[test]
fn sunday_is_zero_and_seven() {
    assert_eq!(weekdays("0 0 * * 0", 3), [Weekday::Sun; 3]);
    assert_eq!(weekdays("0 0 * * 7", 3), [Weekday::Sun; 3]);
    assert_eq!(weekdays("0 0 * * SUN", 3), [Weekday::Sun; 3]);
}

#[test]
fn day_of_month_or_day_of_week() {
    // June 2026: Mondays 1, 8, 15, 22, 29; the 1st of July is a Wednesday.
    let days: Vec<_> = sched("0 0 1 * MON", "UTC")
        .iter_after(utc("2026-05-31T00:00:00Z"))
        .take(6)
        .map(|o| (o.at.month(), o.at.day()))
        .collect();
    assert_eq!(days, [(6, 1), (6, 8), (6, 15), (6, 22), (6, 29), (7, 1)]);
}

#[test]
fn star_step_day_of_month_ands_with_day_of_week() {
    // Vixie: a day field starting with `*` makes the two fields AND.
    // Odd days of June 2026 that are Mondays: 1, 15, 29.
    let days: Vec<_> = sched("0 0 */2 * 1", "UTC")
        .iter_after(utc("2026-05-31T00:00:00Z"))
        .take(3)
        .map(|o| o.at.day())
        .collect();
    assert_eq!(days, [1, 15, 29]);
}

#[test]
fn names_aliases_and_specials() {
    let next =
        |expr: &str, after: &str| sched(expr, "UTC").next_after(utc(after)).expect("fires").at;
    assert_eq!(
        next("0 9 * JAN-MAR mon-fri", "2026-03-31T10:00:00Z"),
        utc("2027-01-01T09:00:00Z")
    );
    assert_eq!(
        next("@yearly", "2026-06-01T00:00:00Z"),
        utc("2027-01-01T00:00:00Z")
    );
    assert_eq!(
        next("@annually", "2026-06-01T00:00:00Z"),
        utc("2027-01-01T00:00:00Z")
    );
    assert_eq!(
        next("@monthly", "2026-06-01T00:00:00Z"),
        utc("2026-07-01T00:00:00Z")
    );
    assert_eq!(
        next("@weekly", "2026-06-01T00:00:00Z"),
        utc("2026-06-07T00:00:00Z")
    );
    assert_eq!(
        next("@daily", "2026-06-01T00:00:00Z"),
        utc("2026-06-02T00:00:00Z")
    );
    assert_eq!(
        next("@midnight", "2026-06-01T00:00:00Z"),
        utc("2026-06-02T00:00:00Z")
    );
    assert_eq!(
        next("@hourly", "2026-06-01T00:00:00Z"),
        utc("2026-06-01T01:00:00Z")
    );
    // L: last day of month; W: nearest weekday; #: nth weekday.
    assert_eq!(
        next("0 0 L * *", "2026-02-01T00:00:00Z"),
        utc("2026-02-28T00:00:00Z")
    );
    // 2026-02-15 is a Sunday → nearest weekday is Monday the 16th.
    assert_eq!(
        next("0 0 15W * *", "2026-02-01T00:00:00Z"),
        utc("2026-02-16T00:00:00Z")
    );
    // Second Friday of March 2026: the 13th.
    assert_eq!(
        next("0 0 * * FRI#2", "2026-03-01T00:00:00Z"),
        utc("2026-03-13T00:00:00Z")
    );
    // Last Friday of March 2026: the 27th.
    assert_eq!(
        next("0 0 * * 5L", "2026-03-01T00:00:00Z"),
        utc("2026-03-27T00:00:00Z")
    );
}

#[test]
fn seconds_and_year_fields() {
    let s = sched("*/10 * * * * *", "UTC");
    let v: Vec<_> = s
        .iter_after(utc("2026-06-01T00:00:05Z"))
        .take(3)
        .map(|o| o.at.second())
        .collect();
    assert_eq!(v, [10, 20, 30]);
    let y = sched("0 0 0 1 1 * 2030", "UTC");
    assert_eq!(
        y.next_after(utc("2026-06-01T00:00:00Z")).map(|o| o.at),
        Some(utc("2030-01-01T00:00:00Z"))
    );
    assert_eq!(y.next_after(utc("2030-01-01T00:00:00Z")), None);
}
