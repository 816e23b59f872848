//! One log line per condition per interval: a repeated condition (a fire
//! that keeps coming back unroutable, a broker that stays away) must not
//! fill the disk. The lines that were held back are counted and reported
//! with the next one.

use std::time::{Duration, Instant};

/// A gate for one repeated condition.
#[derive(Debug)]
pub struct Every {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Every {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(n)` when a line may be written now (`n` lines were held back
    /// since the last one), `None` to stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut gate = Every::new(Duration::from_secs(10));
        assert_eq!(gate.allow(t0), Some(0));
        assert_eq!(gate.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(gate.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(gate.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(gate.allow(t0 + Duration::from_secs(11)), None);
    }
}
