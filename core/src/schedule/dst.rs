//! Debian cron's DST rule on top of croner's wall-clock matching.
//!
//! croner matches a pattern against *naive* local times (no zone); this module
//! maps them to instants. Time is cut into segments of constant UTC offset. In
//! a segment, local time and instants move together, so the next naive match
//! `L` gives the instant `L - offset`. At a transition from offset `o1` to `o2`
//! at instant `T`, the local clock jumps from `A = T + o1` to `B = T + o2`:
//!
//! - gap (`B > A`, spring forward): wildcard jobs skip `[A, B)`; fixed-time
//!   jobs with any match in `[A, B)` fire once, at `T`;
//! - overlap (`B < A`, fall back): wildcard jobs run `[B, A)` again; fixed-time
//!   jobs resume at `A`, so the repeated local times do not fire twice.

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::{cron_expr::CronExpr, DstClass, Occurrence, OccurrenceNote};

/// Probe step when looking for the next offset change. Between 1970 and 2040
/// no zone in the tz database has two transitions closer than 167 hours
/// (measured over every chrono-tz zone at 15-minute resolution), so a probe
/// every 24 h cannot step over a pair of transitions that cancel out.
const PROBE_STEP: i64 = 24 * 3600;
/// Longest fall-back overlap to look back for (real ones are ≤ 2 h).
const MAX_OVERLAP: i64 = 3 * 3600;
/// Segments walked before giving up: far more than any schedule needs between
/// two occurrences (a yearly job crosses ~2 transitions).
const MAX_SEGMENTS: usize = 1_000;

fn offset_secs(tz: Tz, t: DateTime<Utc>) -> i64 {
    i64::from(
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

fn local(t: DateTime<Utc>, off: i64) -> NaiveDateTime {
    t.naive_utc() + Duration::seconds(off)
}

fn instant(l: NaiveDateTime, off: i64) -> DateTime<Utc> {
    (l - Duration::seconds(off)).and_utc()
}

/// First instant in `(from, to]` whose offset differs from `off`, if any.
fn next_transition(
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    off: i64,
) -> Option<DateTime<Utc>> {
    let mut lo = from;
    while lo < to {
        let hi = (lo + Duration::seconds(PROBE_STEP)).min(to);
        if offset_secs(tz, hi) != off {
            return Some(bisect(tz, lo, hi, off));
        }
        lo = hi;
    }
    None
}

/// Given `offset(lo) == off != offset(hi)`, the first second with the new offset.
/// Works in whole seconds: transitions fall on whole seconds.
fn bisect(tz: Tz, lo: DateTime<Utc>, hi: DateTime<Utc>, off: i64) -> DateTime<Utc> {
    let (mut lo, mut hi) = (lo.timestamp(), hi.timestamp());
    let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_secs(tz, at(mid)) == off {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    at(hi)
}

fn next_match(c: &CronExpr, from: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
    c.cron().find_next_occurrence(&from, inclusive).ok()
}

/// `t` is `original` truncated to whole seconds; the result is strictly after
/// `original`.
pub(super) fn next_after(
    c: &CronExpr,
    tz: Tz,
    t: DateTime<Utc>,
    original: DateTime<Utc>,
) -> Option<Occurrence> {
    let fixed = c.class() == DstClass::FixedTime;
    let mut off = offset_secs(tz, t);
    let mut cursor = t;
    let mut lower = local(t, off);
    let mut inclusive = false;

    // A fixed-time job asked from inside the second pass of an overlap must not
    // fire the local times it already fired in the first pass.
    if fixed {
        let back = t - Duration::seconds(MAX_OVERLAP);
        let off_back = offset_secs(tz, back);
        if off_back > off {
            let tr = bisect(tz, back, t, off_back);
            let first_pass_end = local(tr, off_back);
            if lower < first_pass_end {
                lower = first_pass_end;
                inclusive = true;
            }
        }
    }

    for _ in 0..MAX_SEGMENTS {
        let l = next_match(c, lower, inclusive)?;
        let candidate = instant(l, off);
        let Some(tr) = next_transition(tz, cursor, candidate, off) else {
            let note = match tz.from_local_datetime(&l) {
                chrono::LocalResult::Ambiguous(..) => Some(OccurrenceNote::DstOverlap),
                _ => None,
            };
            debug_assert!(candidate > original);
            return Some(Occurrence {
                at: candidate,
                note,
            });
        };
        let new_off = offset_secs(tz, tr);
        let (a, b) = (local(tr, off), local(tr, new_off));
        if b > a {
            if fixed && next_match(c, a, true).is_some_and(|m| m < b) && tr > original {
                return Some(Occurrence {
                    at: tr,
                    note: Some(OccurrenceNote::DstGapShifted),
                });
            }
            lower = b;
        } else {
            lower = if fixed { a } else { b };
        }
        inclusive = true;
        cursor = tr;
        off = new_off;
    }
    None
}
