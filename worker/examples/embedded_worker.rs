//! A worker embedded in your own binary, with Rust handlers.
//!
//! ```sh
//! cargo run -p sundial-worker --example embedded_worker   # consumes pool "default"
//! # in another shell: a scheduler, and a job that runs the handler
//! sundial scheduler &
//! cat > reports.toml <<'TOML'
//! [[jobs]]
//! id = "daily-report"
//! schedule = "*/5 * * * * *"
//! payload = { team = "ops" }
//! [jobs.executor]
//! type = "handler"
//! name = "reports.daily"
//! TOML
//! sundial job apply -f reports.toml
//! ```
//!
//! Each handler returns `Ok(())`, `Err(JobError::Retry { after, .. })` (the
//! worker republishes to the matching retry tier) or `Err(JobError::Abort(..))`
//! (straight to the dead-letter queue). Settings come from the same
//! `SUNDIAL__…` environment variables as the `sundial` binary; here only the
//! broker URL is read.

use std::time::Duration;

use sundial_core::{settings::RawSettings, settings::Settings};
use sundial_worker::{JobError, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut raw = RawSettings::default();
    if let Ok(url) = std::env::var("SUNDIAL__BROKER__URL") {
        raw.broker.url = url;
    }
    let settings = Settings::try_from(raw)?;
    let cfg = WorkerConfig::from_settings(&settings, format!("example-{}", std::process::id()));

    let worker = Worker::builder(cfg)
        .handler("reports.daily", |ctx, payload| async move {
            tracing::info!(fire_id = %ctx.fire_id, attempt = ctx.attempt, %payload, "building the daily report");
            match payload.get("team").and_then(|t| t.as_str()) {
                // Bad input will not get better by retrying.
                None => Err(JobError::Abort("payload.team is missing".into())),
                // A transient failure: try again in a minute (rounded up to a tier).
                Some("flaky") if ctx.attempt < 2 => Err(JobError::Retry {
                    after: Some(Duration::from_secs(60)),
                    reason: "report service busy".into(),
                }),
                Some(_) => Ok(()),
            }
        })
        .build();

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    worker.run(shutdown).await?;
    Ok(())
}
