//! After an attempt: retry tier or dead letter, the duplicate window, the
//! output tail.

use std::time::{Duration, Instant};

use chrono::Utc;
use sundial_core::{
    attempt::{after_failure, tier_for, AfterFailure, Failure, OutputTail, RecentFires},
    job::{Executor, Overlap, RetryPolicy},
    protocol::fire::FireEvent,
    HumanDuration,
};

fn secs(s: u64) -> HumanDuration {
    HumanDuration::from_secs(s)
}

fn fire(attempt: u32, max_attempts: u32, backoff: &[u64]) -> FireEvent {
    FireEvent {
        fire_id: "j@2026-01-01T00:00:00Z".into(),
        job_id: "j".into(),
        pool: "default".into(),
        shard: 0,
        epoch: 1,
        scheduled_at: Utc::now(),
        fired_at: Utc::now(),
        attempt,
        manual: false,
        executor: Executor::Noop,
        payload: serde_json::Value::Null,
        timeout: secs(30),
        retry: RetryPolicy {
            max_attempts,
            backoff: backoff.iter().copied().map(secs).collect(),
        },
        overlap: Overlap::Allow,
        first_failure: None,
        signature: None,
    }
}

const TIERS: [HumanDuration; 3] = [
    HumanDuration::from_secs(10),
    HumanDuration::from_secs(60),
    HumanDuration::from_secs(600),
];

#[test]
fn failed_attempts_walk_the_backoff_then_die() {
    let f = Failure::retry("boom");
    assert_eq!(
        after_failure(&fire(1, 3, &[10, 60]), &f, &TIERS),
        AfterFailure::Retry {
            tier: secs(10),
            attempt: 2
        }
    );
    assert_eq!(
        after_failure(&fire(2, 3, &[10, 60]), &f, &TIERS),
        AfterFailure::Retry {
            tier: secs(60),
            attempt: 3
        }
    );
    assert_eq!(
        after_failure(&fire(3, 3, &[10, 60]), &f, &TIERS),
        AfterFailure::Dead
    );
    // Past the end of the backoff list, the last delay repeats.
    assert_eq!(
        after_failure(&fire(4, 9, &[10, 60]), &f, &TIERS),
        AfterFailure::Retry {
            tier: secs(60),
            attempt: 5
        }
    );
}

#[test]
fn abort_and_single_attempt_jobs_die_at_once() {
    assert_eq!(
        after_failure(&fire(1, 5, &[10]), &Failure::abort("no"), &TIERS),
        AfterFailure::Dead
    );
    assert_eq!(
        after_failure(&fire(1, 1, &[]), &Failure::retry("no"), &TIERS),
        AfterFailure::Dead
    );
    assert_eq!(
        after_failure(&fire(1, 3, &[10]), &Failure::retry("no"), &[]),
        AfterFailure::Dead,
        "no tier declared: nowhere to wait"
    );
}

#[test]
fn handler_delay_overrides_backoff_and_rounds_up_to_a_tier() {
    let f = Failure::Retry {
        reason: "busy".into(),
        after: Some(Duration::from_secs(30)),
    };
    assert_eq!(
        after_failure(&fire(1, 3, &[10]), &f, &TIERS),
        AfterFailure::Retry {
            tier: secs(60),
            attempt: 2
        }
    );
}

#[test]
fn tiers_never_retry_early_unless_none_is_long_enough() {
    assert_eq!(tier_for(Duration::from_secs(10), &TIERS), Some(secs(10)));
    assert_eq!(tier_for(Duration::from_secs(11), &TIERS), Some(secs(60)));
    assert_eq!(tier_for(Duration::from_secs(1), &TIERS), Some(secs(10)));
    assert_eq!(tier_for(Duration::from_secs(7200), &TIERS), Some(secs(600)));
    assert_eq!(tier_for(Duration::from_secs(1), &[]), None);
}

#[test]
fn recent_fires_drop_repeats_within_the_window_only() {
    let t0 = Instant::now();
    let mut r = RecentFires::new(Duration::from_secs(60), 100);
    let k = RecentFires::key("j@t", 1, None);
    assert!(r.insert(&k, t0));
    assert!(!r.insert(&k, t0 + Duration::from_secs(59)), "duplicate");
    assert!(
        r.insert(&RecentFires::key("j@t", 2, None), t0),
        "a retry is not a duplicate"
    );
    assert!(
        r.insert(&RecentFires::key("j@t", 1, Some("replay-1")), t0),
        "a replay is not a duplicate"
    );
    assert!(r.insert(&k, t0 + Duration::from_secs(61)), "window passed");
    r.forget(&k);
    assert!(
        r.insert(&k, t0 + Duration::from_secs(62)),
        "forgotten: abandoned attempt"
    );
}

#[test]
fn recent_fires_are_bounded() {
    let t0 = Instant::now();
    let mut r = RecentFires::new(Duration::from_secs(600), 3);
    for i in 0..10 {
        assert!(r.insert(&format!("k{i}"), t0));
    }
    assert_eq!(r.len(), 3);
    assert!(r.insert("k0", t0), "oldest forgotten first");
}

#[test]
fn output_tail_keeps_the_last_bytes_on_a_char_boundary() {
    let mut t = OutputTail::new(8);
    t.push(b"hello ");
    t.push("wörld!".as_bytes());
    let text = t.text();
    assert!(text.ends_with("rld!"), "{text}");
    assert!(text.len() <= 8);
    let mut t = OutputTail::new(4);
    t.push("ééé".as_bytes());
    assert_eq!(t.text(), "éé", "a cut character is skipped, not mangled");
}
