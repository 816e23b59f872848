//! An independent model of the DST rule, checked against `Schedule`.
//!
//! The model walks time minute by minute in UTC (as cron does), with its own
//! tiny cron matcher (numbers, lists, ranges, steps, `*`; Vixie's day rule),
//! and applies the rule as written in docs/semantics.md:
//! - wildcard job (minute or hour starts with `*`): fires at instant `u` when
//!   the wall clock at `u` matches;
//! - fixed-time job: fires at `u` when the wall clock matches and `u` is the
//!   first pass of that local time; and at the first instant after a
//!   spring-forward gap when any skipped local minute matches.
//!
//! The implementation walks constant-offset segments and asks croner for the
//! next naive match; agreement of the two on random expressions around real
//! transitions is the test.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use proptest::prelude::*;
use sundial_core::Schedule;

struct Field {
    allowed: Vec<bool>,
    star: bool,
}

fn parse_field(s: &str, min: u32, max: u32) -> Field {
    let mut allowed = vec![false; (max + 1) as usize];
    for item in s.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => (r, st.parse::<u32>().expect("step")),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().expect("lo"), b.parse().expect("hi"))
        } else {
            let v: u32 = range.parse().expect("value");
            (v, v)
        };
        let mut v = lo;
        while v <= hi {
            allowed[v as usize] = true;
            v += step;
        }
    }
    Field {
        allowed,
        star: s.starts_with('*'),
    }
}

struct Model {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
    wildcard: bool,
}

impl Model {
    fn new(expr: &str) -> Self {
        let f: Vec<&str> = expr.split_whitespace().collect();
        let mut dow = parse_field(f[4], 0, 7);
        if dow.allowed[7] {
            dow.allowed[0] = true;
        }
        Model {
            minute: parse_field(f[0], 0, 59),
            hour: parse_field(f[1], 0, 23),
            dom: parse_field(f[2], 1, 31),
            month: parse_field(f[3], 1, 12),
            dow,
            wildcard: f[0].starts_with('*') || f[1].starts_with('*'),
        }
    }

    fn matches(&self, l: NaiveDateTime) -> bool {
        let dom = self.dom.allowed[l.day() as usize];
        let dow = self.dow.allowed[l.weekday().num_days_from_sunday() as usize];
        let day = if self.dom.star || self.dow.star {
            dom && dow
        } else {
            dom || dow
        };
        self.minute.allowed[l.minute() as usize]
            && self.hour.allowed[l.hour() as usize]
            && self.month.allowed[l.month() as usize]
            && day
    }

    /// Fires in `(from, to]`, walking UTC minutes.
    fn fires(&self, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let off = |u: DateTime<Utc>| {
            i64::from(
                tz.offset_from_utc_datetime(&u.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        };
        let mut out = Vec::new();
        let mut u = from + Duration::minutes(1);
        while u <= to {
            let l = u.naive_utc() + Duration::seconds(off(u));
            let prev_off = off(u - Duration::minutes(1));
            let fires = if self.wildcard {
                self.matches(l)
            } else {
                let first_pass = match tz.from_local_datetime(&l) {
                    LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc) == u,
                    _ => true,
                };
                let gap = off(u) > prev_off && {
                    // Local minutes [A, B) were skipped on the way to u.
                    let a = u.naive_utc() + Duration::seconds(prev_off);
                    let mut m = a;
                    let mut any = false;
                    while m < l {
                        any |= self.matches(m);
                        m += Duration::minutes(1);
                    }
                    any
                };
                (self.matches(l) && first_pass) || gap
            };
            if fires {
                out.push(u);
            }
            u += Duration::minutes(1);
        }
        out
    }
}

/// Instants of real transitions (UTC), each checked from a few hours before.
const TRANSITIONS: &[(&str, &str)] = &[
    ("America/New_York", "2026-03-08T07:00:00Z"),
    ("America/New_York", "2026-11-01T06:00:00Z"),
    ("Europe/Berlin", "2026-03-29T01:00:00Z"),
    ("Europe/Berlin", "2026-10-25T01:00:00Z"),
    ("Australia/Lord_Howe", "2026-04-04T15:00:00Z"),
    ("Australia/Lord_Howe", "2026-10-03T15:30:00Z"),
    ("America/Santiago", "2026-04-05T03:00:00Z"),
    ("America/Santiago", "2026-09-06T04:00:00Z"),
    ("Pacific/Chatham", "2026-04-04T14:00:00Z"),
    ("America/Havana", "2026-03-08T05:00:00Z"),
    ("America/Havana", "2026-11-01T05:00:00Z"),
];

fn field(max: u32, min: u32) -> impl Strategy<Value = String> {
    super::util::cron_field(min, max, 12)
}

/// Expressions dense enough to fire around 01:00–04:00 local often.
fn expr() -> impl Strategy<Value = String> {
    (
        field(59, 0),
        prop_oneof![
            field(23, 0),
            (0u32..4).prop_map(|h| h.to_string()),
            Just("0-3".to_string()),
            Just("1,2".to_string())
        ],
        prop_oneof![Just("*".to_string()), field(31, 1)],
        prop_oneof![Just("*".to_string()), field(7, 0)],
    )
        .prop_map(|(m, h, dom, dow)| format!("{m} {h} {dom} * {dow}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn schedule_agrees_with_minute_walk_model(
        e in expr(),
        which in 0..TRANSITIONS.len(),
        hours_before in 0i64..6,
    ) {
        let (zone, at) = TRANSITIONS[which];
        let tz: Tz = zone.parse().expect("zone");
        let transition = DateTime::parse_from_rfc3339(at).expect("instant").with_timezone(&Utc);
        let from = transition - Duration::hours(hours_before) - Duration::minutes(7);
        let to = from + Duration::hours(30);
        let model = Model::new(&e).fires(tz, from, to);
        let s = Schedule::parse(&e, tz, from).expect("valid");
        let ours: Vec<_> = s.iter_after(from).map(|o| o.at).take_while(|t| *t <= to).collect();
        prop_assert_eq!(ours, model, "{} in {} from {}", e, zone, from);
    }
}
