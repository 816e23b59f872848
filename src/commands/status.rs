//! `sundial status [--json]`: scheduler nodes, workers, shard owners and
//! watermark lag, pools.

use std::{io::Write, time::Duration};

use sundial_core::settings::Settings;

use super::CommandError;
use crate::table::Rows;

/// `amqp://user:****@host:5672/vhost?…` → `host:5672`: which node.
fn broker_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

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
    let conn = sundial_amqp::broker::connect_to(&settings.broker, "sundial status").await?;
    let probe = sundial_amqp::broker::Probe::new(settings.broker.clone(), "sundial status probes");
    let status = sundial_amqp::status::gather(&conn, &probe, &settings.topology, listen)
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
    probe.close().await;
    let _ = conn.close(200, "done".into()).await;
    let io = CommandError::output;
    if json {
        let text = serde_json::to_string_pretty(&status).map_err(failed)?;
        writeln!(out, "{text}").map_err(io)?;
        return Ok(());
    }
    writeln!(out, "scheduler nodes: {}", status.nodes.len()).map_err(io)?;
    let mut nodes = Rows::new(
        &[
            "NODE",
            "SHARDS",
            "HEARTBEAT",
            "UP SINCE",
            "VERSION",
            "SET ASIDE",
            "BROKER",
        ],
        &[1, 2, 5],
    );
    for n in &status.nodes {
        nodes.push([
            n.node.clone(),
            n.owned.len().to_string(),
            format!("{} ms ago", n.last_heartbeat_ms),
            sundial_core::protocol::timestamp(n.started_at),
            format!("v{}", n.version),
            n.unroutable.to_string(),
            n.broker.as_deref().map_or_else(|| "-".into(), broker_host),
        ]);
    }
    if !status.nodes.is_empty() {
        write!(out, "{}", nodes.render("  ")).map_err(io)?;
    }
    for n in status.nodes.iter().filter(|n| n.unroutable > 0) {
        writeln!(
            out,
            "  {}: {} unroutable fires set aside (dead-lettered); last: {}",
            n.node,
            n.unroutable,
            n.unroutable_last.as_deref().unwrap_or("?")
        )
        .map_err(io)?;
    }
    let routes: Vec<_> = status
        .nodes
        .iter()
        .flat_map(|n| n.alert_routes.iter().map(move |r| (n, r)))
        .collect();
    if !routes.is_empty() {
        writeln!(out, "alert routes:").map_err(io)?;
        let mut rows = Rows::new(
            &["ROUTE", "NODE", "SENT", "GAVE UP", "LAST", "STATE"],
            &[2, 3],
        );
        for (n, r) in routes {
            let state = if r.failing == 0 {
                "ok".to_string()
            } else {
                format!(
                    "FAILING ({} in a row): {}",
                    r.failing,
                    r.last_error.as_deref().unwrap_or("?")
                )
            };
            rows.push([
                r.route.clone(),
                n.node.clone(),
                r.sent.to_string(),
                r.gave_up.to_string(),
                sundial_core::protocol::timestamp(r.last_at),
                state,
            ]);
        }
        write!(out, "{}", rows.render("  ")).map_err(io)?;
    }
    writeln!(out, "workers: {}", status.workers.len()).map_err(io)?;
    let mut workers = Rows::new(
        &[
            "WORKER",
            "POOL",
            "RUNNING",
            "HEARTBEAT",
            "UP SINCE",
            "VERSION",
            "BROKER",
        ],
        &[2, 3],
    );
    for w in &status.workers {
        workers.push([
            w.worker.clone(),
            w.pool.clone(),
            format!("{}/{}", w.running, w.concurrency),
            format!("{} ms ago", w.last_heartbeat_ms),
            sundial_core::protocol::timestamp(w.started_at),
            format!("v{}", w.version),
            w.broker.as_deref().map_or_else(|| "-".into(), broker_host),
        ]);
    }
    if !status.workers.is_empty() {
        write!(out, "{}", workers.render("  ")).map_err(io)?;
    }
    let unowned = status.shards.iter().filter(|s| s.owner.is_none()).count();
    writeln!(
        out,
        "timer shards: {} ({} unowned)",
        status.shards.len(),
        unowned
    )
    .map_err(io)?;
    let mut shards = Rows::new(&["SHARD", "OWNER", "EPOCH", "WATERMARK LAG"], &[0, 2, 3]);
    for s in &status.shards {
        shards.push([
            s.shard.to_string(),
            s.owner.clone().unwrap_or_else(|| "-".into()),
            s.epoch.map_or_else(|| "-".into(), |e| e.to_string()),
            s.lag_ms
                .map_or_else(|| "never fired".to_string(), |l| format!("{l} ms")),
        ]);
    }
    write!(out, "{}", shards.render("  ")).map_err(io)?;
    writeln!(out, "pools:").map_err(io)?;
    let mut pools = Rows::new(
        &["POOL", "QUEUED", "WORKERS", "DEAD LETTERS", "NOTE"],
        &[1, 2, 3],
    );
    for p in &status.pools {
        let note = if p.missing_queues > 0 {
            format!("{} queues not declared", p.missing_queues)
        } else {
            String::new()
        };
        pools.push([
            p.pool.clone(),
            p.queued.to_string(),
            p.workers.to_string(),
            p.dead.to_string(),
            note,
        ]);
    }
    write!(out, "{}", pools.render("  ")).map_err(io)?;
    Ok(())
}
