//! The registry's reads for the rest of the process: the web application
//! asks its job questions through a [`RegistryReads`] handle, which the
//! binary hands it (neither crate imports the other). The questions and
//! answers are core's plain types (`sundial_core::registry_read`); the
//! registry actor answers them on its own thread.

use std::sync::{Arc, RwLock};

use actix::Recipient;
use sundial_core::registry_read::{JobsQuery, ReadAnswer};

/// The message the registry actor answers.
#[derive(actix::Message)]
#[rtype(result = "ReadAnswer")]
pub(crate) struct JobsRead(pub(crate) JobsQuery);

/// Why a read was not answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The scheduler is (re)connecting: no registry yet.
    #[error("this process holds no registry right now (connecting to the broker, or not a scheduler): try again, or ask a scheduler")]
    NoRegistry,
    /// The registry actor went away while asked.
    #[error("the registry did not answer ({0}): it is restarting; try again")]
    NoAnswer(#[from] actix::MailboxError),
}

/// This node's registry, while it has one: set by the scheduler on every
/// (re)connection, cleared when the run ends.
#[derive(Default)]
pub struct RegistryReads {
    registry: RwLock<Option<Recipient<JobsRead>>>,
}

impl std::fmt::Debug for RegistryReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryReads").finish_non_exhaustive()
    }
}

impl RegistryReads {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn set(&self, r: Option<Recipient<JobsRead>>) {
        if let Ok(mut slot) = self.registry.write() {
            *slot = r;
        }
    }

    /// Asks the registry `q`.
    pub async fn read(&self, q: JobsQuery) -> Result<ReadAnswer, Unavailable> {
        let registry = self.registry.read().ok().and_then(|r| r.clone());
        let registry = registry.ok_or(Unavailable::NoRegistry)?;
        Ok(registry.send(JobsRead(q)).await?)
    }
}
