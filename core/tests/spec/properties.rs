//! Property tests: for random valid expressions, zones and instants,
//! `next_after(t) > t` and the sequence strictly increases.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use sundial_core::Schedule;

const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Shanghai",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Tehran",
];

fn field(max: u32, min: u32) -> impl Strategy<Value = String> {
    super::util::cron_field(min, max, 30)
}

fn expr() -> impl Strategy<Value = String> {
    (
        prop::option::of(field(59, 0)),
        field(59, 0),
        field(23, 0),
        prop_oneof![Just("*".to_string()), field(28, 1)],
        prop_oneof![Just("*".to_string()), field(12, 1)],
        prop_oneof![Just("*".to_string()), field(7, 0)],
    )
        .prop_map(|(s, m, h, dom, mon, dow)| match s {
            Some(s) => format!("{s} {m} {h} {dom} {mon} {dow}"),
            None => format!("{m} {h} {dom} {mon} {dow}"),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn next_after_is_strictly_increasing(
        e in expr(),
        zone in prop::sample::select(ZONES),
        start in 1_700_000_000i64..1_900_000_000i64,
    ) {
        let tz: Tz = zone.parse().expect("zone");
        let t0: DateTime<Utc> = DateTime::from_timestamp(start, 0).expect("instant");
        let s = Schedule::parse(&e, tz, t0).expect("generated expressions are valid");
        let mut t = t0;
        for _ in 0..20 {
            let Some(o) = s.next_after(t) else { break };
            prop_assert!(o.at > t, "{e} in {zone}: {} is not after {t}", o.at);
            t = o.at;
        }
    }

    #[test]
    fn every_is_strictly_increasing(secs in 1u64..100_000, start in 1_700_000_000i64..1_900_000_000i64) {
        let t0: DateTime<Utc> = DateTime::from_timestamp(start, 0).expect("instant");
        let s = Schedule::parse(&format!("@every {secs}s"), Tz::UTC, t0).expect("valid");
        let mut t = t0;
        for _ in 0..5 {
            let o = s.next_after(t).expect("every never ends");
            prop_assert!(o.at > t);
            prop_assert_eq!((o.at - t0).num_seconds() % i64::try_from(secs).expect("small"), 0);
            t = o.at;
        }
    }
}

/// Tokens that are valid somewhere, combined anywhere.
const TOKENS: &[&str] = &[
    "*",
    "*/7",
    "L",
    "LW",
    "15W",
    "31W",
    "5L",
    "FRI#5",
    "MON#1",
    "0",
    "59",
    "1-5",
    "5-1",
    "1,2",
    "JAN",
    "dec",
    "?",
    "L-3",
    "0/5",
    "*/59",
    "31",
    "29",
    "2",
    "7",
    "1-31/40",
    "+MON",
    "SUN-SAT",
    "2030",
    "1970-2100",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever a user types, parsing and evaluating never panic: a control
    /// actor must answer with an error, not die.
    #[test]
    fn arbitrary_expressions_never_panic(
        fields in prop_oneof![
            prop::collection::vec("[0-9*/,LW#?A-Za-z+-]{1,6}", 1..9),
            prop::collection::vec(prop::sample::select(TOKENS).prop_map(str::to_string), 5..8),
        ],
        start in 0i64..4_000_000_000i64,
    ) {
        let e = fields.join(" ");
        let t0: DateTime<Utc> = DateTime::from_timestamp(start, 0).expect("instant");
        for zone in [Tz::UTC, Tz::America__New_York, Tz::Australia__Lord_Howe] {
            if let Ok(s) = Schedule::parse(&e, zone, t0) {
                let mut t = t0;
                for _ in 0..3 {
                    let Some(o) = s.next_after(t) else { break };
                    prop_assert!(o.at > t);
                    t = o.at;
                }
            }
        }
    }
}
