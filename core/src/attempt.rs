//! What happens after an attempt, decided without I/O: which retry tier a
//! failed attempt goes to or whether it is dead-lettered, which fire ids a
//! worker has recently handled, and how much output a run event keeps.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use crate::{duration::HumanDuration, protocol::fire::FireEvent};

/// How an attempt failed, as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again; `after` overrides the job's backoff (a handler's
    /// `Retry { after }`).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Never worth trying again: straight to the dead-letter queue.
    Abort { reason: String },
}

impl Failure {
    pub fn retry(reason: impl Into<String>) -> Self {
        Failure::Retry {
            reason: reason.into(),
            after: None,
        }
    }

    pub fn abort(reason: impl Into<String>) -> Self {
        Failure::Abort {
            reason: reason.into(),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Failure::Retry { reason, .. } | Failure::Abort { reason } => reason,
        }
    }
}

/// The one outcome of a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Republish to retry tier `tier` as attempt `attempt`.
    Retry { tier: HumanDuration, attempt: u32 },
    /// Dead-letter with the reason.
    Dead,
}

/// Decides between a retry and a dead letter for failed attempt
/// `fire.attempt`. The delay is the handler's `after` or the job's backoff,
/// mapped onto a declared tier by [`tier_for`]; with no tier declared there
/// is nowhere to wait, so the fire is dead-lettered.
pub fn after_failure(fire: &FireEvent, failure: &Failure, tiers: &[HumanDuration]) -> AfterFailure {
    let delay = match failure {
        Failure::Abort { .. } => return AfterFailure::Dead,
        Failure::Retry { after, .. } => {
            if fire.attempt >= fire.retry.max_attempts {
                return AfterFailure::Dead;
            }
            match after {
                Some(d) => *d,
                None => match fire.retry.delay_after(fire.attempt) {
                    Some(d) => d.get(),
                    None => return AfterFailure::Dead,
                },
            }
        }
    };
    match tier_for(delay, tiers) {
        Some(tier) => AfterFailure::Retry {
            tier,
            attempt: fire.attempt + 1,
        },
        None => AfterFailure::Dead,
    }
}

pub use crate::backoff::tier_for;

/// Keeps the last `limit` bytes of a stream of output chunks, cut at a
/// character boundary so the result is valid UTF-8 (invalid bytes are
/// replaced).
#[derive(Debug, Clone)]
pub struct OutputTail {
    buf: VecDeque<u8>,
    limit: usize,
    /// Bytes dropped from the front, reported so a reader knows it is a tail.
    dropped: u64,
}

/// Run events carry this much of a shell job's output (stdout and stderr,
/// interleaved as they arrived).
pub const OUTPUT_TAIL_BYTES: usize = 4096;

impl OutputTail {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(limit.min(OUTPUT_TAIL_BYTES)),
            limit,
            dropped: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend(chunk);
        while self.buf.len() > self.limit {
            self.buf.pop_front();
            self.dropped += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The kept bytes as text, starting at a character boundary.
    pub fn text(&self) -> String {
        let bytes: Vec<u8> = self.buf.iter().copied().collect();
        // Skip continuation bytes a cut may have left at the front.
        let start = if self.dropped > 0 {
            bytes
                .iter()
                .position(|b| (b & 0b1100_0000) != 0b1000_0000)
                .unwrap_or(bytes.len())
        } else {
            0
        };
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

/// The fire ids (with attempt) a worker has seen recently, to drop a
/// duplicate delivered again within `window` (a failover re-fire, or the
/// same event published twice). Time is an argument, so tests walk it.
#[derive(Debug)]
pub struct RecentFires {
    window: Duration,
    /// Most entries kept, oldest forgotten first: bounds memory under load.
    capacity: usize,
    seen: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl RecentFires {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The key of one attempt of one fire: retries are not duplicates, and
    /// neither is a replay (`replay` is its marker).
    pub fn key(fire_id: &str, attempt: u32, replay: Option<&str>) -> String {
        match replay {
            Some(r) => format!("{fire_id}#{attempt}#{r}"),
            None => format!("{fire_id}#{attempt}"),
        }
    }

    /// Records `key` at `now`; `false` when it was already seen within the
    /// window (a duplicate).
    pub fn insert(&mut self, key: &str, now: Instant) -> bool {
        self.expire(now);
        if self.seen.contains_key(key) {
            return false;
        }
        while self.seen.len() >= self.capacity {
            match self.order.pop_front() {
                Some((at, old)) => {
                    if self.seen.get(&old) == Some(&at) {
                        self.seen.remove(&old);
                    }
                }
                None => break,
            }
        }
        self.seen.insert(key.to_string(), now);
        self.order.push_back((now, key.to_string()));
        true
    }

    /// Forgets `key`: its attempt was abandoned (not acked), so the broker
    /// will deliver it again and that delivery is not a duplicate.
    pub fn forget(&mut self, key: &str) {
        self.seen.remove(key);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.window {
                break;
            }
            // Only remove when the map still holds this insertion (a forgotten
            // and re-inserted key has a newer entry behind).
            if self.seen.get(key) == Some(at) {
                self.seen.remove(key);
            }
            self.order.pop_front();
        }
    }
}

/// Which run records a worker also publishes one by one on `sundial.events`
/// (`worker.run_events`), for consumers that bind per job or per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunEvents {
    /// Every record: `started` and the outcome of every attempt.
    All,
    /// Outcomes: also `succeeded`.
    Outcomes,
    /// Only what went wrong: `failed`, `retrying`, `dead`, `skipped`.
    #[default]
    Failures,
}

impl RunEvents {
    /// Whether a record of `kind`, of a fire that is `manual` or not, is
    /// also published on its own on `sundial.events` (every record is in
    /// the history stream either way, ADR 0015). What went wrong always is;
    /// so is every record of a manual trigger (someone is watching).
    pub fn publishes(self, kind: crate::protocol::run::RunKind, manual: bool) -> bool {
        use crate::protocol::run::RunKind as K;
        match kind {
            K::Failed | K::Retrying | K::Dead | K::Skipped | K::Cancelled => true,
            K::Succeeded => manual || self != Self::Failures,
            K::Started | K::Fired => manual || self == Self::All,
        }
    }
}
