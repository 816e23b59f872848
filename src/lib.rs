//! The `sundial` binary's library: command-line definitions, settings
//! loading and the commands, wired to the workspace crates (ADR 0019).
//! `main.rs` only parses, loads, sets up tracing and dispatches.
//!
//! # Layout
//!
//! | module       | responsibility |
//! |--------------|----------------|
//! | [`cli`]      | clap definitions of every subcommand and global flag |
//! | [`load`]     | defaults < `sundial.toml` < `SUNDIAL__SECTION__KEY` < flags, via the `config` crate |
//! | [`commands`] | every subcommand: `scheduler`, `worker`, `run`, `job`, `dlq`, `status`, `ledger`, `runs` and `job history` (`commands::history`), `schedule next`, `topology apply`, `config show`, `completions` |
//! | [`dlq_watch`] | `DlqWatcher`: dead-letter depth gauge, growth warnings, the webhook alert (worker and `run`) |
//! | [`logging`]  | tracing subscriber (text or JSON, to stderr); lapin's own lines off |
//! | [`table`]    | aligned tables for people (comfy-table) |
//! | [`wiring`]   | `SchedulerJobs`: the web application's job reads, answered by the scheduler's registry |
//! | [`progress`] | progress bars on a terminal, nothing when piped (indicatif) |

pub mod cli;
pub mod commands;
pub mod dlq_watch;
pub mod load;
pub mod logging;
pub mod progress;
pub mod table;
pub mod wiring;
