//! `DlqWatcher`: an actor that reads the depth of each pool's dead-letter
//! queue every `interval`, records it as the `sundial_dead_letters{pool}`
//! gauge, logs a warning when it grows and, if configured, POSTs a JSON
//! alert to a webhook.
//!
//! It probes through a [`Probe`] of its own (a pool's queue may not exist
//! yet, and a probe of a missing queue must not spoil a shared connection);
//! a watcher that cannot reach the broker logs, and keeps trying at the
//! next tick, it never stops the worker.

use std::{collections::HashMap, sync::Arc, time::Duration};

use actix::prelude::*;
use chrono::Utc;
use sundial_core::topology::Topology;
use tracing::{debug, warn};

use sundial_amqp::broker::Probe;
use sundial_runtime::metrics as m;

/// What the watcher needs.
#[derive(Debug, Clone)]
pub struct DlqWatchConfig {
    pub broker: sundial_core::settings::BrokerSettings,
    pub topology: Topology,
    /// Pools whose dead-letter queues are watched.
    pub pools: Vec<String>,
    pub interval: Duration,
    /// Receives `{"alert":"dead-letters-growing","pool",…}` when a queue grows.
    pub webhook: Option<String>,
}

pub struct DlqWatcher {
    cfg: Arc<DlqWatchConfig>,
    probe: Arc<Probe>,
    /// Depth seen at the previous check, by pool; growth is measured from it.
    last: HashMap<String, u32>,
    /// A check is running: the next tick skips instead of piling up.
    busy: bool,
    http: reqwest::Client,
    /// Dropped with the actor: tells [`WatcherHandle::stop`] it is gone.
    _gone: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A started watcher. Stop it with [`WatcherHandle::stop`] before its
/// System's runtime goes: an actor still alive when the runtime is dropped
/// is polled outside it and panics ("there is no reactor running").
pub struct WatcherHandle {
    addr: Addr<DlqWatcher>,
    gone: tokio::sync::oneshot::Receiver<()>,
}

impl WatcherHandle {
    /// Stops the watcher and waits until its state is dropped.
    pub async fn stop(self) {
        self.addr.do_send(StopWatcher);
        let _ = self.gone.await;
    }
}

/// Ends the watcher.
#[derive(Message)]
#[rtype(result = "()")]
struct StopWatcher;

impl Handler<StopWatcher> for DlqWatcher {
    type Result = ();

    fn handle(&mut self, _: StopWatcher, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl DlqWatcher {
    pub fn new(cfg: DlqWatchConfig) -> Result<Self, reqwest::Error> {
        let http = sundial_runtime::http_client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let probe = Arc::new(Probe::new(cfg.broker.clone(), "sundial dlq-watcher"));
        Ok(Self {
            cfg: Arc::new(cfg),
            probe,
            last: HashMap::new(),
            busy: false,
            http,
            _gone: None,
        })
    }

    /// Starts the watcher on the current System (call inside its runtime).
    pub fn spawn(mut self) -> WatcherHandle {
        let (tx, gone) = tokio::sync::oneshot::channel();
        self._gone = Some(tx);
        WatcherHandle {
            addr: self.start(),
            gone,
        }
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let cfg = self.cfg.clone();
        let probe = self.probe.clone();
        let fut = async move {
            let mut depths = Vec::with_capacity(cfg.pools.len());
            for pool in &cfg.pools {
                match probe
                    .passive_declare(&cfg.topology.dead_queue(pool))
                    .await?
                    .map(|(n, _)| n)
                {
                    Some(depth) => depths.push((pool.clone(), depth)),
                    // The worker declares it a moment after the first tick.
                    None => debug!(%pool, "dead-letter queue not declared yet"),
                }
            }
            Ok::<_, sundial_amqp::Error>(depths)
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            act.busy = false;
            match res {
                Ok(depths) => {
                    for (pool, depth) in depths {
                        act.observe(pool, depth);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "dead-letter depth not read; retrying next tick");
                }
            }
        }));
    }

    fn observe(&mut self, pool: String, depth: u32) {
        metrics::gauge!(m::DEAD_LETTERS, "pool" => pool.clone()).set(f64::from(depth));
        let previous = self.last.insert(pool.clone(), depth).unwrap_or(0);
        if depth <= previous {
            debug!(%pool, depth, "dead-letter queue depth");
            return;
        }
        let queue = self.cfg.topology.dead_queue(&pool);
        warn!(%pool, %queue, depth, previous, "dead-letter queue growing: `sundial dlq list --pool {pool}` shows why");
        if let Some(url) = self.cfg.webhook.clone() {
            let body = serde_json::json!({
                "alert": "dead-letters-growing",
                "pool": pool,
                "queue": queue,
                "depth": depth,
                "previous": previous,
                "at": sundial_core::protocol::timestamp(Utc::now()),
            });
            let http = self.http.clone();
            actix::spawn(async move {
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        warn!(url, status = %r.status(), "dead-letter alert webhook refused the alert")
                    }
                    Err(e) => warn!(url, error = %e, "dead-letter alert webhook unreachable"),
                }
            });
        }
    }
}

impl Actor for DlqWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.check(ctx);
        ctx.run_interval(self.cfg.interval, |act, ctx| act.check(ctx));
    }
}
