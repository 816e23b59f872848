//! The `shell` executor: runs an allow-listed program with an argv (never
//! through a shell), in its own process group so that a timeout or a
//! cancellation kills everything it started.

use std::{process::Stdio, sync::Arc, time::Duration};

use sundial_core::{
    attempt::{Failure, OutputTail, OUTPUT_TAIL_BYTES},
    job::ShellExecutor,
    protocol::{fire::FireEvent, run_context as rc, timestamp},
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::Executed;

/// The reason prefix of a refused program (dead-lettered, never retried).
pub(crate) const NOT_ALLOWED: &str = "executor-not-allowed";
/// After the program exits, how long its output pipes may stay open (a
/// grandchild left running holds them) before the tail is taken as is.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// What the program is told about its run: the job's own `env`, then
/// Sundial's variables (they win: a job cannot fake its fire id).
fn run_env(fire: &FireEvent, payload: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        (rc::ENV_FIRE_ID, fire.fire_id.clone()),
        (rc::ENV_JOB_ID, fire.job_id.clone()),
        (rc::ENV_SCHEDULED_AT, timestamp(fire.scheduled_at)),
        (rc::ENV_ATTEMPT, fire.attempt.to_string()),
    ];
    if payload.len() <= rc::ENV_PAYLOAD_MAX {
        env.push((rc::ENV_PAYLOAD, payload.to_string()));
    }
    env.extend(
        rc::step_values(fire)
            .into_iter()
            .map(|(name, value)| (name.env(), value)),
    );
    env
}

pub(super) async fn run(
    spec: &ShellExecutor,
    fire: &FireEvent,
    allow: &[String],
    cancel: &CancellationToken,
) -> Executed {
    let Some(program) = spec.command.first() else {
        return Executed::failed(Failure::abort("executor.command is empty"));
    };
    if !allow.iter().any(|a| a == program) {
        return Executed::failed(Failure::abort(format!(
            "{NOT_ALLOWED}: {program} is not in this worker's worker.shell.allow"
        )));
    }
    let env = match worker_env(&spec.env) {
        Ok(env) => env,
        Err(e) => return Executed::failed(Failure::abort(e)),
    };
    let payload = fire.payload.to_string();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&spec.command[1..])
        .envs(env)
        .envs(run_env(fire, &payload))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A new process group led by the child: killing the group reaches
        // every process it spawned.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Executed::failed(Failure::retry(format!("cannot start {program}: {e}")));
        }
    };
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);

    // The payload on stdin, then end of input. A program that never reads
    // it makes the write fail (or wait, past the pipe's buffer) harmlessly:
    // the writer is its own task, stopped once the program has ended.
    let feeder = child.stdin.take().map(|mut stdin| {
        tokio::spawn(async move {
            let _ = stdin.write_all(payload.as_bytes()).await;
            let _ = stdin.shutdown().await;
        })
    });
    let tail = Arc::new(std::sync::Mutex::new(OutputTail::new(OUTPUT_TAIL_BYTES)));
    let mut readers = tokio::task::JoinSet::new();
    if let Some(out) = child.stdout.take() {
        readers.spawn(drain(out, tail.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(drain(err, tail.clone()));
    }

    let status = tokio::select! {
        s = child.wait() => s,
        () = cancel.cancelled() => {
            kill_group(group);
            let _ = child.wait().await;
            if let Some(f) = &feeder {
                f.abort();
            }
            // The caller knows why it cancelled (timeout, shutdown, replace).
            return Executed {
                result: Err(Failure::retry("cancelled")),
                output: take(&tail),
            };
        }
    };
    if let Some(f) = &feeder {
        f.abort();
    }
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    let output = take(&tail);
    let result = match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => {
            let last = output
                .as_deref()
                .and_then(|o| o.lines().rev().find(|l| !l.trim().is_empty()))
                .map(|l| format!(": {}", l.trim()))
                .unwrap_or_default();
            Err(Failure::retry(format!("{program} exited with {s}{last}")))
        }
        Err(e) => Err(Failure::retry(format!("waiting for {program}: {e}"))),
    };
    Executed { result, output }
}

fn kill_group(group: Option<rustix::process::Pid>) {
    // Pid 1 would mean "every process we may signal": never.
    if let Some(pid) = group.filter(|p| p.as_raw_nonzero().get() > 1) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

async fn drain(mut r: impl AsyncRead + Unpin, tail: Arc<std::sync::Mutex<OutputTail>>) {
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut t) = tail.lock() {
                    t.push(&buf[..n]);
                }
            }
        }
    }
}

fn take(tail: &std::sync::Mutex<OutputTail>) -> Option<String> {
    let t = tail.lock().ok()?;
    (!t.is_empty()).then(|| t.text())
}

/// The job's environment with secrets resolved: a value written exactly
/// `${NAME}` is replaced by the worker's own environment variable `NAME`, so
/// secrets stay on worker hosts instead of travelling in job definitions
/// and fire events. A missing variable fails the attempt (not retried).
fn worker_env(
    env: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    env.iter()
        .map(|(k, v)| {
            let Some(name) = v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
                return Ok((k.clone(), v.clone()));
            };
            std::env::var(name)
                .map(|val| (k.clone(), val))
                .map_err(|_| {
                    format!("executor.env.{k}: ${{{name}}} is not set in this worker's environment")
                })
        })
        .collect()
}
