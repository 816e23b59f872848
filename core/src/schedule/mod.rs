//! Schedules: what instants a job fires at.
//!
//! Three forms share one type:
//! - cron expressions (5-field POSIX, 6 with seconds, 7 with seconds and year,
//!   `@yearly @monthly @weekly @daily @hourly`, `L W #`, names), evaluated in an
//!   IANA time zone with Debian cron's DST rule (see [`dst`] and
//!   `docs/semantics.md`);
//! - `@every <duration>`: real elapsed time, `anchor + k·every` for `k ≥ 1`;
//! - `@at <RFC 3339>`: one instant.
//!
//! "Now" is always an argument: nothing here reads the clock.

mod cron_expr;
mod dst;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::error::ScheduleError;

pub use cron_expr::DstClass;

/// Shortest `@every` interval: one second, the timer's resolution.
const MIN_EVERY_MS: i64 = 1_000;

/// A parsed schedule in a time zone. Cheap to clone (the cron pattern is
/// reference counted so that jobs with the same expression can share it).
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: Tz,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(std::sync::Arc<cron_expr::CronExpr>),
    Every {
        every_ms: i64,
        anchor: DateTime<Utc>,
    },
    At(DateTime<Utc>),
}

/// One occurrence of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    /// The instant the job fires.
    pub at: DateTime<Utc>,
    /// Set when a DST transition shaped this occurrence.
    pub note: Option<OccurrenceNote>,
}

/// How a DST transition shaped an occurrence (`--json` output of
/// `sundial schedule next`, and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OccurrenceNote {
    /// A fixed-time job's local time fell in a spring-forward gap; it fires at
    /// the first instant after the gap.
    DstGapShifted,
    /// The local time is read twice because of a fall-back overlap.
    DstOverlap,
}

impl OccurrenceNote {
    pub fn as_str(self) -> &'static str {
        match self {
            OccurrenceNote::DstGapShifted => "dst-gap-shifted",
            OccurrenceNote::DstOverlap => "dst-overlap",
        }
    }
}

/// Parsed cron expressions, shared by every job with the same text (a
/// parsed pattern is ~5.7 KB; a million jobs use a few hundred distinct
/// expressions). Entries die with their last job.
static CRON_CACHE: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<cron_expr::CronExpr>>>,
> = std::sync::LazyLock::new(Default::default);

fn interned_cron(text: &str) -> Result<std::sync::Arc<cron_expr::CronExpr>, String> {
    let Ok(mut cache) = CRON_CACHE.lock() else {
        // A poisoned cache (a panic elsewhere while holding it): parse alone.
        return cron_expr::CronExpr::parse(text).map(std::sync::Arc::new);
    };
    if let Some(shared) = cache.get(text).and_then(std::sync::Weak::upgrade) {
        return Ok(shared);
    }
    let parsed = std::sync::Arc::new(cron_expr::CronExpr::parse(text)?);
    if cache.len() >= 1024 && cache.len().is_power_of_two() {
        cache.retain(|_, w| w.strong_count() > 0);
    }
    cache.insert(text.to_string(), std::sync::Arc::downgrade(&parsed));
    Ok(parsed)
}

impl Schedule {
    /// Parses `expr` for zone `tz`. `anchor` is where `@every` counts from (the
    /// job's `start_at`, else its creation instant); other forms ignore it.
    pub fn parse(expr: &str, tz: Tz, anchor: DateTime<Utc>) -> Result<Self, ScheduleError> {
        let trimmed = expr.trim();
        let invalid = |reason: String| ScheduleError::Invalid {
            expr: expr.to_string(),
            reason,
        };
        let kind = if let Some(rest) = strip_keyword(trimmed, "@every") {
            let d = humantime::parse_duration(rest.trim()).map_err(|e| {
                invalid(format!(
                    "@every needs a duration such as \"90s\" or \"1h\" ({e})"
                ))
            })?;
            let every_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            if every_ms < MIN_EVERY_MS {
                return Err(invalid("@every must be at least 1s".into()));
            }
            if every_ms % 1_000 != 0 {
                return Err(invalid("@every must be a whole number of seconds".into()));
            }
            Kind::Every { every_ms, anchor }
        } else if let Some(rest) = strip_keyword(trimmed, "@at") {
            let at = DateTime::parse_from_rfc3339(rest.trim()).map_err(|e| {
                invalid(format!(
                    "@at needs an RFC 3339 instant such as \"2026-12-01T03:00:00Z\" ({e})"
                ))
            })?;
            Kind::At(at.with_timezone(&Utc))
        } else {
            Kind::Cron(interned_cron(trimmed).map_err(invalid)?)
        };
        Ok(Self { tz, kind })
    }

