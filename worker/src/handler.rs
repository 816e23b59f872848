//! The Rust handler API: register named async functions in an embedded
//! worker; a fire whose executor is `{ type = "handler", name = "..." }` runs
//! the one registered under that name.
//!
//! ```no_run
//! use std::time::Duration;
//! use sundial_worker::{JobError, Worker, WorkerConfig};
//!
//! # async fn demo(cfg: WorkerConfig) -> Result<(), sundial_worker::Error> {
//! let worker = Worker::builder(cfg)
//!     .handler("reports.daily", |ctx, payload| async move {
//!         tracing::info!(fire_id = %ctx.fire_id, %payload, "building the report");
//!         if payload.get("fail").is_some() {
//!             return Err(JobError::Retry { after: Some(Duration::from_secs(30)), reason: "upstream busy".into() });
//!         }
//!         Ok(())
//!     })
//!     .build();
//! worker.run(tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sundial_core::attempt::Failure;
use tokio_util::sync::CancellationToken;

/// What a handler knows about the attempt it runs.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub fire_id: String,
    pub job_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub scheduled_at: DateTime<Utc>,
    /// A workflow step's fire: the step's id.
    pub step: Option<String>,
    /// A step fanned out over shards: `(index from 0, number of shards)`.
    pub shard: Option<(u32, u32)>,
    /// Cancelled when the attempt times out, is replaced, or the worker
    /// stops past its shutdown deadline; a long handler should watch it.
    pub cancelled: CancellationToken,
}

/// How a handler says an attempt failed; each variant maps to one outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Try again: after `after` if given (rounded up to a declared retry
    /// tier), else after the job's backoff. Dead-lettered when the job's
    /// attempts are used up.
    #[error("{reason}")]
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Do not try again: dead-letter now with this reason.
    #[error("{0}")]
    Abort(String),
}

impl JobError {
    /// A retry after the job's backoff.
    pub fn retry(reason: impl Into<String>) -> Self {
        JobError::Retry {
            after: None,
            reason: reason.into(),
        }
    }
}

impl From<JobError> for Failure {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Retry { after, reason } => Failure::Retry { reason, after },
            JobError::Abort(reason) => Failure::Abort { reason },
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;
type HandlerFn = dyn Fn(RunContext, serde_json::Value) -> BoxFuture + Send + Sync;

/// Handlers by name.
#[derive(Clone, Default)]
pub struct Handlers {
    by_name: HashMap<String, Arc<HandlerFn>>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl Handlers {
    pub fn insert<F, Fut>(&mut self, name: impl Into<String>, f: F)
    where
        F: Fn(RunContext, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.by_name.insert(
            name.into(),
            Arc::new(move |ctx, payload| Box::pin(f(ctx, payload)) as BoxFuture),
        );
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<HandlerFn>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}
