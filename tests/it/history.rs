//! Run history: every attempt is recorded on the history stream, indexed
//! by the scheduler on disk, and read back with `sundial job history`,
//! `sundial runs` and `/api/v1`; the index survives a SIGKILL and resumes
//! from its offset; a fresh node builds the same history from the stream;
//! a record nobody can read is skipped and counted.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::{DurationRound, Utc};
use serde_json::Value;

use crate::util::{
    apply_jobs, free_addr, http_get, stderr, stdout, sundial, wait_status, Daemon, Vhost, TEST_ENV,
};

/// Settings of a scheduler that keeps its index at `db` and serves the API
/// on `addr`.
fn history_env(db: &Path, addr: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SUNDIAL__HISTORY__ENABLED", "true".into()),
        ("SUNDIAL__HISTORY__PATH", db.display().to_string()),
        ("SUNDIAL__HTTP__ENABLED", "true".into()),
        ("SUNDIAL__HTTP__LISTEN", addr.into()),
    ]
}

fn scheduler(v: &Vhost, node: &str, db: &Path, addr: &str) -> Daemon {
    let env = history_env(db, addr);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::start_with_env(v, node, &env);
    wait_status(addr, "/healthz", 200, Duration::from_secs(30));
    d
}

/// `sundial job history ID --json` against `api`: the page's runs, oldest
/// first.
fn job_history(v: &Vhost, api: &str, id: &str) -> Vec<Value> {
    let out = sundial()
        .args(["job", "history", id, "-n", "50", "--json", "--api", api])
        .args(["--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("job history runs");
    assert!(out.status.success(), "job history: {}", stderr(&out));
    let page: Value = serde_json::from_slice(&out.stdout).expect("JSON page");
    let mut runs = page["runs"].as_array().cloned().unwrap_or_default();
    runs.reverse();
    runs
}

/// Polls the history until `id` has `n` finished attempts (bounded).
fn wait_for_runs(v: &Vhost, api: &str, id: &str, n: usize, within: Duration) -> Vec<Value> {
    let last = std::cell::RefCell::new(Vec::new());
    crate::util::poll_until(
        within,
        &format!("{n} finished attempts of {id} in the history"),
        || {
            let runs = job_history(v, api, id);
            let finished = runs.iter().filter(|r| r["outcome"] != "running").count();
            let done = (finished >= n).then(|| runs.clone());
            *last.borrow_mut() = runs;
            done
        },
        || format!("{:#?}", last.borrow()),
    )
}

/// (fire id, attempt, outcome) of each run.
fn keys(runs: &[Value]) -> Vec<(String, u64, String)> {
    runs.iter()
        .map(|r| {
            (
                r["fire_id"].as_str().unwrap_or_default().to_string(),
                r["attempt"].as_u64().unwrap_or_default(),
                r["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `text` without its ANSI colour sequences.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn temp_dir(v: &Vhost) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{}-history", v.name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn five_runs_and_a_retry_are_six_attempts_that_survive_a_kill_and_rebuild_elsewhere() {
    let v = Vhost::new("history");
    let dir = temp_dir(&v);
    let (db_a, addr_a) = (dir.join("a.db"), free_addr());
    let mut a = scheduler(&v, "hist-a", &db_a, &addr_a);
    let _worker = Daemon::worker(
        &v,
        "hist-w",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")],
    );

    // Five occurrences, one per second; the very first attempt fails (the
    // flag file does not exist yet) and is retried after the 1 s tier.
    let start = Utc::now()
        .duration_trunc(chrono::TimeDelta::seconds(1))
        .expect("whole second")
        + chrono::TimeDelta::seconds(3);
    // Half a second past the fifth: whether end_at is inclusive or not.
    let end = start + chrono::TimeDelta::milliseconds(4500);
    let flag = dir.join("failed-once");
    let script = format!(
        "if [ ! -e {0} ]; then touch {0}; echo first try fails; exit 3; fi; echo ran $SUNDIAL_FIRE_ID attempt $SUNDIAL_ATTEMPT",
        flag.display()
    );
    apply_jobs(
        &v,
        &format!(
            "[[jobs]]\nid = \"backup\"\nschedule = \"* * * * * *\"\nstart_at = {}\nend_at = {}\nlabels = {{ team = \"ops\" }}\n[jobs.retry]\nmax_attempts = 3\nbackoff = [\"1s\"]\n[jobs.executor]\ntype = \"shell\"\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\n",
            start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
    );
    let api_a = format!("http://{addr_a}");
    let runs = wait_for_runs(&v, &api_a, "backup", 6, Duration::from_secs(60));
    assert_eq!(runs.len(), 6, "{runs:#?}");
    // The WAL index is in memory (exclusive locking): no memory-mapped
    // `-shm` file that could kill the process with SIGBUS.
    let mut shm = db_a.as_os_str().to_owned();
    shm.push("-shm");
    assert!(
        !Path::new(&shm).exists(),
        "the index maps a -shm file: {}",
        Path::new(&shm).display()
    );
    let ks = keys(&runs);
    // In order: the first occurrence fails, its retry succeeds later; the
    // other four succeed at once.
    let first = &ks[0];
    assert_eq!((first.1, first.2.as_str()), (1, "failed"), "{ks:?}");
    assert_eq!(runs[0]["retried"], true, "{:#}", runs[0]);
    assert!(
        runs[0]["output"]
            .as_str()
            .is_some_and(|o| o.contains("first try fails")),
        "{:#}",
        runs[0]
    );
    let retry = ks
        .iter()
        .position(|k| k.0 == first.0 && k.1 == 2)
        .unwrap_or_else(|| panic!("no attempt 2 of {}: {ks:?}", first.0));
    assert_eq!(ks[retry].2, "succeeded", "{ks:?}");
    let starts: Vec<&str> = runs
        .iter()
        .map(|r| r["started_at"].as_str().unwrap_or_default())
        .collect();
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(starts, sorted, "oldest first");
    let distinct: std::collections::BTreeSet<&str> = ks.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(distinct.len(), 5, "five occurrences: {ks:?}");
    for r in &runs[1..] {
        assert_eq!(r["outcome"], "succeeded", "{r:#}");
        assert!(r["duration_ms"].is_u64(), "{r:#}");
        let fire = r["fire_id"].as_str().unwrap_or_default();
        assert!(
            r["output"]
                .as_str()
                .is_some_and(|o| o.contains(&format!("ran {fire} attempt"))),
            "{r:#}"
        );
        assert_eq!(r["labels"]["team"], "ops", "{r:#}");
    }

    // For people: a table, oldest first, and the summary.
    let text = sundial()
        .args(["job", "history", "backup", "--api", &api_a])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("job history");
    assert!(text.status.success(), "{}", stderr(&text));
    let table = stdout(&text);
    assert!(table.starts_with("STARTED"), "{table}");
    assert_eq!(table.matches("backup@").count(), 6, "{table}");
    assert!(table.contains("failed (retried)"), "{table}");
    assert!(table.contains("6 runs, 5 succeeded (83.3%)"), "{table}");
    // `sundial runs` filters by outcome across jobs.
    let failed = sundial()
        .args(["runs", "--since", "10m", "--outcome", "failed", "--json"])
        .args(["--api", &api_a])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("runs");
    assert!(failed.status.success(), "{}", stderr(&failed));
    let page: Value = serde_json::from_slice(&failed.stdout).expect("JSON");
    assert_eq!(
        keys(page["runs"].as_array().expect("runs")),
        vec![ks[0].clone()]
    );

    // SIGKILL, then the same node again: the rows are all there once, and
    // the index resumed from its stored offset instead of reading it all.
    a.kill9();
    let a = scheduler(&v, "hist-a", &db_a, &addr_a);
    let again = wait_for_runs(&v, &api_a, "backup", 6, Duration::from_secs(30));
    assert_eq!(keys(&again), ks, "same history, no duplicate rows");
    // The rows kept in the file answer before the restarted ingest logs
    // where it starts: wait (bounded) for that line.
    let read = || plain(&std::fs::read_to_string(&a.log).unwrap_or_default());
    let log = crate::util::poll_until(
        Duration::from_secs(30),
        "the restarted ingest logging its start",
        || Some(read()).filter(|log| log.contains("start=Offset(")),
        read,
    );
    assert!(
        log.contains("start=First") && log.contains("start=Offset("),
        "first start reads from the first record, the restart from its offset: {log}"
    );
    assert!(
        !log.contains("history index emptied"),
        "the same stream resumes, it is not rebuilt: {log}"
    );

    // A node with no index builds the same history from the stream.
    let (db_b, addr_b) = (dir.join("b.db"), free_addr());
    let _b = scheduler(&v, "hist-b", &db_b, &addr_b);
    let built = wait_for_runs(
        &v,
        &format!("http://{addr_b}"),
        "backup",
        6,
        Duration::from_secs(30),
    );
    assert_eq!(keys(&built), ks, "a fresh index holds the same history");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_record_nobody_can_read_is_skipped_counted_and_indexing_goes_on() {
    let v = Vhost::new("poison");
    let dir = temp_dir(&v);
    crate::util::topology_apply(&v);
    // Two foreign messages first in the stream: not JSON, and a kind this
    // version does not know.
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let conn = crate::fires::connect(&v).await;
            let ch = conn.create_channel().await.expect("channel");
            for (kind, body) in [
                ("sundial.run-batch", &b"{not json"[..]),
                ("sundial.run-batch-v9", &b"{\"records\":[]}"[..]),
            ] {
                ch.basic_publish(
                    "".into(),
                    "sundial.history".into(),
                    lapin::options::BasicPublishOptions::default(),
                    body,
                    lapin::BasicProperties::default()
                        .with_content_type("application/json".into())
                        .with_type(kind.into()),
                )
                .await
                .expect("publish")
                .await
                .expect("stored");
            }
            let _ = conn.close(200, "done".into()).await;
        });
    let (db, addr) = (dir.join("p.db"), free_addr());
    let _s = scheduler(&v, "poison-a", &db, &addr);
    let _w = Daemon::worker(&v, "poison-w", &[]);
    apply_jobs(
        &v,
        "[[jobs]]\nid = \"after-poison\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n",
    );
    let runs = wait_for_runs(
        &v,
        &format!("http://{addr}"),
        "after-poison",
        2,
        Duration::from_secs(30),
    );
    assert!(
        runs.iter().any(|r| r["outcome"] == "succeeded"),
        "{runs:#?}"
    );
    let (_, metrics) = http_get(&addr, "/metrics").expect("metrics");
    let skipped = metrics
        .lines()
        .find(|l| l.starts_with("sundial_history_skipped_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<f64>().ok());
    assert_eq!(skipped, Some(2.0), "{metrics}");
    // Ready: skipping is not a failure.
    wait_status(&addr, "/readyz", 200, Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_api_names_a_bad_parameter_and_a_process_without_an_index_says_so() {
    let v = Vhost::new("histapi");
    let dir = temp_dir(&v);
    let (db, addr) = (dir.join("api.db"), free_addr());
    let _s = scheduler(&v, "api-a", &db, &addr);
    let (status, body) = http_get(&addr, "/api/v1/runs?since=1h&colour=red").expect("answer");
    assert_eq!(status, 400, "{body}");
    let e: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(e["error"]["field"], "colour", "{e}");
    let (status, body) = http_get(&addr, "/api/v1/runs?outcome=meh").expect("answer");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"field\":\"outcome\""), "{body}");
    let (status, body) = http_get(&addr, "/api/v1/runs?limit=20").expect("answer");
    assert_eq!((status, body.as_str()), (200, "{\"runs\":[]}"));
    // The CLI reports the API's words, naming the field, exit 2.
    let out = sundial()
        .args([
            "runs",
            "--since",
            "yesterday",
            "--api",
            &format!("http://{addr}"),
        ])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--since"), "{}", stderr(&out));
    // Nobody listening: one line naming the address, exit 1.
    let nobody = free_addr();
    let out = sundial()
        .args(["job", "history", "x", "--api", &format!("http://{nobody}")])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("job history");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(&nobody), "{}", stderr(&out));
    // A worker keeps no index: its endpoint says so.
    let waddr = free_addr();
    let _w = Daemon::worker(
        &v,
        "api-w",
        &[
            ("SUNDIAL__HTTP__ENABLED", "true"),
            ("SUNDIAL__HTTP__LISTEN", &waddr),
        ],
    );
    let body = wait_status(&waddr, "/api/v1/runs", 503, Duration::from_secs(30));
    assert!(body.contains("keeps no history index"), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_index_that_cannot_be_written_makes_the_scheduler_not_ready_and_it_still_fires() {
    let v = Vhost::new("histbad");
    let addr = free_addr();
    // /dev/null is a file: no directory can be made under it.
    let _s = scheduler(&v, "bad-a", Path::new("/dev/null/sub/history.db"), &addr);
    let body = wait_status(&addr, "/readyz", 503, Duration::from_secs(30));
    assert!(
        body.contains("history index") && body.contains("/dev/null/sub"),
        "{body}"
    );
    // The rest works: a job fires and runs (the worker reports no index).
    let _w = Daemon::worker(&v, "bad-w", &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let c = crate::fires::connect(&v).await;
        let mut tap = crate::fires::EventTap::new(&c).await;
        apply_jobs(
            &v,
            "[[jobs]]\nid = \"still\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n",
        );
        let ev = loop {
            let ev = tap.next().await;
            if ev.job_id == "still" && ev.kind == sundial_core::protocol::run::RunKind::Succeeded {
                break ev;
            }
        };
        assert_eq!(ev.attempt, 1);
        let _ = c.close(200, "done".into()).await;
    });
}

/// The quickstart in one vhost, then in another from the same directory:
/// the index belongs to one stream. The second installation's index is
/// emptied (one line says why) and holds its own runs from its first
/// record; the first one's runs are not shown as its own.
#[test]
fn an_index_from_another_vhost_is_rebuilt_and_shows_only_its_own_runs() {
    let (one, two) = (Vhost::new("idx-one"), Vhost::new("idx-two"));
    let dir = temp_dir(&one);
    let db = dir.join("shared.db");
    let job = |id: &str| {
        format!("[[jobs]]\nid = \"{id}\"\nschedule = \"* * * * * *\"\n[jobs.executor]\ntype = \"noop\"\n")
    };

    let addr = free_addr();
    let mut s1 = scheduler(&one, "idx-a", &db, &addr);
    let mut w1 = Daemon::worker(&one, "idx-w1", &[]);
    apply_jobs(&one, &job("in-one"));
    // Enough records that the first vhost's offset is past the second's.
    wait_for_runs(
        &one,
        &format!("http://{addr}"),
        "in-one",
        5,
        Duration::from_secs(30),
    );
    w1.stop();
    s1.stop();

    let addr = free_addr();
    let api = format!("http://{addr}");
    let s2 = scheduler(&two, "idx-b", &db, &addr);
    let _w2 = Daemon::worker(&two, "idx-w2", &[]);
    apply_jobs(&two, &job("in-two"));
    let runs = wait_for_runs(&two, &api, "in-two", 2, Duration::from_secs(30));
    let first = runs.first().expect("a run");
    assert!(
        first["fire_id"]
            .as_str()
            .is_some_and(|f| f.starts_with("in-two@")),
        "{runs:#?}"
    );
    assert!(
        job_history(&two, &api, "in-one").is_empty(),
        "the other vhost's runs are shown as this one's"
    );
    let log = plain(&std::fs::read_to_string(&s2.log).unwrap_or_default());
    assert!(
        log.contains("history index emptied") && log.contains("another stream"),
        "one line says why the index was rebuilt: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
