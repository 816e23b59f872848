//! Waiting before trying again, in one place: the retry tier a failed
//! attempt goes to (the job's `retry` policy), and the exponential backoff
//! with jitter that supervision restarts and the timer's fire re-publishes
//! share.

use std::time::Duration;

use crate::duration::HumanDuration;

/// The declared tier for a wanted delay: the shortest tier at least as long
/// (a retry never comes early), else the longest tier. `None` when no tier
/// is declared.
pub fn tier_for(delay: Duration, tiers: &[HumanDuration]) -> Option<HumanDuration> {
    tiers
        .iter()
        .filter(|t| t.get() >= delay)
        .min()
        .or_else(|| tiers.iter().max())
        .copied()
}

/// `min · 2^n`, at most `max` (`n` counts from 0; past 16 it no longer
/// grows, so it never overflows).
pub fn exponential(min: Duration, max: Duration, n: u32) -> Duration {
    min.saturating_mul(2u32.saturating_pow(n.min(16))).min(max)
}

/// `d` less up to a quarter of it, chosen by `seed` (a process id, a
/// counter): processes that failed together do not retry together.
pub fn jittered(d: Duration, seed: u64) -> Duration {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let quarter = d.as_millis() as u64 / 4;
    d.saturating_sub(Duration::from_millis(x % (quarter + 1)))
}
