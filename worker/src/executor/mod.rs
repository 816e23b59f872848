//! Executors: what a worker does with a fire. Each returns one
//! [`Executed`]; the attempt logic maps it to exactly one outcome.

#[cfg(feature = "http")]
mod http;
mod publish;
pub(crate) mod shell;

use sundial_core::{attempt::Failure, job::Executor, protocol::fire::FireEvent};
use tokio_util::sync::CancellationToken;

use super::handler::{Handlers, RunContext};

/// The reason prefix of a fire for a handler this worker does not have.
pub(crate) const NO_HANDLER: &str = "handler-not-registered";

/// The reason of an http fire for a worker built without the `http`
/// feature (an embedded worker that does not need it).
#[cfg(not(feature = "http"))]
pub(crate) const NO_HTTP: &str = "executor-not-built: this worker was built without the http executor (sundial-worker feature \"http\"); run http jobs in a pool of `sundial worker` processes";

/// An executor's result and the tail of what it printed.
#[derive(Debug)]
pub(crate) struct Executed {
    pub(crate) result: Result<(), Failure>,
    pub(crate) output: Option<String>,
}

impl Executed {
    pub(crate) fn ok() -> Self {
        Self {
            result: Ok(()),
            output: None,
        }
    }

    pub(crate) fn failed(f: Failure) -> Self {
        Self {
            result: Err(f),
            output: None,
        }
    }
}

/// What executors share across runs.
#[derive(Clone)]
pub(crate) struct Executors {
    pub(crate) shell_allow: std::sync::Arc<Vec<String>>,
    pub(crate) handlers: Handlers,
    /// The worker's connection: each `publish` run opens its own channel,
    /// because a publish to a missing exchange closes the channel it used.
    pub(crate) conn: std::sync::Arc<lapin::Connection>,
    #[cfg(feature = "http")]
    pub(crate) http: http::Client,
}

impl Executors {
    pub(crate) fn new(
        shell_allow: Vec<String>,
        handlers: Handlers,
        conn: std::sync::Arc<lapin::Connection>,
    ) -> Result<Self, crate::Error> {
        Ok(Self {
            shell_allow: std::sync::Arc::new(shell_allow),
            handlers,
            conn,
            #[cfg(feature = "http")]
            http: http::Client::new()?,
        })
    }

    /// Runs `fire`'s executor until it ends or `cancel` fires (then it stops
    /// what it started and returns a failure the caller reinterprets).
    ///
    /// The executors' futures are boxed: inline, the largest of them would
    /// set the size of every attempt's task, `noop` and handler runs too.
    pub(crate) async fn run(&self, fire: &FireEvent, cancel: &CancellationToken) -> Executed {
        match &fire.executor {
            Executor::Noop => Executed::ok(),
            Executor::Shell(spec) => {
                Box::pin(shell::run(spec, fire, &self.shell_allow, cancel)).await
            }
            #[cfg(feature = "http")]
            Executor::Http(spec) => {
                tokio::select! {
                    r = Box::pin(self.http.run(spec, fire)) => r,
                    () = cancel.cancelled() => Executed::failed(Failure::retry("cancelled")),
                }
            }
            #[cfg(not(feature = "http"))]
            Executor::Http(_) => Executed::failed(Failure::abort(NO_HTTP)),
            Executor::Publish(spec) => {
                tokio::select! {
                    r = Box::pin(publish::run(&self.conn, spec, fire)) => r,
                    () = cancel.cancelled() => Executed::failed(Failure::retry("cancelled")),
                }
            }
            Executor::Handler { name } => {
                let Some(h) = self.handlers.get(name) else {
                    return Executed::failed(Failure::abort(format!(
                        "{NO_HANDLER}: no handler named \"{name}\" in this worker"
                    )));
                };
                let ctx = RunContext {
                    fire_id: fire.fire_id.clone(),
                    job_id: fire.job_id.clone(),
                    attempt: fire.attempt,
                    scheduled_at: fire.scheduled_at,
                    step: fire.step().map(|s| s.step.to_string()),
                    shard: fire.step().and_then(|s| s.shard),
                    cancelled: cancel.clone(),
                };
                let fut = h(ctx, fire.payload.clone());
                // A panicking handler is a failed attempt, not a dead worker.
                let run = tokio::spawn(fut);
                let abort = run.abort_handle();
                tokio::select! {
                    r = run => match r {
                        Ok(Ok(())) => Executed::ok(),
                        Ok(Err(e)) => Executed::failed(e.into()),
                        Err(e) if e.is_panic() => Executed::failed(Failure::retry(format!("handler \"{name}\" panicked: {}", panic_text(e)))),
                        Err(e) => Executed::failed(Failure::retry(format!("handler \"{name}\" failed: {e}"))),
                    },
                    () = cancel.cancelled() => {
                        abort.abort();
                        Executed::failed(Failure::retry("cancelled"))
                    }
                }
            }
        }
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    sundial_runtime::panic::panic_text(&*e.into_panic())
}
