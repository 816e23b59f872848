//! `Acks`: the acks of a worker's input channel, gathered. An attempt asks
//! for its ack once its records are confirmed (as before); the acks asked
//! for while the previous one was being sent go out together as one
//! `basic.ack` with `multiple` up to the highest tag below which every
//! delivery is settled, and singly above a delivery that is still running.
//! A busy worker then sends one ack frame per history batch instead of one
//! per run (the broker settles them per queue at once).
//!
//! `multiple` acks every unacked delivery of the channel up to its tag, so
//! it may only cover deliveries whose attempt asked for an ack or whose
//! delivery was nacked already. Two things keep it there: the main loop
//! notes each delivery it takes before its attempt starts (a delivery still
//! running holds the bound below it), and the bound never passes a tag the
//! main loop has not taken yet (delivery tags of a channel are consecutive
//! from 1; one still buffered in a consumer's stream is not taken). A
//! delivery left to the broker (abandoned at shutdown, or after a failed
//! settle) is never released, so no ack ever covers it.

use std::collections::BTreeSet;

use lapin::{options::BasicAckOptions, Channel};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;

type Waiter = oneshot::Sender<Result<(), lapin::Error>>;

enum Note {
    /// The main loop took this delivery; its attempt will settle it.
    Taken(u64),
    /// Nacked (requeued) by its attempt: no ack will come for it.
    Released(u64),
    /// Ack it; the waiter learns when the frame is handed to the
    /// connection.
    Ack(u64, Waiter),
}

/// Hands acks to the gathering task of one input channel.
#[derive(Clone)]
pub(crate) struct Acks {
    tx: mpsc::UnboundedSender<Note>,
}

impl Acks {
    /// Starts the task acking on `input`; it ends when every `Acks` clone
    /// is dropped, after sending what was asked.
    pub(crate) fn start(input: Channel) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(input, rx));
        Self { tx }
    }

    /// The main loop took the delivery `tag` (before its attempt starts).
    pub(crate) fn taken(&self, tag: u64) {
        let _ = self.tx.send(Note::Taken(tag));
    }

    /// The delivery `tag` was nacked by its attempt.
    pub(crate) fn released(&self, tag: u64) {
        let _ = self.tx.send(Note::Released(tag));
    }

    /// Acks the delivery `tag`, alone or with others; resolves when the
    /// ack covering it was handed to the connection.
    pub(crate) async fn ack(&self, tag: u64) -> Result<(), Error> {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Note::Ack(tag, done)).is_err() {
            return Err(Error::TaskStopped("ack gatherer"));
        }
        match wait.await {
            Ok(r) => r.map_err(Error::broker("basic.ack")),
            Err(_) => Err(Error::TaskStopped("ack gatherer")),
        }
    }
}

async fn run(input: Channel, mut rx: mpsc::UnboundedReceiver<Note>) {
    let mut gather = Gather::default();
    let mut asked: Vec<(u64, Waiter)> = Vec::new();
    while let Some(first) = rx.recv().await {
        // Take everything noted meanwhile: under load, the acks of a whole
        // history batch arrive while the previous frame was sent.
        let mut next = Some(first);
        while let Some(note) = next {
            match note {
                Note::Taken(tag) => gather.taken(tag),
                Note::Released(tag) => gather.settled(tag),
                Note::Ack(tag, w) => {
                    gather.settled(tag);
                    asked.push((tag, w));
                }
            }
            next = rx.try_recv().ok();
        }
        if asked.is_empty() {
            continue;
        }
        let tags: Vec<u64> = asked.iter().map(|(t, _)| *t).collect();
        let plan = gather.plan(&tags);
        let together = match plan.multiple {
            Some(upto) => Some((
                upto,
                input
                    .basic_ack(upto, BasicAckOptions { multiple: true })
                    .await,
            )),
            None => None,
        };
        for (tag, w) in asked.drain(..) {
            let r = match &together {
                Some((upto, r)) if tag <= *upto => r.clone(),
                _ => {
                    input
                        .basic_ack(tag, BasicAckOptions { multiple: false })
                        .await
                }
            };
            let _ = w.send(r);
        }
    }
}

/// Which deliveries of a channel were taken and are not settled yet: the
/// bound a `multiple` ack may not pass.
#[derive(Debug, Default)]
pub(crate) struct Gather {
    /// Every tag up to this one was taken.
    taken_upto: u64,
    /// Tags taken above `taken_upto + 1` (a gap: one not taken yet).
    ahead: BTreeSet<u64>,
    /// Taken and neither acked nor released.
    open: BTreeSet<u64>,
    /// A tag was never taken while [`AHEAD_MAX`] later ones were (a
    /// delivery lapin dropped, say): from then on every ack goes alone.
    gapped: bool,
}

