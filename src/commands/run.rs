//! `sundial run`: a scheduler and a worker for the default pool in one
//! process, for small installs and for trying Sundial out. Applies a jobs
//! file at start and prints one line per fire and per run outcome.

use std::{io::Write, time::Duration};

use chrono::SecondsFormat;
use sundial_core::{
    protocol::run::{RunEvent, RunKind},
    settings::{mask_url_password, Settings},
};
use sundial_scheduler::{self as scheduler, SchedulerConfig};
use sundial_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{scheduler::cancel_on_signal, CommandError};
use crate::cli::{ClientArgs, JobCmd, RunArgs};

/// How long `run` waits for its own scheduler to accept the jobs file.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(settings: Settings, args: &RunArgs) -> Result<(), CommandError> {
    let node = args
        .node
        .clone()
        .unwrap_or_else(super::scheduler::default_node_name);
    let mut scheduler_cfg = SchedulerConfig::from_settings(&settings, node.clone());
    scheduler_cfg.alert_senders = crate::wiring::alert_senders(&scheduler_cfg.alert_routes);
    let mut worker_cfg = WorkerConfig::from_settings(&settings, node);
    // One endpoint for both halves: ready when both are.
    worker_cfg.health = scheduler_cfg.health.clone();
    let system = super::actix_system()?;
    system.block_on(async move {
        // Signals first: a SIGTERM during start-up ends the run with status 0.
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        // Say plainly when there is no broker, instead of retrying forever.
        let probe = sundial_amqp::broker::connect_to(&settings.broker, "sundial run probe");
        let probe = tokio::select! {
            p = probe => p,
            () = shutdown.cancelled() => return Ok(()),
        };
        let probe = probe
            .map_err(|e| {
                CommandError::Failed(format!(
                    "cannot reach RabbitMQ at {} ({}); start one with `rabbitmq-server -detached` (Debian: apt-get install rabbitmq-server) or `docker run -d -p 5672:5672 rabbitmq:3`, or point --broker at yours",
                    mask_url_password(&settings.broker.url),
                    source_text(&e)
                ))
            })?;
        // Declared before the jobs file is sent (the scheduler would too,
        // but the control exchange must exist before the first command).
        let declared =
            sundial_amqp::topology::apply(&probe, &settings.topology.declarations()).await;
        let _ = probe.close(200, "probe".into()).await;
        declared?;

        scheduler_cfg.history = sundial_store::open(&settings.history, &scheduler_cfg.health);
        let api = sundial_web::api::Api::new(sundial_web::api::ApiConfig::from_settings(
            &settings,
            &scheduler_cfg.node,
            scheduler_cfg.history.clone(),
        ));
        api.set_registry(Some(std::sync::Arc::new(crate::wiring::SchedulerJobs(scheduler_cfg.reads.clone()))));
        super::ops::start_http(&settings, sundial_core::settings::Role::Scheduler, scheduler_cfg.health.clone(), Some(api), shutdown.clone()).await?;
        let watcher = {
            let pools = vec![settings.worker.pool.clone()];
            crate::dlq_watch::DlqWatcher::new(super::worker::watch_config(&settings, pools))?
                .spawn()
        };
        let printer = tokio::spawn(print_events(settings.clone(), shutdown.clone()));
        // On this thread: the scheduler starts actix arbiters, which need
        // the System that `block_on` runs.
        // Either half giving up stops the other: the process exits non-zero.
        fn stop_all<E>(r: Result<(), E>, token: CancellationToken) -> Result<(), CommandError>
        where
            CommandError: From<E>,
        {
            if r.is_err() {
                token.cancel();
            }
            Ok(r?)
        }
        let scheduler = {
            let token = shutdown.clone();
            actix::spawn(async move { stop_all(scheduler::run(scheduler_cfg, token.clone()).await, token) })
        };
        let worker = {
            let token = shutdown.clone();
            let w = Worker::builder(worker_cfg).build();
            tokio::spawn(async move { stop_all(w.run(token.clone()).await, token) })
        };

        if let Some(file) = &args.jobs {
            let apply = JobCmd::Apply {
                file: file.clone(),
                prune: false,
                dry_run: false,
                asked: crate::cli::AskedArgs {
                    reason: Some(format!("sundial run --jobs {}", file.display())),
                    by: None,
                },
                client: ClientArgs {
                    timeout: APPLY_TIMEOUT.into(),
                    json: false,
                },
            };
            let mut out = std::io::stdout();
            if let Err(e) = super::job::run(&settings, &apply, &mut out).await {
                shutdown.cancel();
                let _ = tokio::join!(scheduler, worker, printer);
                watcher.stop().await;
                return Err(e);
            }
        }
        let (s, w, _) = tokio::join!(scheduler, worker, printer);
        watcher.stop().await;
        for r in [s, w] {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(CommandError::Failed(format!("task failed: {e}"))),
            }
        }
        Ok(())
    })
}

fn source_text(e: &sundial_amqp::Error) -> String {
    use std::error::Error as _;
    e.source()
        .map_or_else(|| e.to_string(), ToString::to_string)
}

/// Prints every run event: time, job, fire id, outcome, duration.
async fn print_events(settings: Settings, stop: CancellationToken) {
    if let Err(e) = print_events_inner(&settings, &stop).await {
        warn!(error = %e, "run events are not printed");
    }
}

async fn print_events_inner(
    settings: &Settings,
    stop: &CancellationToken,
) -> Result<(), sundial_amqp::Error> {
    // The topology was declared before this task started.
    let conn = sundial_amqp::broker::connect_to(&settings.broker, "sundial run events").await?;
    // Every run record, from the history stream (batched by the worker).
    let mut reader = sundial_amqp::history::Reader::open(
        &conn,
        &settings.topology.history_stream(),
        sundial_amqp::history::StreamStart::Next,
        100,
    )
    .await?;
    let mut out = std::io::stdout();
    loop {
        let m = tokio::select! {
            () = stop.cancelled() => break,
            m = reader.next() => m,
        };
        let Ok(Some(m)) = m else { break };
        let Ok(batch) = m.batch else {
            continue;
        };
        let closed = batch.records.iter().any(|ev| {
            let written = writeln!(out, "{}", line(ev));
            written.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if closed {
            // Nobody reads what this process is for (`sundial run | head`):
            // stop, as any command whose output is closed.
            stop.cancel();
            break;
        }
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// `2026-11-27T19:40:50Z  hello  hello@2026-11-27T19:40:50Z  succeeded  3ms`
fn line(ev: &RunEvent) -> String {
    let mut s = format!(
        "{}  {:<20}  {:<44}  {:<9}",
        ev.at.to_rfc3339_opts(SecondsFormat::Secs, true),
        ev.job_id,
        ev.fire_id,
        ev.kind.as_str()
    );
    if ev.attempt > 1 || matches!(ev.kind, RunKind::Retrying | RunKind::Dead) {
        s.push_str(&format!("  attempt {}", ev.attempt));
    }
    if let Some(ms) = ev.duration_ms {
        s.push_str(&format!("  {ms}ms"));
    }
    if let Some(r) = &ev.reason {
        s.push_str(&format!("  {r}"));
    }
    s.trim_end().to_string()
}
