//! Alerts on occurrences (issue 25), by table: what the history says of
//! each occurrence, the alerts raised before and the time give the alerts
//! to raise now; the same inputs on another node give the same ids.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::util::utc;
use sundial_core::{
    alert::{AlertKind, Seen, Watch},
    registry::{Fired, JobEntry},
    JobSpec,
};

/// Every 10 s, misfire grace 30 s, created at 00:00:00 (with `sla = 5s`).
fn job() -> JobEntry {
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "id": "pay", "schedule": "*/10 * * * * *", "executor": {"type": "noop"},
        "misfire": {"grace": "30s"}
    }))
    .expect("spec");
    spec.validate(utc("2026-12-05T00:00:00Z"), utc("2026-12-05T00:00:00Z"))
        .expect("valid");
    JobEntry::new(spec, utc("2026-12-05T00:00:00Z")).expect("entry")
}

/// `second` past 00:00 (an occurrence every 10 s).
fn at(second: u32) -> DateTime<Utc> {
    utc("2026-12-05T00:00:00Z") + chrono::Duration::seconds(i64::from(second))
}

fn ok(second: u32, took: u32) -> Seen {
    Seen {
        fired: true,
        succeeded: Some(at(second + took)),
        ..Seen::default()
    }
}

fn running() -> Seen {
    Seen {
        fired: true,
        ..Seen::default()
    }
}

fn dead(why: &str) -> Seen {
    Seen {
        fired: true,
        dead: Some(why.into()),
        ..Seen::default()
    }
}

fn skipped(why: &str, missed: bool) -> Seen {
    Seen {
        skipped: Some((why.into(), missed)),
        ..Seen::default()
    }
}

const SLA: Option<chrono::Duration> = Some(chrono::Duration::seconds(5));