    /// Parses and checks that the schedule fires at least once after `now`:
    /// the submit-time validation for job definitions.
    pub fn parse_for_submit(
        expr: &str,
        tz: Tz,
        anchor: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Self, ScheduleError> {
        let s = Self::parse(expr, tz, anchor)?;
        s.ensure_fires_after(now)?;
        Ok(s)
    }

    /// `Err(NeverFires)` when there is no occurrence after `t`.
    pub fn ensure_fires_after(&self, t: DateTime<Utc>) -> Result<(), ScheduleError> {
        match self.next_after(t) {
            Some(_) => Ok(()),
            None => Err(ScheduleError::NeverFires {
                expr: self.expr(),
                after: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
        }
    }

    /// The first occurrence strictly after `t`, or `None` when the schedule
    /// never fires again. Successive calls on the returned instant give a
    /// strictly increasing sequence.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<Occurrence> {
        match &self.kind {
            Kind::Cron(c) => dst::next_after(c, self.tz, t.trunc_subsecs(0), t),
            Kind::Every { every_ms, anchor } => {
                let elapsed = t
                    .timestamp_millis()
                    .checked_sub(anchor.timestamp_millis())?;
                // k ≥ 1: the first fire is one interval after the anchor.
                let k = if elapsed < 0 {
                    1
                } else {
                    elapsed / every_ms + 1
                };
                let at_ms = anchor
                    .timestamp_millis()
                    .checked_add(k.checked_mul(*every_ms)?)?;
                let at = DateTime::from_timestamp_millis(at_ms)?;
                Some(Occurrence { at, note: None })
            }
            Kind::At(at) => (*at > t).then_some(Occurrence {
                at: *at,
                note: None,
            }),
        }
    }

    /// Iterates occurrences strictly after `t`.
    pub fn iter_after(&self, t: DateTime<Utc>) -> impl Iterator<Item = Occurrence> + '_ {
        let mut cursor = t;
        std::iter::from_fn(move || {
            let occ = self.next_after(cursor)?;
            cursor = occ.at;
            Some(occ)
        })
    }

    /// The expression (a cron expression as written, trimmed; `@every` and
    /// `@at` in their canonical form). Not stored per job: a million jobs
    /// share a few hundred cron texts.
    pub fn expr(&self) -> String {
        match &self.kind {
            Kind::Cron(c) => c.text().to_string(),
            Kind::Every { every_ms, .. } => format!("@every {}s", every_ms / 1000),
            Kind::At(at) => format!(
                "@at {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
        }
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// How DST transitions affect this schedule (see `docs/semantics.md`).
    pub fn dst_class(&self) -> DstClass {
        match &self.kind {
            Kind::Cron(c) => c.class(),
            Kind::Every { .. } | Kind::At(_) => DstClass::ElapsedTime,
        }
    }

    /// True for a one-shot `@at` schedule: the job is done after its fire.
    pub fn is_one_shot(&self) -> bool {
        matches!(self.kind, Kind::At(_))
    }
}

/// Parses an IANA zone name, with an error naming the input.
pub fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownZone(name.to_string()))
}

fn strip_keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let head = s.get(..kw.len())?;
    if !head.eq_ignore_ascii_case(kw) {
        return None;
    }
    let rest = &s[kw.len()..];
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}
