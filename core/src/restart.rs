//! Restart policy of the supervision loops: exponential backoff with jitter
//! between restarts, and restart intensity (at most `max` restarts within
//! `within`; one more means escalate: at the root, the process exits non-zero
//! so systemd or Kubernetes restarts it). Time is an argument.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// First and longest delay between restarts.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Intensity {
    max: u32,
    within: Duration,
    recent: VecDeque<Instant>,
}

impl Intensity {
    pub fn new(max: u32, within: Duration) -> Self {
        Self {
            max,
            within,
            recent: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; `false` when it exceeds the intensity
    /// (more than `max` restarts within `within`): time to escalate.
    pub fn restart(&mut self, now: Instant) -> bool {
        while let Some(t) = self.recent.front() {
            if now.saturating_duration_since(*t) >= self.within {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        self.recent.len() <= self.max as usize
    }

    /// Restarts within the window, this one included.
    pub fn count(&self) -> usize {
        self.recent.len()
    }

    /// The delay before restart number `n` (1-based) in the window:
    /// `BACKOFF_MIN · 2^(n-1)`, at most `BACKOFF_MAX`, minus up to a quarter
    /// of it as jitter (`seed` spreads processes that failed together).
    pub fn backoff(n: usize, seed: u64) -> Duration {
        let exp = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX);
        let base = crate::backoff::exponential(BACKOFF_MIN, BACKOFF_MAX, exp);
        crate::backoff::jittered(base, seed)
    }
}
