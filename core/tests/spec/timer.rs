//! The timer shard's logic without a broker or a clock: deadlines, the
//! watermark against in-flight fires, jitter, registry changes, flush and
//! the misfire plan on takeover. `cargo test -p sundial-core timer`.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sundial_core::{registry::Fired, timer::ShardTimer, JobSpec};

use crate::util::utc;

fn job_with(id: &str, schedule: &str, extra: serde_json::Value, created: &str) -> Arc<Fired> {
    let mut v = serde_json::json!({"id": id, "schedule": schedule, "executor": {"type": "noop"}});
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    let spec: JobSpec = serde_json::from_value(v).expect("job spec");
    Arc::new(Fired::new(spec, utc(created)).expect("entry"))
}

fn job(id: &str, schedule: &str) -> Arc<Fired> {
    job_with(id, schedule, serde_json::json!({}), "2026-01-01T00:00:00Z")
}

fn ms(n: i64) -> Duration {
    Duration::milliseconds(n)
}

/// A loaded shard whose floor and start are `at`, holding `jobs`.
fn loaded(at: &str, jobs: Vec<Arc<Fired>>) -> (ShardTimer, DateTime<Utc>) {
    let t0 = utc(at);
    let mut t = ShardTimer::new(t0);
    let actions = t.load(jobs, t0, t0);
    assert!(actions.fire.is_empty(), "nothing missed at {at}");
    (t, t0)
}

#[test]
fn timer_watermark_never_passes_an_unconfirmed_fire_and_advances_out_of_order() {
    let (mut t, t0) = loaded(
        "2026-03-01T12:00:00Z",
        vec![job("a", "* * * * * *"), job("b", "* * * * * *")],
    );
    let s1 = t0 + Duration::seconds(1);
    let s2 = t0 + Duration::seconds(2);
    let first = t.due(s1);
    assert_eq!(first.len(), 2, "both jobs at +1s");
    for f in &first {
        assert_eq!(f.scheduled, s1);
        t.sent(f.scheduled);
    }
    let second = t.due(s2);
    for f in &second {
        t.sent(f.scheduled);
    }
    // Nothing confirmed: held below the oldest.
    assert_eq!(t.tick(s2 + ms(100)), Some(s1 - ms(1)));
    t.written(s1 - ms(1));
    // The +2s fires confirmed first: still held by the +1s ones.
    t.settled(s2);
    t.settled(s2);
    assert_eq!(t.watermark(), s1 - ms(1));
    assert_eq!(t.tick(s2 + ms(200)), None, "nothing new to write");
    t.settled(s1);
    assert_eq!(t.watermark(), s1 - ms(1), "one +1s fire still out");
    t.settled(s1);
    // All confirmed: up to now (the next deadline, +3s, is not due yet).
    assert_eq!(t.tick(s2 + ms(300)), Some(s2 + ms(300)));
    assert!(t.drained());
}

#[test]
fn timer_jitter_holds_the_watermark_back_until_the_fire_is_sent() {
    let (mut t, t0) = loaded(
        "2026-03-01T12:00:00Z",
        vec![job_with(
            "j",
            "*/10 * * * * *",
            serde_json::json!({"jitter": "5s"}),
            "2026-01-01T00:00:00Z",
        )],
    );
    let occurrence = t0 + Duration::seconds(10);
    let send_at = t.next_wake().expect("armed");
    assert!(send_at >= occurrence && send_at < occurrence + Duration::seconds(5));
    assert!(send_at > occurrence, "this fire id has a non-zero jitter");
    // Time passes beyond the occurrence, before its jittered send time: the
    // watermark stays below the occurrence.
    assert!(t.due(occurrence).is_empty(), "not sent before its jitter");
    assert_eq!(t.tick(occurrence + ms(1)), Some(occurrence - ms(1)));
    let fired = t.due(send_at);
    assert_eq!(fired.len(), 1);
    assert_eq!(
        fired[0].scheduled, occurrence,
        "the fire keeps its occurrence"
    );
    assert_eq!(fired[0].due, Some(send_at));
    t.sent(occurrence);
    t.settled(occurrence);
    assert!(t.watermark() >= send_at);
}

#[test]
fn timer_an_upsert_keeps_an_occurrence_that_is_due_but_not_fired() {
    let (mut t, t0) = loaded("2026-03-01T12:00:00Z", vec![job("u", "* * * * * *")]);
    let s1 = t0 + Duration::seconds(1);
    // The change arrives 5 ms after the instant, before the wake-up ran.
    let late = s1 + ms(5);
    let changed = job_with(
        "u",
        "* * * * * *",
        serde_json::json!({"payload": {"v": 2}}),
        "2026-01-01T00:00:00Z",
    );
    t.upsert(changed, late);
    let fired = t.due(late);
    assert_eq!(fired.len(), 1, "the due occurrence is not lost");
    assert_eq!(fired[0].scheduled, s1);
    assert_eq!(
        fired[0].job.spec().expect("decodes").payload,
        serde_json::json!({"v": 2}),
        "with the new definition"
    );

    // A job created after an instant never fires that instant.
    let created = s1 + ms(500);
    let fresh = job_with(
        "n",
        "* * * * * *",
        serde_json::json!({}),
        &created.to_rfc3339(),
    );
    t.upsert(fresh, created);
    let next: Vec<_> = t
        .due(created)
        .into_iter()
        .filter(|f| f.job.id() == "n")
        .collect();
    assert!(next.is_empty(), "{next:?}");
    assert_eq!(
        t.due(t0 + Duration::seconds(2))
            .iter()
            .find(|f| f.job.id() == "n")
            .map(|f| f.scheduled),
        Some(t0 + Duration::seconds(2))
    );
}

