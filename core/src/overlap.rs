//! What a job's `overlap` policy does with a fire while a previous run of
//! the job is still running, decided without I/O (the timer shard asks the
//! run tracker what runs, then does what this says).

use crate::job::Overlap;

/// The decision for one fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish it (nothing runs, or `allow`).
    Fire,
    /// `forbid`: not published; reported as `skipped` (`overlap-forbid`).
    Skip { running: String },
    /// `replace`: ask the worker running `running` to cancel it, then
    /// publish this fire.
    CancelThenFire { running: String },
}

/// `running`: the fire id of the job's run in progress, if any.
pub fn decide(overlap: Overlap, running: Option<&str>) -> Decision {
    match (overlap, running) {
        (Overlap::Allow, _) | (_, None) => Decision::Fire,
        (Overlap::Forbid, Some(r)) => Decision::Skip {
            running: r.to_string(),
        },
        (Overlap::Replace, Some(r)) => Decision::CancelThenFire {
            running: r.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlap_table() {
        const RUNNING: &str = "a@2026-01-01T00:00:00.000Z";
        let r = Some(RUNNING);
        let running = || RUNNING.to_string();
        for (overlap, running_now, want) in [
            (Overlap::Allow, None, Decision::Fire),
            (Overlap::Allow, r, Decision::Fire),
            (Overlap::Forbid, None, Decision::Fire),
            (Overlap::Forbid, r, Decision::Skip { running: running() }),
            (Overlap::Replace, None, Decision::Fire),
            (
                Overlap::Replace,
                r,
                Decision::CancelThenFire { running: running() },
            ),
        ] {
            assert_eq!(
                decide(overlap, running_now),
                want,
                "{overlap:?} {running_now:?}"
            );
        }
    }
}