/// Tags taken past a gap that are tracked before the gap is given up on.
const AHEAD_MAX: usize = 100_000;

/// How to send the acks asked for: one `multiple` ack up to a tag, and the
/// rest one by one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) multiple: Option<u64>,
    pub(crate) singles: Vec<u64>,
}

impl Gather {
    pub(crate) fn taken(&mut self, tag: u64) {
        self.open.insert(tag);
        if tag == self.taken_upto + 1 {
            self.taken_upto = tag;
            while self.ahead.remove(&(self.taken_upto + 1)) {
                self.taken_upto += 1;
            }
        } else if tag > self.taken_upto && !self.gapped {
            self.ahead.insert(tag);
            if self.ahead.len() > AHEAD_MAX {
                self.gapped = true;
                self.ahead = BTreeSet::new();
            }
        }
    }

    /// `tag` was acked (asked for) or nacked.
    pub(crate) fn settled(&mut self, tag: u64) {
        self.open.remove(&tag);
    }

    /// Splits the acks `asked` for (each settled already) into one
    /// `multiple` ack and singles: the multiple one covers the asked tags
    /// below every open and every not-yet-taken delivery.
    pub(crate) fn plan(&self, asked: &[u64]) -> Plan {
        let below_open = self.open.first().map_or(u64::MAX, |t| t - 1);
        let bound = if self.gapped {
            0
        } else {
            self.taken_upto.min(below_open)
        };
        let covered = asked.iter().filter(|t| **t <= bound).count();
        let multiple = match covered {
            0 | 1 => None,
            _ => asked.iter().copied().filter(|t| *t <= bound).max(),
        };
        let singles = asked
            .iter()
            .copied()
            .filter(|t| multiple.is_none_or(|m| *t > m))
            .collect();
        Plan { multiple, singles }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(taken: &[u64], settled: &[u64]) -> Gather {
        let mut g = Gather::default();
        for t in taken {
            g.taken(*t);
        }
        for t in settled {
            g.settled(*t);
        }
        g
    }

    #[test]
    fn acks_below_every_open_delivery_go_together() {
        let g = gather(&[1, 2, 3, 4, 5], &[1, 2, 4, 5]);
        assert_eq!(
            g.plan(&[1, 2, 4, 5]),
            Plan {
                multiple: Some(2),
                singles: vec![4, 5]
            }
        );
        let g = gather(&[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5]);
        assert_eq!(
            g.plan(&[5, 3, 4]),
            Plan {
                multiple: Some(5),
                singles: vec![]
            }
        );
    }

    #[test]
    fn a_delivery_not_taken_yet_bounds_the_multiple_ack() {
        // 3 is still buffered in a consumer's stream: not covered.
        let g = gather(&[1, 2, 4, 5], &[1, 2, 4, 5]);
        assert_eq!(
            g.plan(&[1, 2, 4, 5]),
            Plan {
                multiple: Some(2),
                singles: vec![4, 5]
            }
        );
        // Taken out of order, the gap closes.
        let mut g = gather(&[2, 4, 1], &[1, 2, 4]);
        assert_eq!(g.taken_upto, 2);
        g.taken(3);
        g.settled(3);
        assert_eq!(g.taken_upto, 4);
        assert_eq!(g.plan(&[3, 4]).multiple, Some(4));
    }

    #[test]
    fn a_nacked_delivery_does_not_hold_the_bound_an_abandoned_one_does() {
        // 2 nacked (released), 3 abandoned (never settled).
        let g = gather(&[1, 2, 3, 4, 5], &[1, 2, 4, 5]);
        assert_eq!(
            g.plan(&[1, 4, 5]),
            Plan {
                multiple: None,
                singles: vec![1, 4, 5]
            }
        );
        let g = gather(&[1, 2, 3], &[1, 2, 3]);
        assert_eq!(g.plan(&[1, 3]).multiple, Some(3));
    }

    #[test]
    fn a_gap_that_never_closes_stops_gathering_instead_of_growing() {
        // Tag 1 is never taken.
        let mut g = Gather::default();
        for t in 2..=(AHEAD_MAX as u64 + 2) {
            g.taken(t);
            g.settled(t);
        }
        assert!(g.ahead.is_empty());
        assert_eq!(
            g.plan(&[5, 6]),
            Plan {
                multiple: None,
                singles: vec![5, 6]
            }
        );
    }

    #[test]
    fn one_ack_goes_alone() {
        let g = gather(&[1, 2], &[1]);
        assert_eq!(
            g.plan(&[1]),
            Plan {
                multiple: None,
                singles: vec![1]
            }
        );
    }
}
