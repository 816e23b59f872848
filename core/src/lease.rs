//! Which scheduler node should own which timer shard, and what a node does
//! about it (ADR 0009). Pure: the scheduler's lease task feeds it heartbeats
//! and the shards it holds; RabbitMQ's exclusive queues make the decision
//! safe (one owner at a time) whatever the nodes believe.
//!
//! Assignment is rendezvous hashing with a capacity of ⌈S / nodes⌉ per node:
//! every node that sees the same live set computes the same balanced map, and
//! a node joining or leaving moves few shards.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

/// The owner (index into `nodes`) of every shard `0..shards`. `nodes` must be
/// sorted and distinct (the order is part of the agreement).
pub fn assign(nodes: &[String], shards: u32) -> Vec<usize> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let cap = (shards as usize).div_ceil(nodes.len());
    let mut load = vec![0usize; nodes.len()];
    let mut owners = Vec::with_capacity(shards as usize);
    for shard in 0..shards {
        let mut ranked: Vec<(u64, usize)> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (score(n, shard), i))
            .collect();
        // Highest score first; the index breaks (improbable) ties.
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let owner = ranked
            .iter()
            .map(|(_, i)| *i)
            .find(|i| load[*i] < cap)
            .unwrap_or(ranked[0].1);
        load[owner] += 1;
        owners.push(owner);
    }
    owners
}