#[test]
fn timer_pause_resume_and_delete_with_fires_in_flight() {
    let (mut t, t0) = loaded(
        "2026-03-01T12:00:00Z",
        vec![job_with(
            "p",
            "* * * * * *",
            serde_json::json!({"misfire": {"policy": "skip"}}),
            "2026-01-01T00:00:00Z",
        )],
    );
    let s1 = t0 + Duration::seconds(1);
    for f in t.due(s1) {
        t.sent(f.scheduled);
    }
    t.pause("p", s1 + ms(10));
    assert_eq!(t.next_wake(), None, "paused: nothing armed");
    assert!(t.due(t0 + Duration::seconds(5)).is_empty());
    // The in-flight fire still holds the watermark while paused.
    assert_eq!(t.watermark(), s1 - ms(1));
    t.settled(s1);
    // Resumed at +5s with policy skip: the paused interval is not fired.
    let actions = t.resume(
        job_with(
            "p",
            "* * * * * *",
            serde_json::json!({"misfire": {"policy": "skip"}}),
            "2026-01-01T00:00:00Z",
        ),
        t0 + Duration::seconds(5),
    );
    assert!(actions.fire.is_empty());
    assert_eq!(actions.skipped.len(), 1);
    assert_eq!(
        actions.skipped[0].at.len(),
        4,
        "+2s..+5s skipped: {:?}",
        actions.skipped
    );
    assert_eq!(t.next_wake(), Some(t0 + Duration::seconds(6)));
    // Deleted with a fire in flight: nothing more armed, the fire still
    // counts until confirmed.
    for f in t.due(t0 + Duration::seconds(6)) {
        t.sent(f.scheduled);
    }
    t.delete("p");
    assert_eq!(t.next_wake(), None);
    assert!(!t.drained());
    t.settled(t0 + Duration::seconds(6));
    assert!(t.drained());
}

#[test]
fn timer_flush_stops_firing_and_holds_the_final_watermark_below_unconfirmed_fires() {
    let (mut t, t0) = loaded("2026-03-01T12:00:00Z", vec![job("f", "* * * * * *")]);
    let s1 = t0 + Duration::seconds(1);
    for f in t.due(s1) {
        t.sent(f.scheduled);
    }
    t.flush();
    assert!(t.flushing());
    assert_eq!(t.next_wake(), None);
    assert!(
        t.due(t0 + Duration::seconds(3)).is_empty(),
        "no fire after flush"
    );
    // The final watermark stays below the unconfirmed fire; time does not
    // move it while flushing.
    assert_eq!(t.tick(t0 + Duration::seconds(3)), Some(s1 - ms(1)));
    assert_eq!(t.unconfirmed(), 1);
    t.settled(s1);
    assert!(t.drained());
    assert_eq!(t.watermark(), s1, "the next owner starts right after +1s");
}

#[test]
fn timer_load_applies_each_misfire_policy_on_takeover() {
    // The previous owner's watermark: 12:00:00; this node took over at
    // 12:00:30.5 after downtime from 12:00:00 (alive since then).
    let floor = utc("2026-03-01T12:00:00Z");
    let now = utc("2026-03-01T12:00:30.500Z");
    let every10 = |id: &str, policy: &str| {
        job_with(
            id,
            "*/10 * * * * *",
            serde_json::json!({"misfire": {"policy": policy}}),
            "2026-01-01T00:00:00Z",
        )
    };
    let mut t = ShardTimer::new(floor);
    let actions = t.load(
        vec![
            every10("once", "fire-once"),
            every10("skip", "skip"),
            every10("all", "catch-up"),
        ],
        now,
        now,
    );
    let fired = |id: &str| -> Vec<DateTime<Utc>> {
        actions
            .fire
            .iter()
            .filter(|f| f.job.id() == id)
            .map(|f| f.scheduled)
            .collect()
    };
    let at = |s: &str| utc(&format!("2026-03-01T12:00:{s}Z"));
    assert_eq!(fired("once"), vec![at("30")], "the latest only");
    assert_eq!(fired("skip"), Vec::<DateTime<Utc>>::new());
    assert_eq!(fired("all"), vec![at("10"), at("20"), at("30")]);
    assert!(
        actions.fire.iter().all(|f| f.due.is_none()),
        "late fires have no planned send time"
    );
    let skipped = |id: &str| {
        actions
            .skipped
            .iter()
            .find(|s| s.job_id == id)
            .map(|s| s.at.len())
    };
    assert_eq!(skipped("once"), Some(2));
    assert_eq!(skipped("skip"), Some(3));
    assert_eq!(skipped("all"), None);
    // Occurrences after the process started were only undelivered: all fire.
    let mut t = ShardTimer::new(floor);
    let alive_since = utc("2026-03-01T12:00:15Z");
    let actions = t.load(vec![every10("skip", "skip")], alive_since, now);
    let fired: Vec<_> = actions.fire.iter().map(|f| f.scheduled).collect();
    assert_eq!(
        fired,
        vec![at("20"), at("30")],
        "policy skip, but the outage is not downtime"
    );
    assert_eq!(t.next_wake(), Some(at("40")));
}
