//! Several broker addresses (`broker.urls`, the nodes of a cluster): every
//! process tries them in turn and uses the first that answers; `sundial
//! status` names the address each scheduler is connected to; AMQP
//! heartbeats are on (10 s) so a hung node is noticed; workers are listed
//! with their node too (their heartbeats on `sundial.workers`).

use std::time::{Duration, Instant};

use crate::util::{apply_jobs, stderr, stdout, sundial, topology_apply, Vhost, TEST_ENV};

#[test]
fn processes_skip_an_unreachable_address_and_status_names_the_one_in_use() {
    let v = Vhost::new("urls");
    topology_apply(&v);
    let urls = format!(
        "amqp://guest:guest@127.0.0.1:1/{0},amqp://guest:guest@127.0.0.1:5672/{0}",
        v.name
    );
    let log = std::env::temp_dir().join(format!("{}-urls.log", v.name));
    let file = std::fs::File::create(&log).expect("log");
    let _scheduler = KillOnDrop(
        sundial()
            .args(["scheduler", "--node", "urls-1"])
            .envs(TEST_ENV.iter().copied())
            .env("SUNDIAL__BROKER__URLS", &urls)
            .env("RUST_LOG", "info")
            .stderr(file)
            .spawn()
            .expect("scheduler starts"),
    );
    let wlog = std::env::temp_dir().join(format!("{}-urls-worker.log", v.name));
    let wfile = std::fs::File::create(&wlog).expect("log");
    let mut worker = KillOnDrop(
        sundial()
            .args(["worker", "--id", "urls-w"])
            .envs(TEST_ENV.iter().copied())
            .env("SUNDIAL__BROKER__URLS", &urls)
            .env("SUNDIAL__WORKER__CONCURRENCY", "7")
            .env("RUST_LOG", "info")
            .stderr(wfile)
            .spawn()
            .expect("worker starts"),
    );
    // The CLI takes the list too: the job goes through the second address.
    apply_jobs(
        &v,
        "[[jobs]]\nid = \"tick\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n",
    );
    let status_json = || {
        let out = sundial()
            .args(["status", "--json"])
            .envs(TEST_ENV.iter().copied())
            .env("SUNDIAL__BROKER__URLS", &urls)
            .output()
            .expect("status");
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = status_json();
        let heard = |k: &str| s[k].as_array().is_some_and(|n| !n.is_empty());
        if heard("nodes") && heard("workers") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduler or worker heartbeat: {s}"
        );
    };
    let broker = status["nodes"][0]["broker"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(broker.contains("127.0.0.1:5672"), "{status}");
    assert!(!broker.contains("guest:guest"), "password masked: {broker}");
    let w = &status["workers"][0];
    assert_eq!(w["worker"], "urls-w", "{status}");
    assert_eq!(w["pool"], "default", "{status}");
    assert_eq!(w["concurrency"], 7, "{status}");
    let wbroker = w["broker"].as_str().unwrap_or_default();
    assert!(
        wbroker.contains("127.0.0.1:5672") && !wbroker.contains("guest:guest"),
        "the worker's node, password masked: {status}"
    );
    let text = sundial()
        .args(["status"])
        .envs(TEST_ENV.iter().copied())
        .env("SUNDIAL__BROKER__URLS", &urls)
        .output()
        .expect("status");
    let table = stdout(&text);
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}: {table}"))
            .to_string()
    };
    assert!(line("urls-1").ends_with("127.0.0.1:5672"), "{table}");
    let wline = line("urls-w");
    assert!(
        wline.contains("default") && wline.contains("/7") && wline.ends_with("127.0.0.1:5672"),
        "{table}"
    );
    // A stopped worker is no longer listed.
    let pid = worker.0.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let exited = worker.0.wait().expect("worker exits");
    assert!(exited.success(), "worker exit: {exited}");
    let s = status_json();
    assert_eq!(s["workers"], serde_json::json!([]), "{s}");
    let _ = std::fs::remove_file(&wlog);
    // Heartbeats negotiated at 10 s on the scheduler's two connections
    // (named after its node). A CLI connection still closing may be listed
    // too, with the broker's closing timeout: it is not the scheduler's.
    let conns: Vec<String> = v
        .list("list_connections", &["timeout", "client_properties"])
        .into_iter()
        .filter(|c| c.contains("sundial scheduler urls-1"))
        .collect();
    assert_eq!(conns.len(), 2, "{conns:?}");
    assert!(conns.iter().all(|c| c.starts_with("10\t")), "{conns:?}");
    let _ = std::fs::remove_file(&log);
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn when_no_address_answers_the_error_names_every_one() {
    let out = sundial()
        .args(["job", "list"])
        .env(
            "SUNDIAL__BROKER__URLS",
            "amqp://guest:secret@127.0.0.1:1/%2f,amqp://guest:secret@127.0.0.1:2/%2f",
        )
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("127.0.0.1:1") && err.contains("127.0.0.1:2"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}
