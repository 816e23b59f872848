//! `sundial`: parse the command line, load settings, set up tracing, run.

/// mimalloc instead of the system allocator: a scheduler holding a million
/// jobs churns through many small allocations on several threads, and glibc
/// malloc kept the freed memory resident (ADR 0010).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use sundial::{
    cli::{Cli, Command, ConfigCmd, ScheduleCmd, TopologyCmd},
    commands::{self, CommandError},
    load, logging,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
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

/// `--help` and `--version` as clap prints them (exit 0); a usage error as
/// one line on stderr (exit 2), clap's lines joined.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    use std::io::Write as _;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = write!(std::io::stdout(), "{}", e.render());
            return ExitCode::SUCCESS;
        }
        // `sundial job`: the subcommand's help, as the error it is.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = write!(std::io::stderr(), "{}", e.render());
            return ExitCode::from(2);
        }
        _ => {}
    }
    let text = e.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "{} (see sundial --help)",
        line.join("; ")
    );
    ExitCode::from(2)
}

fn run(cli: Cli) -> Result<(), CommandError> {
    // Not locked for the whole run: `sundial run` prints from other threads.
    let mut stdout = std::io::stdout();
    if let Command::Completions { shell } = &cli.command {
        // Needs no settings either. Written whole, so a closed pipe is an
        // error we map, not a panic inside clap_complete.
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut Cli::command(), "sundial", &mut script);
        return std::io::Write::write_all(&mut stdout, &script).map_err(CommandError::output);
    }
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
        sundial_amqp::broker::check_tls(&settings.broker)
            .map_err(|e| CommandError::Usage(e.to_string()))?;
    }
    match cli.command {
        Command::Schedule(_) | Command::Completions { .. } => Ok(()),
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
        Command::Ledger {
            window,
            from,
            to,
            json,
        } => {
            let window = match (from, to) {
                (Some(from), Some(to)) => commands::ledger::Window::Past {
                    from: commands::history::instant("--from", &from)?,
                    to: commands::history::instant("--to", &to)?,
                },
                _ => commands::ledger::Window::Next(window.into()),
            };
            commands::runtime()?.block_on(commands::ledger::run(
                &settings,
                window,
                json,
                &mut stdout,
            ))
        }
        Command::Alerts { since, open, json } => {
            let since = commands::history::instant("--since", &since)?;
            commands::runtime()?.block_on(commands::alerts::run(
                &settings,
                since,
                open,
                json,
                &mut stdout,
            ))
        }
        Command::Runs(args) => {
            commands::runtime()?.block_on(commands::history::runs(&settings, &args, &mut stdout))
        }
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
