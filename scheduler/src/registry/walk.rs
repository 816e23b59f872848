//! Who a conversion walk serves, and when (ADR 0024): the walk visits the
//! jobs in id order, in steps, putting each in the form its shard's mark
//! says *when it is visited*. A shard marked while the walk is at id `k`
//! has its jobs after `k` visited in this lap and the others in the next:
//! it is served once the walk, having passed the end, reaches `k` again.
//! So a shard marked mid-walk waits one whole lap from its mark, not the
//! rest of the walk under way and then a whole new one.

/// One shard waiting for a walk (`T`: what to do when served).
#[derive(Debug)]
pub(crate) struct Waiter<T> {
    pub(crate) what: T,
    /// Where the walk was when the shard was marked; `None`: before the
    /// first job of a lap.
    from: Option<Box<str>>,
    /// The walk passed the last job since the mark.
    wrapped: bool,
}

impl<T> Waiter<T> {
    /// Waits from `at` (the walk's cursor when marked).
    pub(crate) fn new(what: T, at: Option<&str>) -> Self {
        Self {
            what,
            from: at.map(Box::from),
            wrapped: false,
        }
    }
}

/// After a step that left the walk at `cursor` (`None`: it passed the last
/// job), takes the waiters it has served out of `waiting`.
pub(crate) fn served<T>(waiting: &mut Vec<Waiter<T>>, cursor: Option<&str>) -> Vec<T> {
    let mut out = Vec::new();
    let mut keep = Vec::with_capacity(waiting.len());
    for mut w in waiting.drain(..) {
        let done = match (cursor, w.from.as_deref()) {
            // The end of the lap serves who waited from its start, and who
            // wrapped already (its ids before the mark came in this lap).
            (None, None) => true,
            (None, Some(_)) if w.wrapped => true,
            (None, Some(_)) => {
                w.wrapped = true;
                false
            }
            (Some(_), None) => false,
            (Some(at), Some(from)) => w.wrapped && at >= from,
        };
        if done {
            out.push(w.what);
        } else {
            keep.push(w);
        }
    }
    *waiting = keep;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_marked_mid_walk_is_served_one_lap_after_its_mark() {
        // Marked at the start (1), and at "k" while walking (2).
        let mut w = vec![Waiter::new(1, None), Waiter::new(2, Some("k"))];
        assert!(served(&mut w, Some("d")).is_empty());
        assert!(served(&mut w, Some("m")).is_empty());
        // The end of the lap: 1 is served, 2 wraps.
        assert_eq!(served(&mut w, None), vec![1]);
        assert!(served(&mut w, Some("c")).is_empty());
        // The next lap reaches "k" or passes it: 2 is served.
        assert_eq!(served(&mut w, Some("p")), vec![2]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_waiter_that_wrapped_is_served_at_the_next_end_whatever_the_steps() {
        // A lap whose steps jump past "k" without stopping on it, and the
        // last step ends the lap.
        let mut w = vec![Waiter::new(7, Some("k"))];
        assert!(served(&mut w, None).is_empty());
        assert!(served(&mut w, Some("a")).is_empty());
        assert_eq!(served(&mut w, None), vec![7]);
    }

    #[test]
    fn a_mark_at_a_laps_start_is_not_served_before_its_end() {
        let mut w = vec![Waiter::new(3, None)];
        assert!(served(&mut w, Some("zzz")).is_empty());
        assert_eq!(served(&mut w, None), vec![3]);
    }
}
