//! Cancel requests for running attempts (sent by the scheduler for overlap
//! `replace`, or by anyone for any job): a private queue bound to
//! `sundial.cancel` with this worker's id.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::Connection;
use sundial_core::{codec::decode, protocol::run::CancelRun, topology::Topology};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::attempt::Shared;
use sundial_amqp::broker::meta_of;

use crate::error::Error;

/// Binds the queue, then listens in a task until `stop`.
pub(super) async fn listen(
    conn: &Connection,
    topo: &Topology,
    worker: &str,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, Error> {
    let (ch, mut requests) =
        sundial_amqp::broker::subscribe(conn, &topo.cancel_exchange(), &[worker]).await?;
    Ok(tokio::spawn(async move {
        loop {
            let d = tokio::select! {
                () = stop.cancelled() => break,
                d = requests.next() => d,
            };
            let Some(Ok(d)) = d else { break };
            match decode::<CancelRun>(&meta_of(&d.properties), &d.data) {
                Ok(req) => {
                    let found = shared.cancel(&req.fire_id, &req.reason);
                    info!(job_id = %req.job_id, fire_id = %req.fire_id, found, reason = %req.reason, "cancel request");
                }
                Err(e) => warn!(error = %e, "cancel request not understood; ignored"),
            }
        }
        let _ = ch.close(200, "worker stopping".into()).await;
    }))
}
