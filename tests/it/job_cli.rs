//! `sundial job`: apply is idempotent and declarative, big files go in
//! batches with a result per job, errors exit non-zero.

use std::time::Duration;

use crate::util::{stderr, sundial, SchedulerProcess, Vhost, TEST_SHARDS};

use crate::fires::connect;

#[test]
fn job_apply_twice_changes_nothing_and_cli_errors_exit_nonzero() {
    let v = Vhost::new("sched-cli");
    let _s = SchedulerProcess::start(&v, "cli");
    let dir = std::env::temp_dir().join(format!("{}-jobs", v.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("jobs.toml");
    std::fs::write(&file, "[[jobs]]\nid = \"a\"\nschedule = \"@daily\"\n[jobs.executor]\ntype = \"noop\"\n[[jobs]]\nid = \"b\"\nschedule = \"0 9 * * 1-5\"\ntimezone = \"Europe/Berlin\"\n[jobs.executor]\ntype = \"noop\"\n").expect("write");
    let run = |args: &[&str]| {
        sundial()
            .args(args)
            .args(["--broker", &v.url(), "--timeout", "30s"])
            .env("SUNDIAL__TOPOLOGY__SHARDS", TEST_SHARDS.to_string())
            .output()
            .expect("runs")
    };
    let f = file.to_string_lossy().to_string();
    let first = run(&["job", "apply", "-f", &f, "--json"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let r: serde_json::Value = serde_json::from_slice(&first.stdout).expect("json");
    assert_eq!(r["result"]["changed"], 2);
    let second = run(&["job", "apply", "-f", &f, "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&second.stdout).expect("json");
    assert_eq!(r["result"]["changed"], 0, "second apply changes nothing");
    let list = run(&["job", "list"]);
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(
        out.lines().count() == 3 && out.contains("Europe/Berlin"),
        "{out}"
    );
    let missing = run(&["job", "delete", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no job \"nope\""),
        "{}",
        stderr(&missing)
    );
    let next = run(&["job", "next", "b", "-n", "2"]);
    let lines: Vec<String> = String::from_utf8_lossy(&next.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.contains("T09:00:00+0")),
        "09:00 Berlin with its offset: {lines:?}"
    );

    // Declarative: a file with only `a` (changed) and --prune deletes `b`.
    std::fs::write(
        &file,
        "[[jobs]]\nid = \"a\"\nschedule = \"@hourly\"\n[jobs.executor]\ntype = \"noop\"\n",
    )
    .expect("write");
    let dry = run(&["job", "apply", "-f", &f, "--prune", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let plan = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        plan.contains("a") && plan.contains("update") && plan.contains("delete"),
        "{plan}"
    );
    let still = run(&["job", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&still.stdout).lines().count(),
        3,
        "dry run changed nothing"
    );
    let pruned = run(&["job", "apply", "-f", &f, "--prune"]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let after = String::from_utf8_lossy(&run(&["job", "list"]).stdout).to_string();
    assert!(
        after.lines().count() == 2 && after.contains("@hourly") && !after.contains("Europe/Berlin"),
        "{after}"
    );
    let del = run(&["job", "delete", "a"]);
    assert!(del.status.success(), "{}", stderr(&del));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn job_apply_sends_a_large_file_in_batches_and_reports_each_job() {
    let v = Vhost::new("sched-bulk");
    let _s = SchedulerProcess::start(&v, "bulk");
    let jobs: Vec<serde_json::Value> = (0..1_200)
        .map(|i| {
            // One bad job in the third batch: its error names its place in
            // the file, and every other job is applied.
            let schedule = if i == 1_100 { "61 * * * *" } else { "@hourly" };
            serde_json::json!({"id": format!("bulk-{i:04}"), "schedule": schedule, "executor": {"type": "noop"}})
        })
        .collect();
    let body = serde_json::to_vec(&jobs).expect("json");
    let out = crate::util::job_apply(&v, &body, "json", &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reply JSON");
    let results = reply["results"].as_array().expect("results");
    assert_eq!(results.len(), 1_200, "one result per job");
    let bad: Vec<&serde_json::Value> = results.iter().filter(|r| r["ok"] == false).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["id"], "bulk-1100");
    assert_eq!(bad[0]["error"]["field"], "jobs[1100].schedule", "{bad:?}");
    let list = sundial()
        .args(["job", "list", "--json", "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("list runs");
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).expect("list JSON");
    assert_eq!(
        listed["result"]["jobs"].as_array().map(Vec::len),
        Some(1_199),
        "the others were applied"
    );

    // The protocol's pages, as a client in another language walks them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pages = rt.block_on(async {
        let conn = connect(&v).await;
        let (mut pages, mut after) = (Vec::new(), None::<String>);
        loop {
            let cmd = sundial_core::protocol::control::Command::List {
                labels: Default::default(),
                q: None,
                pool: None,
                paused: None,
                after: after.take(),
                limit: Some(500),
            };
            let reply = sundial_amqp::client::call(
                &conn,
                &crate::util::test_topology(),
                &cmd,
                Duration::from_secs(20),
            )
            .await
            .expect("list reply");
            let result = reply.result.expect("list result");
            let ids: Vec<String> = result["jobs"]
                .as_array()
                .expect("jobs")
                .iter()
                .filter_map(|j| j["id"].as_str().map(str::to_string))
                .collect();
            let next = result["next_after"].as_str().map(str::to_string);
            pages.push(ids);
            match next {
                Some(n) => after = Some(n),
                None => break pages,
            }
        }
    });
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [500, 500, 199]
    );
    assert_eq!(pages[1][0], "bulk-0500", "page 2 starts after page 1");
    assert_eq!(pages[2].last().map(String::as_str), Some("bulk-1199"));
}
