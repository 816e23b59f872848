//! Graceful shutdown: SIGTERM lets the running attempt finish.

use sundial_core::protocol::run::RunKind;

use crate::util::Daemon;

use crate::fires::{fire, publish, setup, shell, wait_for_consumers, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_attempt_finish() {
    let Setup {
        v,
        conn: _conn,
        mut tap,
        ch,
    } = setup("w-term").await;
    let mut w = Daemon::worker(
        &v,
        "graceful",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sleep")],
    );
    wait_for_consumers(&v, 1).await;
    let f = fire("nap", shell(&["/bin/sleep", "2"]), 1, &[]);
    publish(&ch, std::slice::from_ref(&f)).await;
    tap.until(&f.fire_id, RunKind::Started).await;
    // SIGTERM mid-run: the attempt completes, then the process exits 0.
    w.stop();
    let evs = tap.until(&f.fire_id, RunKind::Succeeded).await;
    assert_eq!(evs.last().map(|e| e.worker.as_str()), Some("graceful"));
}
