//! Readiness: what `/readyz` answers, set by the components of a process.

use std::sync::{Arc, Mutex};

/// Readiness, set by the components of the process. Ready when every
/// registered component says so.
#[derive(Debug, Default)]
pub struct Health {
    /// Component → `None` when ready, else why not.
    parts: Mutex<Vec<(String, Option<String>)>>,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Marks `part` ready (`None`) or not (`Some(reason)`).
    pub fn set(&self, part: &str, not_ready: Option<String>) {
        if let Ok(mut parts) = self.parts.lock() {
            match parts.iter_mut().find(|(p, _)| p == part) {
                Some(slot) => slot.1 = not_ready,
                None => parts.push((part.to_string(), not_ready)),
            }
        }
    }

    /// `Ok` when ready, else the reasons.
    pub fn ready(&self) -> Result<(), String> {
        let parts = self
            .parts
            .lock()
            .map_err(|_| "health state poisoned".to_string())?;
        if parts.is_empty() {
            return Err("starting".into());
        }
        let why: Vec<String> = parts
            .iter()
            .filter_map(|(p, r)| r.as_ref().map(|r| format!("{p}: {r}")))
            .collect();
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; "))
        }
    }
}
