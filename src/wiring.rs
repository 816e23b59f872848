//! The one place the web application and the scheduler meet: the API's
//! job reads answered by this process's scheduler (neither crate imports
//! the other; ADR 0019).

use std::sync::Arc;

use sundial_scheduler::RegistryReads;
use sundial_web::api::{JobsRead, JobsSource};

/// The API's job reads, answered by this process's scheduler: the one
/// place the web application and the scheduler meet (neither crate
/// imports the other).
pub struct SchedulerJobs(pub Arc<RegistryReads>);

impl JobsSource for SchedulerJobs {
    fn read(&self, q: sundial_core::registry_read::JobsQuery) -> JobsRead<'_> {
        Box::pin(async move { self.0.read(q).await.map_err(Into::into) })
    }
}
