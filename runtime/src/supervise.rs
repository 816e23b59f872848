//! The restart decision shared by the scheduler's and the worker's
//! supervision loops (the root of their rest-for-one restarts: everything
//! that uses the connection restarts together). Restarts back off
//! exponentially with jitter; past the restart intensity the loop gives up
//! and the process exits non-zero, for systemd or Kubernetes to restart it.

use std::time::Instant;

use sundial_core::{restart::Intensity, settings::SupervisorSettings, HumanDuration};
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::GaveUp;

/// Restart state of one supervision loop.
pub struct Supervisor {
    what: &'static str,
    limits: SupervisorSettings,
    intensity: Intensity,
}

impl Supervisor {
    pub fn new(what: &'static str, limits: SupervisorSettings) -> Self {
        Self {
            what,
            limits,
            intensity: Intensity::new(limits.max_restarts, limits.within),
        }
    }

    /// After a failure: waits the backoff (cut short by `shutdown`) and
    /// returns `Ok(())` to restart, or `Err` when the intensity is exceeded.
    pub async fn restart(
        &mut self,
        failure: impl std::fmt::Display,
        shutdown: &CancellationToken,
    ) -> Result<(), GaveUp> {
        let last = failure.to_string();
        let delay = count_restart(self.what, self.limits, &mut self.intensity, 0, last)?;
        error!(actor = self.what, error = %failure, retry_in_ms = delay.as_millis() as u64,
            restarts = self.intensity.count(), "broker link down; reconnecting");
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
        Ok(())
    }
}

/// Held by a supervised actor and dropped with it, however it ends: it
/// stopped itself after an error or the end of a stream, it panicked in
/// `started`, a handler, a future or `stopping` (actix runs each actor as a
/// task; a panic ends the task and drops the actor), or its arbiter went
/// away. Dropping it tells the supervisor (actix's own `Supervisor` restarts
/// only actors that stop, never after a panic, and reuses their state).
pub struct Obituary {
    id: u64,
    tx: tokio::sync::mpsc::UnboundedSender<u64>,
}

impl Drop for Obituary {
    fn drop(&mut self) {
        let _ = self.tx.send(self.id);
    }
}

/// One-for-one supervision of a set of children keyed by `K` (the timer
/// shards of a scheduler): a child that ends unexpectedly is restarted
/// alone, after a backoff with jitter; more than the intensity allows and
/// the supervisor escalates (returns the error to its parent).
pub struct OneForOne<K> {
    what: &'static str,
    limits: SupervisorSettings,
    intensity: Intensity,
    next: u64,
    /// Live incarnations: id → key. An id not here (retired, or replaced)
    /// ends without a restart.
    live: std::collections::HashMap<u64, K>,
    tx: tokio::sync::mpsc::UnboundedSender<u64>,
}

/// Where obituaries arrive: ids for [`OneForOne::failed`].
pub type Obituaries = tokio::sync::mpsc::UnboundedReceiver<u64>;

impl<K: Clone + std::fmt::Debug> OneForOne<K> {
    pub fn new(what: &'static str, limits: SupervisorSettings) -> (Self, Obituaries) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sup = Self {
            what,
            limits,
            intensity: Intensity::new(limits.max_restarts, limits.within),
            next: 0,
            live: std::collections::HashMap::new(),
            tx,
        };
        (sup, rx)
    }

    /// A new incarnation of child `key`: give the obituary to the actor;
    /// keep the id to [`OneForOne::retire`] it.
    pub fn enlist(&mut self, key: K) -> (u64, Obituary) {
        self.next += 1;
        self.live.insert(self.next, key);
        (
            self.next,
            Obituary {
                id: self.next,
                tx: self.tx.clone(),
            },
        )
    }

    /// The child is being stopped on purpose: its end is not a failure.
    pub fn retire(&mut self, id: u64) {
        self.live.remove(&id);
    }

    /// The child whose obituary `id` arrived, if its end was unexpected
    /// (`None`: it was retired or already replaced).
    pub fn failed(&mut self, id: u64) -> Option<K> {
        self.live.remove(&id)
    }

    /// Counts a restart of `key`: `Ok(delay)` to restart after the delay,
    /// `Err` to escalate (the intensity is exceeded).
    pub fn restart(&mut self, key: &K) -> Result<std::time::Duration, GaveUp> {
        let last = format!("{key:?} stopped");
        let delay = count_restart(self.what, self.limits, &mut self.intensity, self.next, last)?;
        error!(actor = self.what, child = ?key, retry_in_ms = delay.as_millis() as u64,
            restarts = self.intensity.count(), "child stopped unexpectedly; restarting it alone");
        Ok(delay)
    }
}