fn score(node: &str, shard: u32) -> u64 {
    // FNV-1a over "node/shard", then a 64-bit finaliser (splitmix) so that
    // names differing in one character still rank independently.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain(*b"/").chain(shard.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// What a node should do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Held shards that belong to another live node: hand them over
    /// (final watermark, then release the lease).
    pub release: Vec<u32>,
    /// Shards to try to lease (a try fails harmlessly while another node
    /// still holds one).
    pub acquire: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Peer {
    seen: Instant,
    owned: BTreeSet<u32>,
}

/// One node's view of the cluster, fed by heartbeats.
#[derive(Debug)]
pub struct Membership {
    me: String,
    shards: u32,
    timeout: Duration,
    peers: BTreeMap<String, Peer>,
    /// Since when each shard has been claimed by no live node (mine
    /// included); `None` while claimed.
    unclaimed_since: Vec<Option<Instant>>,
}

impl Membership {
    pub fn new(me: impl Into<String>, shards: u32, timeout: Duration, now: Instant) -> Self {
        Self {
            me: me.into(),
            shards,
            timeout,
            peers: BTreeMap::new(),
            unclaimed_since: vec![Some(now); shards as usize],
        }
    }

    /// A peer's heartbeat. `leaving` removes it at once (graceful stop).
    pub fn heartbeat(&mut self, node: &str, owned: BTreeSet<u32>, leaving: bool, now: Instant) {
        if node == self.me {
            return;
        }
        if leaving {
            self.peers.remove(node);
        } else {
            self.peers
                .insert(node.to_string(), Peer { seen: now, owned });
        }
    }

    /// Forgets peers silent for longer than the timeout; returns their names.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let timeout = self.timeout;
        let gone: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.seen) > timeout)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &gone {
            self.peers.remove(n);
        }
        gone
    }

    /// Live nodes, sorted, this one included.
    pub fn live(&self) -> Vec<String> {
        let mut v: Vec<String> = self.peers.keys().cloned().collect();
        v.push(self.me.clone());
        v.sort();
        v.dedup();
        v
    }

    /// Which live peer claims `shard` in its last heartbeat.
    pub fn claimed_by(&self, shard: u32) -> Option<&str> {
        self.peers
            .iter()
            .find(|(_, p)| p.owned.contains(&shard))
            .map(|(n, _)| n.as_str())
    }

    /// The plan for a node holding `held`. Call [`Membership::expire`]
    /// first. A shard is tried when it is this node's and no live peer
    /// claims it (a peer announces at once when it gives one up, and a dead
    /// peer's claims expire with it), or when no live node has claimed it
    /// for a whole timeout (whoever tries first takes it; the plan moves it
    /// to its owner later).
    pub fn plan(&mut self, held: &BTreeSet<u32>, now: Instant) -> Plan {
        let live = self.live();
        let owners = assign(&live, self.shards);
        let mut plan = Plan::default();
        for shard in 0..self.shards {
            let target = live[owners[shard as usize]].as_str();
            let claimed = self.claimed_by(shard).is_some();
            let slot = &mut self.unclaimed_since[shard as usize];
            if claimed || held.contains(&shard) {
                *slot = None;
            } else if slot.is_none() {
                *slot = Some(now);
            }
            let orphaned = slot.is_some_and(|t| now.duration_since(t) >= self.timeout);
            let mine = target == self.me;
            if held.contains(&shard) {
                if !mine {
                    plan.release.push(shard);
                }
            } else if (mine && !claimed) || orphaned {
                plan.acquire.push(shard);
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn assignment_is_balanced_and_moves_little_when_a_node_joins() {
        for n in 1..=5 {
            let owners = assign(&names(n), 64);
            let mut load = vec![0; n];
            for o in &owners {
                load[*o] += 1;
            }
            let cap = 64usize.div_ceil(n);
            assert!(load.iter().all(|l| *l <= cap && *l + n >= cap), "{load:?}");
        }
        let two = assign(&names(2), 64);
        let three = assign(&names(3), 64);
        let moved_between_old = two
            .iter()
            .zip(&three)
            .filter(|(a, b)| **b != 2 && a != b)
            .count();
        // Joining moves shards mostly to the newcomer, not between the old.
        assert!(moved_between_old <= 8, "{moved_between_old} moved");
    }

    #[test]
    fn a_joining_node_gets_shards_handed_over_and_a_silent_one_loses_them() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(3);
        let mut a = Membership::new("a", 4, timeout, t0);
        // Alone: every shard is a's.
        let all: BTreeSet<u32> = (0..4).collect();
        assert_eq!(a.plan(&BTreeSet::new(), t0).acquire, vec![0, 1, 2, 3]);
        // b joins (holding nothing): a gives up b's half, keeps its own.
        a.heartbeat("b", BTreeSet::new(), false, t0);
        let plan = a.plan(&all, t0);
        assert_eq!(plan.release.len(), 2, "{plan:?}");
        assert!(plan.acquire.is_empty());
        let kept: BTreeSet<u32> = all
            .difference(&plan.release.iter().copied().collect())
            .copied()
            .collect();

        // b, seeing a hold its half, tries only what a does not claim.
        let mut b = Membership::new("b", 4, timeout, t0);
        b.heartbeat("a", all.clone(), false, t0);
        assert!(
            b.plan(&BTreeSet::new(), t0).acquire.is_empty(),
            "claimed by a: wait"
        );
        b.heartbeat("a", kept.clone(), false, t0);
        let mut want = b.plan(&BTreeSet::new(), t0).acquire;
        want.sort_unstable();
        assert_eq!(want, plan.release);

        // a goes silent: after the timeout b takes everything.
        let b_holds: BTreeSet<u32> = want.iter().copied().collect();
        let later = t0 + timeout + Duration::from_millis(1);
        assert_eq!(b.expire(later), vec!["a".to_string()]);
        let mut take = b.plan(&b_holds, later).acquire;
        take.sort_unstable();
        assert_eq!(take, kept.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_shard_nobody_claims_is_taken_by_anyone_after_the_timeout() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(3);
        let mut a = Membership::new("a", 4, timeout, t0);
        a.heartbeat("b", BTreeSet::new(), false, t0);
        let mine = a.plan(&BTreeSet::new(), t0).acquire;
        assert_eq!(mine.len(), 2);
        let held: BTreeSet<u32> = mine.iter().copied().collect();
        // b is alive but never takes its shards.
        a.heartbeat("b", BTreeSet::new(), false, t0 + timeout);
        let plan = a.plan(&held, t0 + timeout + Duration::from_millis(1));
        assert_eq!(plan.acquire.len(), 2, "orphans taken: {plan:?}");
    }
}
