//! Several broker addresses (`broker.urls`, the nodes of a cluster): every
//! process tries them in turn and uses the first that answers; `sundial
//! status` names the address each scheduler is connected to; AMQP
//! heartbeats are on (10 s) so a hung node is noticed.

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
    // The CLI takes the list too: the job goes through the second address.
    apply_jobs(
        &v,
        "[[jobs]]\nid = \"tick\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let out = sundial()
            .args(["status", "--json"])
            .envs(TEST_ENV.iter().copied())
            .env("SUNDIAL__BROKER__URLS", &urls)
            .output()
            .expect("status");
        assert!(out.status.success(), "{}", stderr(&out));
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        if s["nodes"].as_array().is_some_and(|n| !n.is_empty()) {
            break s;
        }
        assert!(Instant::now() < deadline, "no scheduler heartbeat: {s}");
    };
    let broker = status["nodes"][0]["broker"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(broker.contains("127.0.0.1:5672"), "{status}");
    assert!(!broker.contains("guest:guest"), "password masked: {broker}");
    let text = sundial()
        .args(["status"])
        .envs(TEST_ENV.iter().copied())
        .env("SUNDIAL__BROKER__URLS", &urls)
        .output()
        .expect("status");
    assert!(
        stdout(&text).contains("127.0.0.1:5672"),
        "{}",
        stdout(&text)
    );
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