/// Counts one restart of `what` against `intensity` (and in
/// `sundial_restarts_total`): the backoff to wait before it (jittered by the
/// process id and `salt`), or [`GaveUp`] with `last` when the
/// intensity is exceeded (the caller escalates).
fn count_restart(
    what: &'static str,
    limits: SupervisorSettings,
    intensity: &mut Intensity,
    salt: u64,
    last: String,
) -> Result<std::time::Duration, GaveUp> {
    metrics::counter!(crate::metrics::RESTARTS_TOTAL, "actor" => what).increment(1);
    if !intensity.restart(Instant::now()) {
        let within = HumanDuration(limits.within);
        error!(actor = what, restarts = intensity.count(), %within, last = %last,
            "restart intensity exceeded; escalating (at the root: exiting so the service manager restarts the process)");
        return Err(GaveUp {
            what,
            restarts: intensity.count(),
            within,
            last,
        });
    }
    let seed = u64::from(std::process::id()) ^ salt ^ intensity.count() as u64;
    Ok(Intensity::backoff(intensity.count(), seed))
}

#[cfg(test)]
mod tests {
    //! The supervision matrix: {error, panic, stream end, connection lost}
    //! × {starting, handling, stopping}, with toy actors that fail the way
    //! Sundial's actors can.

    use std::time::Duration;

