//! Alerts end to end (issue 25): a scheduler judges its jobs' occurrences
//! from the history stream and records what it raises there; `sundial
//! alerts` reads them back.

use serde_json::Value;

use crate::{
    fires::wait_for_consumers,
    util::{
        apply_jobs, poll_until, stderr, stdout, sundial, Daemon, SchedulerProcess, Vhost, TEST_ENV,
    },
};

/// `sundial alerts --json` (with more flags) as JSON.
fn alerts(v: &Vhost, extra: &[&str]) -> Vec<Value> {
    let out = sundial()
        .args(["alerts", "--since", "10m", "--json"])
        .args(extra)
        .args(["--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("sundial alerts runs");
    assert!(out.status.success(), "{}", stderr(&out));
    match serde_json::from_str(&stdout(&out)) {
        Ok(Value::Array(a)) => a,
        other => panic!("not a JSON array: {other:?}"),
    }
}

fn of<'a>(all: &'a [Value], job: &str, kind: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|a| a["alert"]["job_id"] == job && a["alert"]["kind"] == kind)
        .collect()
}

/// A job that fails raises `failed` per occurrence, and `resolved` once it
/// succeeds again; a job slower than its `sla` raises `late`; a job that
/// runs well raises nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_late_and_resolved_occurrences_raise_alerts_once() {
    let v = Vhost::new("alerts");
    let work = std::env::temp_dir().join(format!("{}-work", v.name));
    std::fs::create_dir_all(&work).expect("work dir");
    let fixed = work.join("fixed");
    let _s = SchedulerProcess::start_with_env(
        &v,
        "al1",
        &[("SUNDIAL__SCHEDULER__ALERT_INTERVAL", "1s")],
    );
    let _w = Daemon::worker(&v, "al-w1", &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")]);
    wait_for_consumers(&v, 1).await;
    apply_jobs(
        &v,
        &format!(
            r#"[[jobs]]
id = "flaky"
schedule = "*/2 * * * * *"
retry = {{ max_attempts = 1 }}
executor = {{ type = "shell", command = ["/bin/sh", "-c", "test -e {} || exit 3"] }}

[[jobs]]
id = "slow"
schedule = "*/2 * * * * *"
sla = "1s"
executor = {{ type = "shell", command = ["/bin/sh", "-c", "sleep 1.5"] }}

[[jobs]]
id = "fine"
schedule = "*/2 * * * * *"
sla = "5s"
executor = {{ type = "noop" }}
"#,
            fixed.display()
        ),
    );
    let last = std::cell::RefCell::new(Vec::new());
    let failed = poll_until(
        std::time::Duration::from_secs(60),
        "two failed alerts of flaky and a late one of slow",
        || {
            let all = alerts(&v, &[]);
            last.replace(all.clone());
            let f: Vec<String> = of(&all, "flaky", "failed")
                .iter()
                .map(|a| a["alert"]["id"].as_str().unwrap_or_default().to_string())
                .collect();
            (f.len() >= 2 && !of(&all, "slow", "late").is_empty()).then_some((f, all))
        },
        || format!("{:?}", last.borrow()),
    );
    let (failed, all) = failed;
    for a in of(&all, "flaky", "failed") {
        assert!(
            a["alert"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("dead: ") && r.contains("exit status: 3")),
            "{a}"
        );
        assert!(a["resolved_by"].is_null(), "still open: {a}");
    }
    let late = of(&all, "slow", "late");
    assert!(
        late[0]["alert"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sla (1s)")),
        "{}",
        late[0]
    );
    assert!(
        all.iter().all(|a| a["alert"]["job_id"] != "fine"),
        "a job that runs well raises nothing: {all:?}"
    );

    // Fixed: the next success resolves every open alert of flaky.
    std::fs::write(&fixed, b"").expect("fix it");
    let resolved = poll_until(
        std::time::Duration::from_secs(60),
        "flaky resolved",
        || {
            let all = alerts(&v, &[]);
            last.replace(all.clone());
            of(&all, "flaky", "resolved").first().map(|r| (*r).clone())
        },
        || format!("{:?}", last.borrow()),
    );
    let resolves: Vec<String> = resolved["alert"]["resolves"]
        .as_array()
        .expect("resolves")
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    for f in &failed {
        assert!(resolves.contains(f), "{f} is resolved by {resolved}");
    }
    // --open: nothing of flaky is open any more (slow keeps being late).
    let open = alerts(&v, &["--open"]);
    assert!(of(&open, "flaky", "failed").is_empty(), "{open:?}");
    assert!(of(&open, "flaky", "resolved").is_empty(), "{open:?}");
    assert!(!of(&open, "slow", "late").is_empty(), "{open:?}");
    let _ = std::fs::remove_dir_all(&work);
}
