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

/// A job held compact: ~300 bytes for a plain job instead of ~850 for the
/// parsed definition and its schedule.
#[derive(Debug, Clone)]
pub struct Compact {
    /// The stored definition as sparse JSON ([`encode`]); shared, so a
    /// snapshot being written holds it without a copy.
    pub(crate) def: Arc<[u8]>,
    pub(crate) group: Arc<Group>,
    pub(crate) paused: bool,
}

/// A pool and a label set, one copy for every job that has both.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Group {
    pub(crate) pool: Box<str>,
    pub(crate) labels: Labels,
}

impl Compact {
    pub(crate) fn pool(&self) -> &str {
        &self.group.pool
    }

    pub(crate) fn labels(&self) -> &Labels {
        &self.group.labels
    }

    /// The stored definition back (decoded from the bytes this process
    /// encoded: a failure is a bug, reported as `Err`).
    pub fn stored(&self, id: &str) -> Result<StoredJob, String> {
        decode(id, &self.def)
    }

    /// Bytes of the encoded definition (for the memory breakdown).
    pub fn encoded_len(&self) -> usize {
        self.def.len()
    }
}

/// The pools and label sets of the jobs, one copy of each pair.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    groups: HashSet<Arc<Group>>,
}

impl Interner {
    fn group(&mut self, pool: &str, labels: &Labels) -> Arc<Group> {
        let g = Group {
            pool: pool.into(),
            labels: labels.clone(),
        };
        if let Some(a) = self.groups.get(&g) {
            return a.clone();
        }
        let a = Arc::new(g);
        self.groups.insert(a.clone());
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
            group: self.group(&s.job.pool, &s.job.labels),
            paused: s.paused.unwrap_or(s.job.paused),
        }
    }

    /// Forgets pools and label sets no job uses any more.
    pub(crate) fn prune(&mut self) {
        self.groups.retain(|g| Arc::strong_count(g) > 1);
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

/// What a stored definition holds besides the job, under short keys (the
/// compact form never leaves the process).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Rest {
    #[serde(rename = "c")]
    created_at: chrono::DateTime<chrono::Utc>,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    paused: Option<bool>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    paused_reason: Option<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    paused_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    paused_by: Option<String>,
}

/// `s` as two JSON documents: the job without its id (the registry's key
/// holds it) and without the fields that hold their default (they read
/// back as the same default), then the rest of the stored definition:
/// `decode(id, encode(s)) == s` for `s` of that id.
pub(crate) fn encode(s: &StoredJob) -> Result<Vec<u8>, String> {
    let mut job = match serde_json::to_value(&s.job).map_err(|e| e.to_string())? {
        serde_json::Value::Object(m) => m,
        _ => return Err("a job serialises as an object".to_string()),
    };
    let d = defaults();
    job.retain(|k, val| k != "id" && (k == "schedule" || d.get(k) != Some(val)));
    let rest = Rest {
        created_at: s.created_at,
        paused: s.paused,
        paused_reason: s.paused_reason.clone(),
        paused_at: s.paused_at,
        paused_by: s.paused_by.clone(),
    };
    let mut out = serde_json::to_vec(&job).map_err(|e| e.to_string())?;
    serde_json::to_writer(&mut out, &rest).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The definition of `id` that [`encode`] wrote.
pub(crate) fn decode(id: &str, bytes: &[u8]) -> Result<StoredJob, String> {
    let job = with_id(id, bytes)?;
    let mut de = serde_json::Deserializer::from_slice(&job);
    let spec = <JobSpec as serde::Deserialize>::deserialize(&mut de).map_err(|e| bad(id, e))?;
    let rest = <Rest as serde::Deserialize>::deserialize(&mut de).map_err(|e| bad(id, e))?;
    de.end().map_err(|e| bad(id, e))?;
    Ok(StoredJob {
        job: spec,
        created_at: rest.created_at,
        paused: rest.paused,
        paused_reason: rest.paused_reason,
        paused_at: rest.paused_at,
        paused_by: rest.paused_by,
    })
}

/// Only the job of the definition of `id` that [`encode`] wrote (what a
/// fire carries: the rest is not read).
pub(crate) fn decode_job(id: &str, bytes: &[u8]) -> Result<JobSpec, String> {
    let job = with_id(id, bytes)?;
    let mut de = serde_json::Deserializer::from_slice(&job);
    <JobSpec as serde::Deserialize>::deserialize(&mut de).map_err(|e| bad(id, e))
}

fn bad(id: &str, e: serde_json::Error) -> String {
    format!("compact definition of {id}: {e}")
}

/// The encoded definition with the job's id put back first: `{"id":"…",…}`.
fn with_id(id: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let Some((b'{', fields)) = bytes.split_first() else {
        return Err(format!("compact definition of {id}: not an object"));
    };
    let mut job = Vec::with_capacity(bytes.len() + id.len() + 8);
    job.extend_from_slice(b"{\"id\":");
    serde_json::to_writer(&mut job, id).map_err(|e| bad(id, e))?;
    if fields.first() != Some(&b'}') {
        job.push(b',');
    }
    job.extend_from_slice(fields);
    Ok(job)
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
        assert!(bytes.len() < 130, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(decode("s-1234567", &bytes), Ok(plain.clone()));
        assert_eq!(decode_job("s-1234567", &bytes), Ok(plain.job));
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
        assert_eq!(decode("etl", &encode(&full).expect("encodes")), Ok(full));
        // A job of only an id and a schedule: nothing else in its document.
        let bare = stored(serde_json::json!({"id": "a", "schedule": "@daily"}));
        assert_eq!(decode("a", &encode(&bare).expect("encodes")), Ok(bare));
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
        assert!(Arc::ptr_eq(&a.group, &b.group));
        drop((a, b));
        i.prune();
        assert!(i.groups.is_empty());
    }
}