    use actix::prelude::*;
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// Runs `f` (the body of an actor's `stopping` or `stopped`) and contains a
    /// panic in it: actix stops an actor again while unwinding, so a panic there
    /// would panic during cleanup and abort the whole process (found by the
    /// supervision matrix below). A contained panic is logged; the actor stops.
    fn contain_panic<T>(actor: &'static str, f: impl FnOnce() -> T) -> Option<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(v) => Some(v),
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                error!(actor, panic = %what, "panic while stopping; contained");
                None
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        Error,
        Panic,
        StreamEnd,
        ConnectionLost,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Phase {
        Starting,
        Handling,
        Stopping,
    }

    const FAULTS: [Fault; 4] = [
        Fault::Error,
        Fault::Panic,
        Fault::StreamEnd,
        Fault::ConnectionLost,
    ];

    struct Toy {
        fault: Option<(Fault, Phase)>,
        /// Stands for the broker connection: cancelled = lost.
        link: CancellationToken,
        _obituary: Obituary,
    }

    /// The "connection lost" notice, delivered as lapin delivers its events.
    struct Lost;

    impl Toy {
        fn fail(&mut self, fault: Fault, ctx: &mut Context<Self>) {
            match fault {
                // Actors fail by stopping.
                Fault::Error => ctx.stop(),
                Fault::Panic => panic!("toy actor panics (a test of supervision)"),
                // A consumer stream that ends: `finished` stops the actor.
                Fault::StreamEnd => {
                    ctx.add_stream(futures_util::stream::empty::<()>());
                }
                Fault::ConnectionLost => self.link.cancel(),
            }
        }
    }

    impl Actor for Toy {
        type Context = Context<Self>;

        fn started(&mut self, ctx: &mut Context<Self>) {
            let link = self.link.clone();
            ctx.add_stream(futures_util::stream::once(async move {
                link.cancelled().await;
                Lost
            }));
            if let Some((fault, Phase::Starting)) = self.fault {
                self.fail(fault, ctx);
            }
        }

        fn stopping(&mut self, ctx: &mut Context<Self>) -> Running {
            if let Some((fault, Phase::Stopping)) = self.fault {
                contain_panic("toy", || self.fail(fault, ctx));
            }
            Running::Stop
        }
    }

    impl StreamHandler<()> for Toy {
        fn handle(&mut self, (): (), _: &mut Context<Self>) {}
    }

    impl StreamHandler<Lost> for Toy {
        fn handle(&mut self, _: Lost, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Poke;

    impl Handler<Poke> for Toy {
        type Result = ();
        fn handle(&mut self, _: Poke, ctx: &mut Context<Self>) {
            if let Some((fault, Phase::Handling)) = self.fault {
                self.fail(fault, ctx);
            }
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Stop;

    impl Handler<Stop> for Toy {
        type Result = ();
        fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    fn limits(max_restarts: u32) -> SupervisorSettings {
        SupervisorSettings {
            max_restarts,
            within: Duration::from_secs(60),
        }
    }

    fn spawn(
        sup: &mut OneForOne<&'static str>,
        key: &'static str,
        fault: Option<(Fault, Phase)>,
    ) -> (u64, Addr<Toy>) {
        let (id, obituary) = sup.enlist(key);
        let addr = Toy {
            fault,
            link: CancellationToken::new(),
            _obituary: obituary,
        }
        .start();
        (id, addr)
    }

    /// The next unexpected end, if one comes within `within`.
    async fn failure(
        sup: &mut OneForOne<&'static str>,
        obits: &mut Obituaries,
        within: Duration,
    ) -> Option<&'static str> {
        tokio::time::timeout(within, async {
            loop {
                let id = obits.recv().await?;
                if let Some(k) = sup.failed(id) {
                    return Some(k);
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    #[actix::test]
    async fn a_child_that_fails_starting_or_handling_is_restarted_alone() {
        for phase in [Phase::Starting, Phase::Handling] {
            for fault in FAULTS {
                let (mut sup, mut obits) = OneForOne::new("toy", limits(10));
                let (_, bystander) = spawn(&mut sup, "bystander", None);
                let (_, child) = spawn(&mut sup, "child", Some((fault, phase)));
                if phase == Phase::Handling {
                    let _ = child.send(Poke).await;
                }
                assert_eq!(
                    failure(&mut sup, &mut obits, Duration::from_secs(2)).await,
                    Some("child"),
                    "{fault:?} while {phase:?}: the supervisor hears of it"
                );
                let delay = sup.restart(&"child").expect("within the intensity");
                assert!(delay <= sundial_core::restart::BACKOFF_MIN, "{delay:?}");
                let (_, again) = spawn(&mut sup, "child", None);
                again.send(Poke).await.expect("the restarted child answers");
                // One-for-one: the other child was not touched.
                bystander
                    .send(Poke)
                    .await
                    .unwrap_or_else(|e| panic!("{fault:?}/{phase:?}: bystander gone: {e}"));
            }
        }
    }

    #[actix::test]
    async fn a_child_that_fails_while_stopping_on_purpose_is_not_restarted() {
        for fault in FAULTS {
            let (mut sup, mut obits) = OneForOne::new("toy", limits(10));
            let (id, child) = spawn(&mut sup, "child", Some((fault, Phase::Stopping)));
            child.send(Poke).await.expect("alive before the stop");
            sup.retire(id);
            let _ = child.send(Stop).await;
            // The child ends (its obituary arrives), and its end is not
            // taken for a failure.
            let ended = tokio::time::timeout(Duration::from_secs(2), obits.recv())
                .await
                .unwrap_or_else(|_| panic!("{fault:?}: the child did not end"));
            assert_eq!(ended, Some(id), "{fault:?}: its own obituary");
            assert_eq!(
                sup.failed(id),
                None,
                "{fault:?} while stopping on purpose is not a failure"
            );
        }
    }

    #[actix::test]
    async fn past_the_intensity_the_supervisor_escalates() {
        let (mut sup, mut obits) = OneForOne::new("toy", limits(2));
        for n in 1..=3 {
            let (_, _child) = spawn(&mut sup, "child", Some((Fault::Panic, Phase::Starting)));
            assert_eq!(
                failure(&mut sup, &mut obits, Duration::from_secs(2)).await,
                Some("child")
            );
            let r = sup.restart(&"child");
            if n <= 2 {
                assert!(r.is_ok(), "restart {n} allowed");
            } else {
                assert!(
                    matches!(r, Err(GaveUp { restarts: 3, .. })),
                    "the third restart within the window escalates: {r:?}"
                );
            }
        }
    }

    #[test]
    fn the_root_supervisor_gives_up_past_the_intensity() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut root = super::Supervisor::new("root", limits(1));
            let never = CancellationToken::new();
            never.cancel(); // skip the backoff sleeps
            assert!(root.restart("connection lost: x", &never).await.is_ok());
            assert!(matches!(
                root.restart("connection lost: x", &never).await,
                Err(GaveUp { .. })
            ));
        });
    }
}
