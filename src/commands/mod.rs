//! The subcommands. Each returns `Result<(), CommandError>`; `main` maps the
//! error to an exit code (2 for bad input, 1 for everything else).

pub mod alerts;
pub mod config_show;
pub mod dlq;
pub mod history;
pub mod job;
pub mod ledger;
mod ops;
pub mod run;
pub mod schedule_next;
pub mod scheduler;
pub mod status;
pub mod topology_apply;
pub mod worker;

/// A failed command, with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The user's input is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Anything else: broker unreachable, conflict, I/O (exit 1).
    #[error("{0}")]
    Failed(String),
    /// The reader of our output went away (`sundial status | head -1`):
    /// nothing is left to say and nobody to say it to (exit 0, silent, as
    /// `git log | head` does).
    #[error("output closed")]
    OutputClosed,
}

/// Any failure of the crates below (broker, registry, TLS files, the
/// history index, the listener, …) is a failure of the command (exit 1),
/// reported as the error says it.
macro_rules! failed_from {
    ($($t:ty),*) => {$(
        impl From<$t> for CommandError {
            fn from(e: $t) -> Self {
                CommandError::Failed(e.to_string())
            }
        }
    )*};
}
failed_from!(
    sundial_amqp::Error,
    sundial_scheduler::Error,
    sundial_worker::Error,
    sundial_web::Error,
    reqwest::Error
);

impl CommandError {
    /// A failed write of the command's own output: a closed pipe ends the
    /// command quietly, anything else is an error naming it.
    pub fn output(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CommandError::OutputClosed
        } else {
            CommandError::Failed(format!("cannot write output: {e}"))
        }
    }
}

/// A multi-thread tokio runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(format!("cannot start the tokio runtime: {e}")))
}

/// An actix System over a multi-thread tokio runtime, for the commands
/// that host actors (on actix's default current-thread runtime lapin's I/O
/// is starved).
pub(crate) fn actix_system() -> Result<actix::SystemRunner, CommandError> {
    let rt = runtime()?;
    Ok(actix::System::with_tokio_rt(move || rt))
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_) => 2,
            CommandError::Failed(_) => 1,
            CommandError::OutputClosed => 0,
        }
    }
}
