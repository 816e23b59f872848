//! The subcommands. Each returns `Result<(), CommandError>`; `main` maps the
//! error to an exit code (2 for bad input, 1 for everything else).

pub mod config_show;
pub mod dlq;
pub mod job;
pub mod ledger;
mod ops;
pub mod run;
pub mod schedule_next;
pub mod scheduler;
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
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_) => 2,
            CommandError::Failed(_) => 1,
        }
    }
}
