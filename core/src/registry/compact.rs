//! The compact form of a job a node does not fire (ADR 0024): its stored
//! definition as JSON without the fields that hold their default, plus the
//! few parts a job search reads without decoding it (pool, labels, pause
//! state), the pool and the label set shared between the jobs that have the
//! same ones.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, OnceLock},
};

use crate::{job::JobSpec, protocol::registry::StoredJob};

/// A job's labels.
pub type Labels = BTreeMap<String, String>;

/// A job held compact: ~250 bytes for a plain job instead of ~900 for the
/// parsed definition and its schedule.
#[derive(Debug, Clone)]
pub struct Compact {
    /// The stored definition as sparse JSON ([`encode`]); shared, so a
    /// snapshot being written holds it without a copy.
    pub(crate) def: Arc<[u8]>,
    pub(crate) pool: Arc<str>,
    pub(crate) labels: Arc<Labels>,
    pub(crate) paused: bool,
}

impl Compact {
    /// The stored definition back (decoded from the bytes this process
    /// encoded: a failure is a bug, reported as `Err`).
    pub fn stored(&self) -> Result<StoredJob, String> {
        decode(&self.def)
    }

    /// Bytes of the encoded definition (for the memory breakdown).
    pub fn encoded_len(&self) -> usize {
        self.def.len()
    }

    /// Whether it holds exactly `other`'s encoding.
    pub(crate) fn same_def(&self, other: &[u8]) -> bool {
        *self.def == *other
    }
}

/// The pools and label sets of the compact jobs, one copy each.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    pools: HashSet<Arc<str>>,
    labels: HashSet<Arc<Labels>>,
}

impl Interner {
    fn pool(&mut self, p: &str) -> Arc<str> {
        if let Some(a) = self.pools.get(p) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(p);
        self.pools.insert(a.clone());
        a
    }

    fn labels(&mut self, l: &Labels) -> Arc<Labels> {
        if let Some(a) = self.labels.get(l) {
            return a.clone();
        }
        let a = Arc::new(l.clone());
        self.labels.insert(a.clone());
        a
    }

    /// The compact form of `s`.
    pub(crate) fn compact(&mut self, s: &StoredJob) -> Result<Compact, String> {
        Ok(self.with_def(s, encode(s)?))
    }

    /// The compact form of `s`, already encoded as `def`.
    pub(crate) fn with_def(&mut self, s: &StoredJob, def: Vec<u8>) -> Compact {
        Compact {
            def: def.into(),
            pool: self.pool(&s.job.pool),
            labels: self.labels(&s.job.labels),
            paused: s.paused.unwrap_or(s.job.paused),
        }
    }

    /// Forgets pools and label sets no job uses any more.
    pub(crate) fn prune(&mut self) {
        self.pools.retain(|p| Arc::strong_count(p) > 1);
        self.labels.retain(|l| Arc::strong_count(l) > 1);
    }
}

/// The serialised fields of a definition that holds every default (what a
/// definition of only `id` and `schedule` reads as).
fn defaults() -> &'static serde_json::Map<String, serde_json::Value> {
    static DEFAULTS: OnceLock<serde_json::Map<String, serde_json::Value>> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        serde_json::from_value::<JobSpec>(serde_json::json!({"id": "", "schedule": ""}))
            .ok()
            .and_then(|j| match serde_json::to_value(j) {
                Ok(serde_json::Value::Object(m)) => Some(m),
                _ => None,
            })
            .unwrap_or_default()
    })
}

/// `s` as JSON without the definition's fields that hold their default
/// (they read back as the same default: `decode(encode(s)) == s`).
pub(crate) fn encode(s: &StoredJob) -> Result<Vec<u8>, String> {
    let mut v = serde_json::to_value(s).map_err(|e| e.to_string())?;
    if let Some(serde_json::Value::Object(job)) = v.get_mut("job") {
        let d = defaults();
        job.retain(|k, val| k == "id" || k == "schedule" || d.get(k) != Some(val));
    }
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

/// A definition [`encode`] wrote.
pub(crate) fn decode(bytes: &[u8]) -> Result<StoredJob, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("compact definition: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(job: serde_json::Value) -> StoredJob {
        StoredJob {
            job: serde_json::from_value(job).expect("a job"),
            created_at: chrono::DateTime::from_timestamp(1_765_000_000, 123_000_000)
                .expect("instant"),
            paused: None,
            paused_reason: None,
            paused_at: None,
            paused_by: None,
        }
    }

    #[test]
    fn every_definition_reads_back_as_it_was_and_defaults_take_no_room() {
        let plain = stored(serde_json::json!({
            "id": "s-1234567", "schedule": "@every 200s",
            "start_at": "2026-12-06T10:00:00.123Z", "executor": {"type": "noop"}
        }));
        let bytes = encode(&plain).expect("encodes");
        assert!(bytes.len() < 160, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(decode(&bytes), Ok(plain));
        // Every field away from its default, a workflow, a pause.
        let mut full = stored(serde_json::json!({
            "id": "etl", "schedule": "0 3 * * *", "timezone": "Europe/Berlin",
            "pool": "batch", "timeout": "5m", "overlap": "forbid",
            "payload": {"full": true, "n": [1, 2]}, "labels": {"team": "data"},
            "retry": {"max_attempts": 1, "backoff": ["1s"]},
            "misfire": {"policy": "catch-up", "grace": "1h", "max_catch_up": 3},
            "jitter": "30s", "sla": "2h", "end_at": "2027-01-01T00:00:00Z",
            "paused": true,
            "steps": [
                {"id": "extract", "executor": {"type": "shell", "command": ["/bin/true"]}},
                {"id": "load", "after": ["extract"], "executor": {"type": "noop"},
                 "fanout": {"shards": 4}}
            ]
        }));
        full.paused = Some(false);
        full.paused_reason = Some("disk full".into());
        full.paused_by = Some("ana".into());
        assert_eq!(decode(&encode(&full).expect("encodes")), Ok(full));
    }

    #[test]
    fn jobs_with_the_same_pool_and_labels_share_one_copy() {
        let mut i = Interner::default();
        let a = i
            .compact(&stored(serde_json::json!({
                "id": "a", "schedule": "@daily", "pool": "batch", "labels": {"team": "x"},
                "executor": {"type": "noop"}
            })))
            .expect("a");
        let b = i
            .compact(&stored(serde_json::json!({
                "id": "b", "schedule": "@daily", "pool": "batch", "labels": {"team": "x"},
                "executor": {"type": "noop"}
            })))
            .expect("b");
        assert!(Arc::ptr_eq(&a.pool, &b.pool) && Arc::ptr_eq(&a.labels, &b.labels));
        drop((a, b));
        i.prune();
        assert!(i.pools.is_empty() && i.labels.is_empty());
    }
}
