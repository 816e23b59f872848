//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Sundial: a distributed cron and job runner on RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "sundial", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts; they override file and environment.
#[derive(Debug, Args, Default, Clone)]
pub struct GlobalFlags {
    /// Settings file (default: ./sundial.toml if it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f (broker.url).
    #[arg(long, global = true, value_name = "URL")]
    pub broker: Option<String>,
    /// Name prefix of every exchange and queue (topology.prefix).
    #[arg(long, global = true, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Log format: text or json (log.format).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preview schedules.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Manage RabbitMQ exchanges and queues.
    #[command(subcommand)]
    Topology(TopologyCmd),
    /// Inspect settings.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Print the next occurrences of a schedule expression, one RFC 3339
    /// instant per line with the zone's UTC offset.
    Next(ScheduleNext),
}

#[derive(Debug, Args)]
pub struct ScheduleNext {
    /// Cron expression, "@every <duration>" or "@at <RFC 3339>".
    pub expr: String,
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC", value_name = "ZONE")]
    pub tz: String,
    /// Start after this instant (RFC 3339; default: now). Also the @every anchor.
    #[arg(long, value_name = "RFC3339")]
    pub after: Option<String>,
    /// How many occurrences.
    #[arg(short = 'n', default_value_t = 5, value_name = "N")]
    pub count: usize,
    /// Print a JSON array of {"at", "utc", "note"} instead.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TopologyCmd {
    /// Declare every exchange, queue and binding (idempotent).
    Apply,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective settings as TOML, secrets masked.
    Show,
}