/// The alerts `job` raises at `now` over `(from, now]`.
fn check(
    job: &JobEntry,
    seen: &BTreeMap<DateTime<Utc>, Seen>,
    raised: &BTreeSet<String>,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<sundial_core::alert::Alert> {
    Watch {
        job: &Fired::from_entry(job).expect("fired"),
        sla: SLA,
        seen,
        raised,
    }
    .check(from, now)
}

fn id(kind: &str, second: u32) -> String {
    format!(
        "{kind}:pay@{}",
        sundial_core::protocol::timestamp(at(second))
    )
}

#[test]
fn alerts_by_table() {
    let j = job();
    // (what, records by occurrence second, raised before, now (seconds),
    // the alert ids to raise)
    type Row = (
        &'static str,
        Vec<(u32, Seen)>,
        Vec<String>,
        u32,
        Vec<String>,
    );
    let rows: Vec<Row> = vec![
        (
            "all well",
            vec![(10, ok(10, 1)), (20, ok(20, 2))],
            vec![],
            25,
            vec![],
        ),
        (
            "running, within its sla",
            vec![(10, ok(10, 1)), (20, running())],
            vec![],
            24,
            vec![],
        ),
        (
            "running past its sla: late",
            vec![(10, ok(10, 1)), (20, running())],
            vec![],
            25,
            vec![id("late", 20)],
        ),
        (
            "succeeded after its sla: late all the same",
            vec![(10, ok(10, 7))],
            vec![],
            19,
            vec![id("late", 10)],
        ),
        (
            "dead: failed (not late as well)",
            vec![(10, dead("exit 3"))],
            vec![],
            19,
            vec![id("failed", 10)],
        ),
        (
            "raised before: nothing again",
            vec![(10, dead("exit 3"))],
            vec![id("failed", 10)],
            19,
            vec![],
        ),
        (
            "no record within grace: not yet missed, but late",
            vec![],
            vec![],
            39,
            vec![id("late", 10), id("late", 20), id("late", 30)],
        ),
        (
            "no record past grace: missed",
            vec![],
            vec![id("late", 10), id("late", 20), id("late", 30)],
            40,
            vec![id("missed", 10)],
        ),
        (
            "collapsed by the misfire policy: missed at once",
            vec![
                (10, skipped("misfire fire-once", true)),
                (20, skipped("misfire fire-once", true)),
                (30, ok(30, 1)),
            ],
            vec![],
            31,
            vec![id("missed", 10), id("missed", 20), id("resolved", 30)],
        ),
        (
            "skipped by overlap forbid: the user's choice, no alert",
            vec![(10, skipped("overlap-forbid", false))],
            vec![],
            19,
            vec![],
        ),
        (
            "a later success resolves the open alerts",
            vec![(10, dead("exit 3")), (20, dead("exit 3")), (30, ok(30, 1))],
            vec![id("failed", 10), id("failed", 20)],
            31,
            vec![id("resolved", 30)],
        ),
        (
            "resolved once",
            vec![(10, dead("exit 3")), (20, ok(20, 1)), (30, ok(30, 1))],
            vec![id("failed", 10), id("resolved", 20)],
            31,
            vec![],
        ),
        (
            "a new failure after a resolution opens again",
            vec![
                (10, dead("x")),
                (20, ok(20, 1)),
                (30, dead("y")),
                (40, ok(40, 1)),
            ],
            vec![id("failed", 10), id("resolved", 20)],
            41,
            vec![id("failed", 30), id("resolved", 40)],
        ),
    ];
    for (what, seen, raised, now, want) in rows {
        let seen: BTreeMap<_, _> = seen.into_iter().map(|(s, v)| (at(s), v)).collect();
        let raised: BTreeSet<String> = raised.into_iter().collect();
        let got: Vec<String> = check(&j, &seen, &raised, at(0), at(now))
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn nothing_is_expected_before_creation_while_paused_or_after_the_end() {
    let mut j = job();
    let nothing = BTreeMap::new();
    let none = BTreeSet::new();
    // Created at 00:00:00: the window before it raises nothing.
    let early = check(
        &j,
        &nothing,
        &none,
        at(0) - chrono::Duration::hours(1),
        at(0),
    );
    assert!(early.is_empty(), "{early:?}");
    // Paused at 00:00:15: what came before is owed, what came after not.
    j.paused = true;
    j.set_pause(sundial_core::registry::PauseNote {
        at: Some(at(15)),
        ..Default::default()
    });
    let got: Vec<String> = check(&j, &nothing, &none, at(0), at(300))
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(got, [id("missed", 10)]);
    // Paused from 00:00:15 to 00:00:45 and running again: 20, 30 and 40
    // were not expected; 10 and 50 were.
    let mut running = job();
    running.set_pause(sundial_core::registry::PauseNote {
        last: Some((at(15), at(45))),
        ..Default::default()
    });
    let got: Vec<String> = check(&running, &nothing, &none, at(0), at(89))
        .into_iter()
        .filter(|a| a.id.starts_with("missed:"))
        .map(|a| a.id)
        .collect();
    assert_eq!(got, [id("missed", 10), id("missed", 50)]);
    // After end_at: nothing.
    let mut ended = job();
    ended.spec.end_at = Some(at(15));
    let got: Vec<String> = check(&ended, &nothing, &none, at(0), at(300))
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(got, [id("missed", 10)]);
}

#[test]
fn an_alert_says_what_and_why_and_resolutions_name_what_they_resolve() {
    let j = job();
    let seen: BTreeMap<_, _> = [(at(10), dead("/bin/sh exited with 3")), (at(20), ok(20, 1))]
        .into_iter()
        .collect();
    let alerts = check(&j, &seen, &BTreeSet::new(), at(0), at(21));
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let failed = &alerts[0];
    assert_eq!(failed.kind, AlertKind::Failed);
    assert_eq!(failed.job_id, "pay");
    assert_eq!(failed.fire_id, "pay@2026-12-05T00:00:10.000Z");
    assert_eq!(failed.reason, "dead: /bin/sh exited with 3");
    let resolved = &alerts[1];
    assert_eq!(resolved.kind, AlertKind::Resolved);
    assert_eq!(resolved.resolves, std::slice::from_ref(&failed.id));
    assert_eq!(
        AlertKind::of_id(&resolved.id),
        Some((AlertKind::Resolved, "pay@2026-12-05T00:00:20.000Z"))
    );
    // Without an sla, nothing is late.
    let slow: BTreeMap<_, _> = [(at(10), ok(10, 9))].into_iter().collect();
    let none = BTreeSet::new();
    let j = Fired::from_entry(&j).expect("fired");
    let w = Watch {
        job: &j,
        sla: None,
        seen: &slow,
        raised: &none,
    };
    assert!(w.check(at(0), at(19)).is_empty());
}

#[test]
fn an_sla_is_bounded_and_refusals_name_it() {
    for (sla, ok) in [
        ("0s", false),
        ("1s", true),
        ("20m", true),
        ("6h", true),
        ("7h", false),
    ] {
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "id": "x", "schedule": "@daily", "executor": {"type": "noop"}, "sla": sla
        }))
        .expect("parses");
        match spec.validate(chrono::Utc::now(), chrono::Utc::now()) {
            Ok(_) => assert!(ok, "{sla} accepted"),
            Err(e) => {
                assert!(!ok, "{sla}: {e}");
                assert_eq!(e.field, "sla", "{e}");
            }
        }
    }
}
