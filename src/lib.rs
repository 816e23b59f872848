//! The `sundial` binary's library: command-line definitions, settings
//! loading and the commands, wired to `sundial-core` and `sundial-actors`.
//! `main.rs` only parses, loads, sets up tracing and dispatches.
//!
//! # Layout
//!
//! | module       | responsibility |
//! |--------------|----------------|
//! | [`cli`]      | clap definitions of every subcommand and global flag |
//! | [`load`]     | defaults < `sundial.toml` < `SUNDIAL__SECTION__KEY` < flags, via the `config` crate |
//! | [`commands`] | every subcommand: `scheduler`, `worker`, `run`, `job`, `dlq`, `status`, `ledger`, `runs` and `job history` (`commands::history`), `schedule next`, `topology apply`, `config show`, `completions` |
//! | [`logging`]  | tracing subscriber (text or JSON, to stderr); lapin's own lines off |
//! | [`table`]    | aligned tables for people (comfy-table) |
//! | [`progress`] | progress bars on a terminal, nothing when piped (indicatif) |

pub mod cli;
pub mod commands;
pub mod load;
pub mod logging;
pub mod progress;
pub mod table;
