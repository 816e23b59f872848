//! `sundial status [--json]`: nodes, shard owners and watermark lag, pools.

use std::{io::Write, time::Duration};

use sundial_core::settings::Settings;

use super::CommandError;

fn failed(e: impl ToString) -> CommandError {
    CommandError::Failed(e.to_string())
}

pub async fn run(
    settings: &Settings,
    listen: Option<Duration>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let listen =
        listen.unwrap_or(settings.scheduler.heartbeat_interval * 2 + Duration::from_millis(200));
    let conn = sundial_actors::broker::connect_to(&settings.broker, "sundial status")
        .await
        .map_err(failed)?;
    let status = sundial_actors::status::gather(&conn, &settings.topology, listen)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                failed(format!(
                    "no Sundial topology with prefix \"{}\" on this vhost ({e}): run `sundial topology apply`",
                    settings.topology.prefix
                ))
            } else {
                failed(e)
            }
        })?;
    let _ = conn.close(200, "done".into()).await;
    let io = CommandError::output;
    if json {
        let text = serde_json::to_string_pretty(&status).map_err(failed)?;
        writeln!(out, "{text}").map_err(io)?;
        return Ok(());
    }
    writeln!(out, "scheduler nodes: {}", status.nodes.len()).map_err(io)?;
    for n in &status.nodes {
        writeln!(
            out,
            "  {:<24} shards {:>3}  heartbeat {:>5} ms ago  up since {}  v{}",
            n.node,
            n.owned.len(),
            n.last_heartbeat_ms,
            sundial_core::protocol::timestamp(n.started_at),
            n.version
        )
        .map_err(io)?;
        if n.unroutable > 0 {
            writeln!(
                out,
                "    {} unroutable fires set aside (dead-lettered); last: {}",
                n.unroutable,
                n.unroutable_last.as_deref().unwrap_or("?")
            )
            .map_err(io)?;
        }
    }
    let unowned = status.shards.iter().filter(|s| s.owner.is_none()).count();
    writeln!(
        out,
        "timer shards: {} ({} unowned)",
        status.shards.len(),
        unowned
    )
    .map_err(io)?;
    for s in &status.shards {
        let lag = s
            .lag_ms
            .map_or_else(|| "never fired".to_string(), |l| format!("lag {l} ms"));
        writeln!(
            out,
            "  {:>4}  {:<24} epoch {:<5} {lag}",
            s.shard,
            s.owner.as_deref().unwrap_or("-"),
            s.epoch.map_or_else(|| "-".into(), |e| e.to_string()),
        )
        .map_err(io)?;
    }
    writeln!(out, "pools:").map_err(io)?;
    for p in &status.pools {
        write!(
            out,
            "  {:<16} queued {:>7}  workers {:>3}  dead letters {:>6}",
            p.pool, p.queued, p.workers, p.dead
        )
        .map_err(io)?;
        if p.missing_queues > 0 {
            write!(out, "  ({} queues not declared yet)", p.missing_queues).map_err(io)?;
        }
        writeln!(out).map_err(io)?;
    }
    Ok(())
}
