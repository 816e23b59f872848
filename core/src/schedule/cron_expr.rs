//! Cron expression parsing: field checks with messages that name the field,
//! Debian's wildcard/fixed-time classification, Vixie's day-of-month/day-of-week
//! rule, and the croner pattern that does the calendar matching.

use croner::{
    parser::{CronParser, Seconds, Year},
    Cron,
};
use serde::Serialize;

/// How DST transitions affect a schedule (Debian cron's rule; see
/// `docs/semantics.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DstClass {
    /// Minute or hour field starts with `*`, or `@hourly`: follows the wall
    /// clock as it reads.
    Wildcard,
    /// Every other cron job: gap occurrences collapse to the first instant after
    /// the gap; overlap occurrences fire in the first pass only.
    FixedTime,
    /// `@every` and `@at`: real elapsed time, DST does not matter.
    ElapsedTime,
}

/// A parsed cron expression: croner's pattern plus our DST class.
#[derive(Debug)]
pub(crate) struct CronExpr {
    cron: Cron,
    class: DstClass,
    /// The expression as written (trimmed).
    text: String,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: Field = field("second", 0, 59);
const MINUTE: Field = field("minute", 0, 59);
const HOUR: Field = field("hour", 0, 23);
const DOM: Field = field("day-of-month", 1, 31);
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: MONTHS,
};
const DOW: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: DAYS,
};
const YEAR: Field = field("year", 1970, 4999);

const fn field(name: &'static str, min: u32, max: u32) -> Field {
    Field {
        name,
        min,
        max,
        names: &[],
    }
}

impl CronExpr {
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn parse(expr: &str) -> Result<Self, String> {
        let (five_or_more, class_hint) = expand_alias(expr)?;
        let parts: Vec<&str> = five_or_more.split_whitespace().collect();
        let layout: &[&Field] = match parts.len() {
            5 => &[&MINUTE, &HOUR, &DOM, &MONTH, &DOW],
            6 => &[&SECOND, &MINUTE, &HOUR, &DOM, &MONTH, &DOW],
            7 => &[&SECOND, &MINUTE, &HOUR, &DOM, &MONTH, &DOW, &YEAR],
            n => {
                return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), \
                     6 (with seconds first) or 7 (seconds first, year last), got {n}"
                ))
            }
        };
        for (part, f) in parts.iter().zip(layout) {
            check_field(part, f)?;
        }
        let offset = parts.len() - 5; // 1 when a seconds field leads
        let (minute, hour) = (parts[offset], parts[offset + 1]);
        let class = class_hint.unwrap_or(if minute.starts_with('*') || hour.starts_with('*') {
            DstClass::Wildcard
        } else {
            DstClass::FixedTime
        });

        // Vixie cron: when either day field *starts with* `*` the two are
        // ANDed, otherwise ORed. croner only treats an exact `*` as a star, so
        // force AND (croner's `+` modifier) for `*/2`-style day fields.
        let (dom, dow) = (parts[offset + 2], parts[offset + 4]);
        let is_star = |p: &str| p == "*" || p == "?";
        let mut owned: Vec<String> = parts.iter().map(|p| (*p).to_string()).collect();
        if !is_star(dom) && !is_star(dow) && (dom.starts_with('*') || dow.starts_with('*')) {
            owned[offset + 4] = format!("+{dow}");
        }
        let normalized = owned.join(" ");
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Optional)
            .build()
            .parse(&normalized)
            .map_err(|e| e.to_string().to_lowercase())?;
        Ok(Self {
            cron,
            class,
            text: expr.to_string(),
        })
    }

    pub(crate) fn class(&self) -> DstClass {
        self.class
    }

    pub(crate) fn cron(&self) -> &Cron {
        &self.cron
    }
}

/// Expands `@daily`-style aliases to five fields. `@hourly` is a wildcard job
/// in Debian's rule although its minute is `0`, hence the class hint.
fn expand_alias(expr: &str) -> Result<(String, Option<DstClass>), String> {
    if !expr.starts_with('@') {
        return Ok((expr.to_string(), None));
    }
    let fields = match expr.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => return Ok(("0 * * * *".to_string(), Some(DstClass::Wildcard))),
        "@reboot" => return Err("@reboot is not supported: Sundial has no boot to run at".into()),
        _ => {
            return Err(format!(
                "unknown alias {expr}: expected @yearly, @annually, @monthly, @weekly, \
                 @daily, @midnight, @hourly, @every <duration> or @at <RFC 3339>"
            ))
        }
    };
    Ok((fields.to_string(), None))
}

/// Checks every number and name in one field against the field's range, so the
/// error can say `minute must be 0-59` rather than croner's generic message.
fn check_field(part: &str, f: &Field) -> Result<(), String> {
    let range_err = || format!("{} must be {}-{}", f.name, f.min, f.max);
    let part = part.strip_prefix('+').unwrap_or(part);
    for item in part.split(',') {
        if item.is_empty() {
            return Err(format!("{} has an empty list item", f.name));
        }
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if n >= 1 && n <= f.max.max(1) => {}
                _ => return Err(format!("{} step must be 1-{}", f.name, f.max.max(1))),
            }
        }
        // Strip `#n` (nth weekday) and the L/W suffixes; croner checks their
        // placement, we check the numbers.
        let base = match base.split_once('#') {
            Some((b, nth)) => {
                if !matches!(nth.parse::<u32>(), Ok(1..=5)) && !nth.eq_ignore_ascii_case("l") {
                    return Err(format!("{} #n must be 1-5", f.name));
                }
                b
            }
            None => base,
        };
        let base = base.trim_end_matches(['L', 'l', 'W', 'w']);
        if base.is_empty() || base == "*" || base == "?" {
            continue;
        }
        let mut bounds = base.splitn(2, '-');
        for bound in bounds.by_ref() {
            if bound.is_empty() {
                // `L-2` style offsets and similar are left to croner.
                continue;
            }
            let value = parse_value(bound, f).ok_or_else(|| {
                if bound.chars().all(|c| c.is_ascii_digit()) {
                    range_err()
                } else {
                    format!("{} has an invalid value \"{bound}\"", f.name)
                }
            })?;
            if value < f.min || value > f.max {
                return Err(range_err());
            }
        }
    }
    Ok(())
}

fn parse_value(s: &str, f: &Field) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    let upper = s.to_ascii_uppercase();
    let idx = f.names.iter().position(|n| *n == upper)?;
    // Months are 1-based, days 0-based (SUN = 0).
    let base = if f.names.len() == 12 { 1 } else { 0 };
    u32::try_from(idx).ok().map(|i| i + base)
}
