//! `sundial`: parse the command line, load settings, set up tracing, run.

/// mimalloc instead of the system allocator: a scheduler holding a million
/// jobs churns through many small allocations on several threads, and glibc
/// malloc kept the freed memory resident (ADR 0010).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;
use sundial::{
    cli::{Cli, Command, ConfigCmd, ScheduleCmd, TopologyCmd},
    commands::{self, CommandError},
    load, logging,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CommandError::OutputClosed) => ExitCode::from(CommandError::OutputClosed.exit_code()),
        Err(e) => {
            // One line on stderr, naming what is wrong. Not `eprintln!`: it
            // panics when stderr is a closed pipe.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CommandError> {
    // Not locked for the whole run: `sundial run` prints from other threads.
    let mut stdout = std::io::stdout();
    if let Command::Schedule(ScheduleCmd::Next(args)) = &cli.command {
        // A pure computation: needs no settings and no broker.
        return commands::schedule_next::run(args, chrono::Utc::now(), &mut stdout);
    }
    let mut flags = cli.global.clone();
    if let Command::Worker(w) = &cli.command {
        flags.worker_pool = w.pool.clone();
        flags.worker_concurrency = w.concurrency;
    }
    let (raw, settings) = load::load(&flags).map_err(|e| CommandError::Usage(e.to_string()))?;
    let mode = match cli.command {
        Command::Scheduler(_) | Command::Worker(_) | Command::Run(_) => logging::Mode::Service,
        _ => logging::Mode::Command,
    };
    logging::init(&settings.log, mode);
    if !matches!(cli.command, Command::Config(_)) {
        // Unreadable TLS files are a settings error: one line, exit 2, before
        // any process starts retrying connections.
        sundial_actors::broker::check_tls(&settings.broker)
            .map_err(|e| CommandError::Usage(e.to_string()))?;
    }
    match cli.command {
        Command::Schedule(_) => Ok(()),
        Command::Config(ConfigCmd::Show) => commands::config_show::run(&raw, &mut stdout),
        Command::Topology(TopologyCmd::Apply) => {
            commands::runtime()?.block_on(commands::topology_apply::run(&settings, &mut stdout))
        }
        Command::Job(cmd) => {
            commands::runtime()?.block_on(commands::job::run(&settings, &cmd, &mut stdout))
        }
        Command::Scheduler(args) => commands::scheduler::run(&settings, args.node),
        Command::Worker(args) => commands::worker::run(settings, &args),
        Command::Run(args) => commands::run::run(settings, &args),
        Command::Ledger { window, json } => commands::runtime()?.block_on(commands::ledger::run(
            &settings,
            window.into(),
            json,
            &mut stdout,
        )),
        Command::Status { listen, json } => commands::runtime()?.block_on(commands::status::run(
            &settings,
            listen.map(Into::into),
            json,
            &mut stdout,
        )),
        Command::Dlq(cmd) => {
            commands::runtime()?.block_on(commands::dlq::run(&settings, &cmd, &mut stdout))
        }
    }
}
