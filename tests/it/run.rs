//! `sundial run`, the quickstart command: scheduler and worker in one
//! process, a jobs file applied at start, one line per run event.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use crate::util::{stderr, sundial, Vhost, TEST_ENV};

#[test]
fn run_applies_the_jobs_file_and_prints_each_outcome() {
    let v = Vhost::new("run");
    let jobs = std::env::temp_dir().join(format!("{}-jobs.toml", v.name));
    std::fs::write(
        &jobs,
        "[[jobs]]\nid = \"every-second\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n",
    )
    .expect("write jobs file");
    let mut child = sundial()
        .args(["run", "--jobs"])
        .arg(&jobs)
        .args(["--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sundial run starts");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains("every-second@") && line.contains("succeeded");
                seen.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let pid = child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let status = child.wait().expect("wait");
    let _ = std::fs::remove_file(&jobs);
    assert!(found, "no succeeded line within 30s; output: {seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("every-second ok")),
        "the jobs file was applied: {seen:#?}"
    );
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn run_without_a_broker_says_so_in_one_line() {
    let out = sundial()
        .args(["run", "--broker", "amqp://guest:secret@127.0.0.1:1/%2f"])
        .output()
        .expect("sundial run runs");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "one line: {err}");
    assert!(
        line.contains("cannot reach RabbitMQ at amqp://guest:****@127.0.0.1:1/%2f"),
        "{line}"
    );
    assert!(line.contains("rabbitmq-server -detached"), "{line}");
    assert!(!line.contains("secret"), "password masked: {line}");
}
