use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use sundial_core::Schedule;

pub(crate) fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test instant {s}: {e}"))
        .with_timezone(&Utc)
}

pub(crate) fn sched(expr: &str, zone: &str) -> Schedule {
    let tz: Tz = zone
        .parse()
        .unwrap_or_else(|e| panic!("bad zone {zone}: {e}"));
    Schedule::parse(expr, tz, utc("2026-01-01T00:00:00Z"))
        .unwrap_or_else(|e| panic!("{expr} should parse: {e}"))
}

/// The next `n` occurrences after `after`, each as local RFC 3339 with offset.
pub(crate) fn next_local(expr: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
    let s = sched(expr, zone);
    let tz = s.timezone();
    s.iter_after(utc(after))
        .take(n)
        .map(|o| {
            o.at.with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        })
        .collect()
}

/// Occurrences in `[from, to)` as local RFC 3339.
pub(crate) fn between(expr: &str, zone: &str, from: &str, to: &str) -> Vec<String> {
    let s = sched(expr, zone);
    let tz = s.timezone();
    let to = utc(to);
    s.iter_after(utc(from) - chrono::Duration::seconds(1))
        .take_while(|o| o.at < to)
        .map(|o| {
            o.at.with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        })
        .collect()
}

/// A random cron field over `min..=max`: `*`, `*/s` (s ≤ `max_step`), a value,
/// a two-value list, or a range with a step.
pub(crate) fn cron_field(min: u32, max: u32, max_step: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (1..=max.min(max_step)).prop_map(|s| format!("*/{s}")),
        (min..=max).prop_map(|v| v.to_string()),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{},{}", a.min(b), a.max(b))),
        (min..=max, min..=max, 1u32..5).prop_map(|(a, b, s)| format!(
            "{}-{}/{s}",
            a.min(b),
            a.max(b)
        )),
    ]
}
