//! Restart intensity and backoff of the supervision loops.

use std::time::{Duration, Instant};

use sundial_core::restart::{Intensity, BACKOFF_MAX, BACKOFF_MIN};

#[test]
fn more_than_max_restarts_within_the_window_escalates() {
    let t0 = Instant::now();
    let mut i = Intensity::new(3, Duration::from_secs(10));
    assert!(i.restart(t0));
    assert!(i.restart(t0 + Duration::from_secs(1)));
    assert!(i.restart(t0 + Duration::from_secs(2)));
    assert!(!i.restart(t0 + Duration::from_secs(3)), "4th within 10 s");
    // Old restarts leave the window.
    let mut i = Intensity::new(3, Duration::from_secs(10));
    for k in 0..10 {
        assert!(
            i.restart(t0 + Duration::from_secs(5 * k)),
            "one every 5 s is fine"
        );
    }
}

#[test]
fn backoff_grows_to_a_cap_with_bounded_jitter() {
    let mut last = Duration::ZERO;
    for n in 1..=12 {
        let d = Intensity::backoff(n, 42);
        let base = BACKOFF_MIN
            .saturating_mul(1 << (n - 1).min(16))
            .min(BACKOFF_MAX);
        assert!(d <= base && d >= base * 3 / 4, "n={n}: {d:?} vs {base:?}");
        assert!(d + base / 4 >= last, "roughly non-decreasing");
        last = d;
    }
    assert_ne!(
        Intensity::backoff(3, 1),
        Intensity::backoff(3, 2),
        "jitter spreads processes"
    );
}
