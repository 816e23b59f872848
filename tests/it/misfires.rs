//! Misfires: a restarted scheduler applies each job's misfire policy to
//! the downtime and fires nothing twice.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::util::{FireTap, SchedulerProcess, Vhost};

use crate::{
    control_client::{upsert, RawClient},
    fires::connect,
};

#[tokio::test(flavor = "multi_thread")]
async fn restart_applies_each_misfire_policy_and_fires_nothing_twice() {
    let v = Vhost::new("sched-misfire");
    let mut s = SchedulerProcess::start(&v, "m1");
    let conn = connect(&v).await;
    let mut client = RawClient::new(&conn).await;
    for (id, policy) in [
        ("once", "fire-once"),
        ("catch", "catch-up"),
        ("skip", "skip"),
    ] {
        upsert(&mut client, serde_json::json!({"id": id, "schedule": "* * * * * *", "executor": {"type": "noop"}, "misfire": {"policy": policy, "grace": "1m"}})).await;
    }
    let ids = ["once", "catch", "skip"];
    let mut tap = FireTap::new(&conn).await;
    let mut fires: Vec<Vec<DateTime<Utc>>> = vec![Vec::new(); 3];
    let index = |job: &str| ids.iter().position(|i| *i == job).expect("known job");
    while fires.iter().any(|f| f.len() < 2) {
        let (ev, _) = tap.next_any().await;
        fires[index(&ev.job_id)].push(ev.scheduled_at);
    }
    s.stop();
    let stopped_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(5)).await; // the downtime itself, not a synchronisation
    let _s2 = SchedulerProcess::start(&v, "m2");
    // Read until each job has fired 3 regular occurrences after the restart.
    let restart_regular = stopped_at + chrono::Duration::seconds(5);
    while fires
        .iter()
        .any(|f| f.iter().filter(|t| **t > restart_regular).count() < 3)
    {
        let (ev, _) = tap.next_any().await;
        fires[index(&ev.job_id)].push(ev.scheduled_at);
    }
    let one_sec = chrono::Duration::seconds(1);
    for (i, f) in fires.iter().enumerate() {
        let mut sorted = f.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            f.len(),
            "job {i}: an occurrence fired twice: {f:?}"
        );
    }
    let gaps = |f: &[DateTime<Utc>]| f.windows(2).filter(|w| w[1] - w[0] > one_sec).count();
    let (once, catch, skip) = (&fires[0], &fires[1], &fires[2]);
    assert_eq!(
        gaps(catch),
        0,
        "catch-up fires every missed occurrence: {catch:?}"
    );
    assert_eq!(gaps(skip), 1, "skip leaves the downtime out: {skip:?}");
    // fire-once: exactly one occurrence from the downtime, the latest missed.
    let last_before = *skip
        .iter()
        .filter(|t| **t <= stopped_at)
        .max()
        .expect("fires before the stop");
    let first_regular = *skip
        .iter()
        .filter(|t| **t > stopped_at)
        .min()
        .expect("fires after the restart");
    let in_gap: Vec<_> = once
        .iter()
        .filter(|t| **t > last_before && **t < first_regular)
        .collect();
    assert_eq!(
        in_gap.len(),
        1,
        "fire-once fires one missed occurrence: {once:?} (gap {last_before}..{first_regular})"
    );
    assert_eq!(*in_gap[0], first_regular - one_sec, "the latest missed one");
}
