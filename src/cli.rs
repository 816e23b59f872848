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
    /// Address of /metrics, /healthz and /readyz, e.g. 127.0.0.1:9798 (http.listen).
    #[arg(long, global = true, value_name = "ADDR")]
    pub http: Option<String>,
    /// Log format: text or json (log.format).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// `sundial worker --pool` (worker.pool): set by `main` from the
    /// subcommand, so settings validation checks it like any other source.
    #[arg(skip)]
    pub worker_pool: Option<String>,
    /// `sundial worker --concurrency` (worker.concurrency), likewise.
    #[arg(skip)]
    pub worker_concurrency: Option<u32>,
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
    /// Run the scheduler: fire every job's occurrences onto RabbitMQ.
    Scheduler(SchedulerArgs),
    /// Manage jobs through the control queue (a scheduler must be running).
    #[command(subcommand)]
    Job(JobCmd),
    /// Run a worker: consume a pool's fires and run the jobs.
    Worker(WorkerArgs),
    /// Run a scheduler and a worker in one process (small installs, trying it out).
    Run(RunArgs),
    /// Compare the fire ids due in a window with the runs recorded: watch
    /// the next one (`--for 60s`) or check a past one (`--from`, `--to`);
    /// report missing, duplicated and unexpected fire ids (exit 1 when any
    /// is missing).
    Ledger {
        /// How long to watch from now, e.g. 60s.
        #[arg(long = "for", value_name = "DURATION", default_value = "60s", conflicts_with_all = ["from", "to"])]
        window: humantime::Duration,
        /// Start of a past window: an RFC 3339 instant or a duration ago (2h).
        #[arg(long, value_name = "TIME", requires = "to")]
        from: Option<String>,
        /// End of a past window: an RFC 3339 instant or a duration ago (0s = now).
        #[arg(long, value_name = "TIME", requires = "from")]
        to: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Alerts raised on failed, late and missed occurrences (and their
    /// resolutions), from the history stream.
    Alerts {
        /// From when: an RFC 3339 instant or a duration ago (2h).
        #[arg(long, value_name = "TIME", default_value = "24h")]
        since: String,
        /// Only alerts not resolved yet.
        #[arg(long)]
        open: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Runs from the history, newest last: filter by time, outcome, job,
    /// pool and label (asks the HTTP API of a scheduler, http.api).
    Runs(RunsArgs),
    /// Inspect, replay and purge dead letters.
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// Print a shell completion script: `source <(sundial completions bash)`,
    /// or save it where your shell loads completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Scheduler nodes, who holds each timer shard and its watermark lag,
    /// and per pool the queued fires, workers and dead letters.
    Status {
        /// How long to listen for scheduler heartbeats (default: two
        /// heartbeat intervals).
        #[arg(long, value_name = "DURATION")]
        listen: Option<humantime::Duration>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Options of the history commands.
#[derive(Debug, Args, Clone)]
pub struct HistoryArgs {
    /// The API to ask, e.g. http://127.0.0.1:9797 (http.api).
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
    /// Print JSON (one page, with `next` to continue).
    #[arg(long)]
    pub json: bool,
    /// Print each run's output under it.
    #[arg(long)]
    pub output: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub cmd: Option<RunsCmd>,
    /// Runs since: a duration ago (1h) or an RFC 3339 instant.
    #[arg(long, default_value = "1h", value_name = "TIME")]
    pub since: String,
    /// Runs before: a duration ago or an RFC 3339 instant.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// running, succeeded, failed, dead or skipped.
    #[arg(long, value_name = "OUTCOME")]
    pub outcome: Option<String>,
    /// Jobs whose id starts with this.
    #[arg(long, value_name = "PREFIX")]
    pub job: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// Runs on this worker (its id, as `sundial status` lists it).
    #[arg(long, value_name = "ID")]
    pub worker: Option<String>,
    /// Jobs with this label.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Option<String>,
    /// How many runs (the newest).
    #[arg(short = 'n', default_value_t = 50, value_name = "N")]
    pub count: usize,
    /// Continue from a previous page's `next` (with --json).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub history: HistoryArgs,
}

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// One fire's runs: every attempt, and for a workflow occurrence every
    /// step and shard with its outcome, duration, worker and reason.
    Show {
        /// A fire id (`job@2026-12-05T03:00:00.000Z`, or a step's).
        fire_id: String,
        #[command(flatten)]
        history: HistoryArgs,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A jobs file (TOML or JSON) to apply at start.
    #[arg(long, value_name = "FILE")]
    pub jobs: Option<PathBuf>,
    /// This node's name (default: hostname-pid).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The pool to consume (worker.pool).
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// Runs at once, and the prefetch per shard queue (worker.concurrency).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// This worker's id in events, dead letters and its own queue
    /// (`[A-Za-z0-9._-]{1,64}`; default: hostname-pid).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

/// Options of every `dlq` subcommand.
#[derive(Debug, Args, Clone)]
pub struct DlqArgs {
    /// The pool whose dead-letter queue to read (default: worker.pool).
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// List dead letters: fire id, job, attempts, last error, age.
    List {
        /// Only this job's dead letters.
        #[arg(long, value_name = "ID")]
        job: Option<String>,
        #[command(flatten)]
        dlq: DlqArgs,
    },
    /// Show one dead letter: headers and payload.
    Show {
        fire_id: String,
        #[command(flatten)]
        dlq: DlqArgs,
    },
    /// Send dead letters back to their work queue with attempts reset.
    Replay {
        /// Every dead letter of this job.
        #[arg(long, value_name = "ID", conflicts_with = "fire_ids")]
        job: Option<String>,
        /// These fire ids.
        #[arg(value_name = "FIRE_ID", required_unless_present = "job")]
        fire_ids: Vec<String>,
        /// Send them with this payload (JSON) instead of their own.
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
        #[command(flatten)]
        asked: AskedArgs,
        #[command(flatten)]
        dlq: DlqArgs,
    },
    /// Delete dead letters (all, or one job's).
    Purge {
        #[arg(long, value_name = "ID")]
        job: Option<String>,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        asked: AskedArgs,
        #[command(flatten)]
        dlq: DlqArgs,
    },
    /// Print new dead letters as they arrive, with their reasons.
    Watch {
        #[command(flatten)]
        dlq: DlqArgs,
    },
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// This node's name in logs and watermarks (default: hostname-pid).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

/// Why, and who asks: recorded in the audit trail (every write) and in
/// the history (trigger, cancel, replay).
#[derive(Debug, Clone, clap::Args)]
pub struct AskedArgs {
    /// Why, recorded with who asked.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Who asks (default: the OS user, $USER).
    #[arg(long = "as", value_name = "NAME")]
    pub by: Option<String>,
}

impl AskedArgs {
    /// Who asks: `--as`, else `$USER`, else nobody named.
    pub fn by(&self) -> Option<String> {
        self.by
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|b| !b.is_empty())
    }
}

/// Options of every `job` subcommand.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// How long to wait for the scheduler's reply.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: humantime::Duration,
    /// Print the reply as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Create or update the jobs of a TOML or JSON file.
    Apply {
        /// The job file (`.json` is JSON, anything else TOML).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: std::path::PathBuf,
        /// Also delete every job that is not in the file.
        #[arg(long)]
        prune: bool,
        /// Show what would change (create, update, unchanged, delete); change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        asked: AskedArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a job's next occurrences, in its time zone.
    Next {
        id: String,
        /// How many occurrences.
        #[arg(short = 'n', default_value_t = 5, value_name = "N")]
        count: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List jobs, optionally only those with every given label.
    List {
        /// A label filter `key=value`; repeat for several.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one job.
    Get {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a job (its history and audit trail stay).
    Delete {
        id: String,
        #[command(flatten)]
        asked: AskedArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pause a job: it fires nothing until resumed. The reason and who
    /// paused are shown by `job get`, `job list` and the dashboard.
    Pause {
        id: String,
        #[command(flatten)]
        asked: AskedArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume a paused job; its misfire policy decides about the pause.
    Resume {
        id: String,
        #[command(flatten)]
        asked: AskedArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Fire a job now, outside its schedule.
    Trigger {
        id: String,
        /// Run this occurrence with this payload (JSON) instead of the job's.
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
        #[command(flatten)]
        asked: AskedArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a running workflow occurrence (JOB@INSTANT): its steps not
    /// yet started never start, its running ones are asked to stop, and it
    /// ends `cancelled` in the history with the reason and who asked.
    Cancel {
        /// The occurrence's fire id, as `sundial runs` shows it.
        fire_id: String,
        #[command(flatten)]
        asked: AskedArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Fire every occurrence of a past window [FROM, TO) now, each with its
    /// own fire id (ID@backfill:OCCURRENCE).
    Backfill {
        id: String,
        /// Start of the window: a duration ago (`6h`) or an RFC 3339 instant.
        #[arg(long)]
        from: String,
        /// End of the window (not included); at most now.
        #[arg(long)]
        to: String,
        /// allow (fire all), forbid (the first only) or replace (the last
        /// only); default: the job's overlap policy.
        #[arg(long)]
        overlap: Option<String>,
        /// Only count the occurrences it would fire; fire nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        asked: AskedArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A job's last runs, oldest first, with outcome, duration and reason,
    /// and its summary (asks the HTTP API of a scheduler, http.api).
    History {
        id: String,
        /// How many runs (the newest).
        #[arg(short = 'n', default_value_t = 20, value_name = "N")]
        count: usize,
        #[command(flatten)]
        history: HistoryArgs,
    },
    /// Who did what to a job, newest last: every upsert, pause, resume,
    /// trigger, backfill, delete, replay and purge, with who, when and why
    /// (asks the HTTP API of a scheduler, http.api).
    Log {
        id: String,
        /// How many entries (the newest).
        #[arg(short = 'n', default_value_t = 20, value_name = "N")]
        count: usize,
        #[command(flatten)]
        history: HistoryArgs,
    },
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
