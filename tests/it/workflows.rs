//! Workflows end to end (issue 24): a scheduler process advances each
//! occurrence from the history stream, a worker process runs the steps.

use sundial_core::protocol::run::{RunEvent, RunKind};

use crate::{
    fires::{connect, wait_for_consumers, EventTap},
    util::{
        apply_jobs, free_addr, http_get, poll_until, stderr, stdout, sundial, Daemon,
        SchedulerProcess, Vhost, TEST_ENV,
    },
};

/// extract → transform × 4 shards → load, `page` on failure; and `broken`,
/// whose extract fails for good.
const JOBS: &str = r#"
[[jobs]]
id = "etl"
schedule = "*/2 * * * * *"
[[jobs.steps]]
id = "extract"
executor = { type = "shell", command = ["/bin/sh", "-c", "echo step=$SUNDIAL_STEP"] }
[[jobs.steps]]
id = "transform"
after = ["extract"]
fanout = { shards = 4 }
executor = { type = "shell", command = ["/bin/sh", "-c", "echo shard=$SUNDIAL_SHARD_INDEX/$SUNDIAL_SHARD_TOTAL"] }
[[jobs.steps]]
id = "load"
after = ["transform"]
executor = { type = "noop" }
[[jobs.steps]]
id = "page"
after = ["extract", "transform", "load"]
when = "failure"
executor = { type = "noop" }

[[jobs]]
id = "broken"
schedule = "*/2 * * * * *"
retry = { max_attempts = 1 }
[[jobs.steps]]
id = "extract"
executor = { type = "shell", command = ["/bin/false"] }
[[jobs.steps]]
id = "transform"
after = ["extract"]
fanout = { shards = 2 }
executor = { type = "noop" }
[[jobs.steps]]
id = "page"
after = ["extract", "transform"]
when = "failure"
executor = { type = "noop" }
"#;

/// The records of one occurrence (its own and its steps'), in stream order.
fn of<'a>(records: &'a [RunEvent], occurrence: &str) -> Vec<&'a RunEvent> {
    records
        .iter()
        .filter(|r| {
            r.fire_id == occurrence
                || r.fire_id
                    .strip_prefix(occurrence)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .collect()
}

fn ended(records: &[RunEvent], job: &str) -> Option<String> {
    records
        .iter()
        .find(|r| {
            r.job_id == job
                && !r.fire_id.contains('/')
                && matches!(r.kind, RunKind::Succeeded | RunKind::Dead)
        })
        .map(|r| r.fire_id.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_wait_for_each_other_fan_out_and_fail_into_the_failure_step() {
    let v = Vhost::new("wf-etl");
    let dir = std::env::temp_dir().join(format!("{}-history", v.name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let addr = free_addr();
    let db = dir.join("wf.db").display().to_string();
    let _s = SchedulerProcess::start_with_env(
        &v,
        "wf1",
        &[
            ("SUNDIAL__HISTORY__ENABLED", "true"),
            ("SUNDIAL__HISTORY__PATH", &db),
            ("SUNDIAL__HTTP__ENABLED", "true"),
            ("SUNDIAL__HTTP__LISTEN", &addr),
        ],
    );
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    let _w = Daemon::worker(
        &v,
        "wf-w1",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh,/bin/false")],
    );
    wait_for_consumers(&v, 1).await;
    apply_jobs(&v, JOBS);

    let mut records = Vec::new();
    while ended(&records, "etl").is_none() || ended(&records, "broken").is_none() {
        records.push(tap.next().await);
    }
    // etl: every step ran in order, the shards each told their index.
    let etl = ended(&records, "etl").expect("ended");
    let occ = of(&records, &etl);
    let last = occ.last().expect("records");
    assert_eq!(last.kind, RunKind::Succeeded, "{occ:#?}");
    let pos = |fire: &str, kind: RunKind| {
        occ.iter()
            .position(|r| r.fire_id == fire && r.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} of {fire}: {occ:#?}"))
    };
    // A fast run may be recorded by its outcome alone: where a worker first
    // reported the fire.
    let ran = |fire: &str| {
        occ.iter()
            .position(|r| r.fire_id == fire && r.kind != RunKind::Fired)
            .unwrap_or_else(|| panic!("no run of {fire}: {occ:#?}"))
    };
    let extract_done = pos(&format!("{etl}/extract"), RunKind::Succeeded);
    let mut transforms_done = 0;
    for k in 0..4 {
        let fire = format!("{etl}/transform#{k}/4");
        assert!(ran(&fire) > extract_done, "{occ:#?}");
        let done = pos(&fire, RunKind::Succeeded);
        let out = occ[done].output.as_deref().unwrap_or_default();
        assert!(out.contains(&format!("shard={k}/4")), "{fire}: {out:?}");
        transforms_done = transforms_done.max(done);
    }
    let load_started = ran(&format!("{etl}/load"));
    assert!(
        load_started > transforms_done,
        "load starts after every transform succeeded: {occ:#?}"
    );
    let page = occ
        .iter()
        .find(|r| r.fire_id == format!("{etl}/page"))
        .expect("page recorded");
    assert_eq!(page.kind, RunKind::Skipped, "{page:?}");
    assert_eq!(page.reason.as_deref(), Some("nothing it waits for failed"));

    // broken: extract dead → transform skipped as a failure, page runs,
    // the occurrence dead naming the step.
    let broken = ended(&records, "broken").expect("ended");
    let occ = of(&records, &broken);
    assert!(
        occ.iter()
            .all(|r| !(r.fire_id.contains("/transform") && r.kind == RunKind::Started)),
        "transform never starts: {occ:#?}"
    );
    let skip = occ
        .iter()
        .find(|r| r.fire_id == format!("{broken}/transform"))
        .expect("transform recorded");
    assert_eq!(skip.kind, RunKind::Skipped);
    assert_eq!(skip.reason.as_deref(), Some("extract did not succeed"));
    assert!(
        occ.iter()
            .any(|r| r.fire_id == format!("{broken}/page") && r.kind == RunKind::Succeeded),
        "page ran: {occ:#?}"
    );
    let end = occ.last().expect("records");
    assert_eq!(end.kind, RunKind::Dead, "{occ:#?}");
    assert_eq!(end.reason.as_deref(), Some("step extract dead"));

    // The occurrence's view: the API and `sundial runs show`, once the
    // index has its ending.
    let api = format!("http://{addr}");
    let path = format!("/api/v1/runs/{}", etl.replace(':', "%3A"));
    let view: serde_json::Value = poll_until(
        std::time::Duration::from_secs(30),
        "the occurrence's view",
        || {
            let (status, text) = http_get(&addr, &path)?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            let runs = v["runs"].as_array()?;
            let ended = runs
                .iter()
                .any(|r| r["fire_id"] == etl.as_str() && r["outcome"] == "succeeded");
            (status == 200 && ended && runs.len() >= 8).then_some(v)
        },
        || format!("GET {path}: {:?}", http_get(&addr, &path)),
    );
    let fires: Vec<&str> = view["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["fire_id"].as_str())
        .collect();
    for k in 0..4 {
        assert!(
            fires.contains(&format!("{etl}/transform#{k}/4").as_str()),
            "{fires:?}"
        );
    }
    let shown = sundial()
        .args(["runs", "show", &etl, "--api", &api])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("runs show");
    assert!(shown.status.success(), "{}", stderr(&shown));
    let table = stdout(&shown);
    assert!(table.starts_with("STEP"), "{table}");
    for want in [
        "(occurrence)",
        "extract",
        "transform#3/4",
        "load",
        "page",
        "skipped",
        "nothing it waits for failed",
    ] {
        assert!(table.contains(want), "{want}: {table}");
    }
    let missing = sundial()
        .args([
            "runs",
            "show",
            "etl@2001-01-01T00:00:00.000Z",
            "--api",
            &api,
        ])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("runs show");
    assert_eq!(missing.status.code(), Some(1), "{}", stdout(&missing));
    assert!(
        stderr(&missing).contains("no run of etl@2001-01-01T00:00:00.000Z"),
        "{}",
        stderr(&missing)
    );
    // `job get` draws the steps in stages, with their edges.
    let got = sundial()
        .args(["job", "get", "etl", "--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("job get");
    assert!(got.status.success(), "{}", stderr(&got));
    let text = stdout(&got);
    let drawn = text
        .split_once("steps:")
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("{text}"));
    let row = |step: &str| {
        drawn
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(step))
            .unwrap_or_else(|| panic!("{step}: {drawn}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        row("extract").starts_with("1 extract - success (starts"),
        "{drawn}"
    );
    assert_eq!(row("transform"), "2 transform 4 shards success extract");
    assert_eq!(row("load"), "3 load - success transform");
    assert_eq!(row("page"), "4 page - failure extract, transform, load");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The workers whose run of an `every-worker` occurrence succeeded, each
/// checked to have run the fire named after it; `None` until the
/// occurrence ended succeeded.
fn ran_on(records: &[RunEvent], occurrence: &str) -> Option<Vec<String>> {
    let occ = of(records, occurrence);
    occ.iter()
        .any(|r| r.fire_id == occurrence && r.kind == RunKind::Succeeded)
        .then(|| {
            let mut on: Vec<String> = occ
                .iter()
                .filter(|r| r.kind == RunKind::Succeeded && r.fire_id != occurrence)
                .map(|r| {
                    let named = r
                        .fire_id
                        .rsplit_once('@')
                        .map(|(_, w)| w)
                        .unwrap_or_default();
                    assert_eq!(named, r.worker, "a worker ran another's fire: {r:?}");
                    r.worker.clone()
                })
                .collect();
            on.sort();
            on
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_runs_once_on_each_live_worker_and_counts_a_new_one() {
    let v = Vhost::new("wf-every");
    let _s = SchedulerProcess::start(&v, "wfe1");
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    let env = [("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")];
    let _w: Vec<Daemon> = ["wfe-a", "wfe-b", "wfe-c"]
        .iter()
        .map(|id| Daemon::worker(&v, id, &env))
        .collect();
    wait_for_consumers(&v, 3).await;
    apply_jobs(
        &v,
        r#"[[jobs]]
id = "backup"
schedule = "*/2 * * * * *"
fanout = "every-worker"
executor = { type = "shell", command = ["/bin/sh", "-c", "echo backing up $SUNDIAL_STEP"] }
"#,
    );
    let three: Vec<String> = ["wfe-a", "wfe-b", "wfe-c"].map(String::from).to_vec();
    let mut records: Vec<RunEvent> = Vec::new();
    // An occurrence on all three: one run each, on the worker it names.
    loop {
        records.push(tap.next().await);
        let r = records.last().expect("pushed");
        if r.job_id == "backup"
            && !r.fire_id.contains('/')
            && r.kind == RunKind::Succeeded
            && ran_on(&records, &r.fire_id.clone()) == Some(three.clone())
        {
            break;
        }
    }
    let _d = Daemon::worker(&v, "wfe-d", &env);
    let four: Vec<String> = ["wfe-a", "wfe-b", "wfe-c", "wfe-d"]
        .map(String::from)
        .to_vec();
    loop {
        records.push(tap.next().await);
        let r = records.last().expect("pushed");
        if r.job_id == "backup" && !r.fire_id.contains('/') && r.kind == RunKind::Succeeded {
            let on = ran_on(&records, &r.fire_id.clone()).expect("ended");
            assert!(on.len() >= 3, "every live worker: {on:?}");
            if on == four {
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_worker_fire_whose_worker_died_ends_dead_worker_gone() {
    let v = Vhost::new("wf-gone");
    let _s = SchedulerProcess::start(&v, "wfg1");
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    let env = [("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")];
    let _a = Daemon::worker(&v, "wfg-a", &env);
    let mut b = Daemon::worker(&v, "wfg-b", &env);
    wait_for_consumers(&v, 2).await;
    apply_jobs(
        &v,
        r#"[[jobs]]
id = "sweep"
schedule = "*/2 * * * * *"
fanout = "every-worker"
executor = { type = "shell", command = ["/bin/sh", "-c", "echo swept"] }
"#,
    );
    let both: Vec<String> = ["wfg-a", "wfg-b"].map(String::from).to_vec();
    let mut records: Vec<RunEvent> = Vec::new();
    loop {
        records.push(tap.next().await);
        let r = records.last().expect("pushed");
        if r.job_id == "sweep"
            && !r.fire_id.contains('/')
            && r.kind == RunKind::Succeeded
            && ran_on(&records, &r.fire_id.clone()) == Some(both.clone())
        {
            break;
        }
    }
    // SIGKILL: no leaving heartbeat. The occurrences that fire while its
    // last heartbeat is fresh still count it; their fire for it ends dead
    // once it has been silent for 30 s.
    b.kill9();
    let gone = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        loop {
            let r = tap.next().await;
            if r.kind == RunKind::Dead && r.fire_id.ends_with("/main@wfg-b") {
                return r;
            }
        }
    })
    .await
    .expect("a fire for the dead worker ended dead within 2 minutes");
    assert!(
        gone.reason
            .as_deref()
            .is_some_and(|w| w.starts_with("worker gone: no heartbeat from wfg-b")),
        "{gone:?}"
    );
    let occurrence = gone.fire_id.trim_end_matches("/main@wfg-b").to_string();
    let end = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let r = tap.next().await;
            if r.fire_id == occurrence {
                return r;
            }
        }
    })
    .await
    .expect("its occurrence ended");
    assert_eq!(end.kind, RunKind::Dead, "{end:?}");
    assert_eq!(end.reason.as_deref(), Some("step main dead"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_runs_one_occurrence_with_another_payload_and_records_who_asked() {
    let v = Vhost::new("wf-trig");
    let _s = SchedulerProcess::start(&v, "wft1");
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    let _w = Daemon::worker(
        &v,
        "wft-w1",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")],
    );
    wait_for_consumers(&v, 1).await;
    apply_jobs(
        &v,
        r#"[[jobs]]
id = "report"
schedule = "0 0 1 1 *"
payload = { day = "default" }
[[jobs.steps]]
id = "build"
executor = { type = "shell", command = ["/bin/sh", "-c", "echo build $SUNDIAL_PAYLOAD"] }
[[jobs.steps]]
id = "send"
after = ["build"]
executor = { type = "shell", command = ["/bin/sh", "-c", "echo send $SUNDIAL_PAYLOAD"] }

[[jobs]]
id = "lone"
schedule = "0 0 1 1 *"
executor = { type = "shell", command = ["/bin/sh", "-c", "echo lone $SUNDIAL_PAYLOAD"] }
"#,
    );
    let trigger = |id: &str, payload: &str| {
        let out = sundial()
            .args([
                "job",
                "trigger",
                id,
                "--payload",
                payload,
                "--reason",
                "rerun for the audit",
                "--as",
                "alice",
            ])
            .args(["--broker", &v.url()])
            .envs(TEST_ENV.iter().copied())
            .output()
            .expect("trigger runs");
        assert!(out.status.success(), "trigger {id}: {}", stderr(&out));
    };
    trigger("report", r#"{"day":"2026-12-01"}"#);
    trigger("lone", r#"{"day":"2026-11-30"}"#);
    let mut records: Vec<RunEvent> = Vec::new();
    let done = |rs: &[RunEvent]| {
        let report = rs.iter().any(|r| {
            r.job_id == "report" && !r.fire_id.contains('/') && r.kind == RunKind::Succeeded
        });
        let lone = rs
            .iter()
            .any(|r| r.job_id == "lone" && r.kind == RunKind::Succeeded);
        report && lone
    };
    while !done(&records) {
        records.push(tap.next().await);
    }
    // Every step ran with the trigger's payload.
    for step in ["build", "send"] {
        let run = records
            .iter()
            .find(|r| r.fire_id.ends_with(&format!("/{step}")) && r.kind == RunKind::Succeeded)
            .unwrap_or_else(|| panic!("{step} ran: {records:#?}"));
        let out = run.output.as_deref().unwrap_or_default();
        assert!(out.contains(r#"{"day":"2026-12-01"}"#), "{step}: {out:?}");
    }
    let lone = records
        .iter()
        .find(|r| r.job_id == "lone" && r.kind == RunKind::Succeeded)
        .expect("lone ran");
    assert!(
        lone.output
            .as_deref()
            .unwrap_or_default()
            .contains("2026-11-30"),
        "{lone:?}"
    );
    // Who asked, why and with what, in the history: a `fired` record of
    // each trigger's id.
    for (job, day) in [("report", "2026-12-01"), ("lone", "2026-11-30")] {
        let asked = records
            .iter()
            .find(|r| r.job_id == job && r.kind == RunKind::Fired && !r.fire_id.contains('/'))
            .unwrap_or_else(|| panic!("{job}: a fired record: {records:#?}"));
        assert!(
            asked.fire_id.starts_with(&format!("{job}@trigger:")),
            "{asked:?}"
        );
        assert_eq!(asked.by.as_deref(), Some("alice"));
        assert_eq!(asked.reason.as_deref(), Some("rerun for the audit"));
        assert_eq!(asked.payload, Some(serde_json::json!({"day": day})));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_can_send_a_dead_letter_back_with_another_payload() {
    let v = Vhost::new("wf-repay");
    let _s = SchedulerProcess::start(&v, "wfr1");
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    let _w = Daemon::worker(
        &v,
        "wfr-w1",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")],
    );
    wait_for_consumers(&v, 1).await;
    apply_jobs(
        &v,
        r#"[[jobs]]
id = "picky"
schedule = "0 0 1 1 *"
retry = { max_attempts = 1 }
payload = { fixed = false }
executor = { type = "shell", command = ["/bin/sh", "-c", "case \"$SUNDIAL_PAYLOAD\" in *true*) echo fixed;; *) exit 3;; esac"] }
"#,
    );
    let cli = |args: &[&str]| {
        let out = sundial()
            .args(args)
            .args(["--broker", &v.url()])
            .envs(TEST_ENV.iter().copied())
            .output()
            .expect("runs");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    cli(&["job", "trigger", "picky"]);
    let dead = loop {
        let r = tap.next().await;
        if r.job_id == "picky" && r.kind == RunKind::Dead {
            break r;
        }
    };
    cli(&[
        "dlq",
        "replay",
        &dead.fire_id,
        "--payload",
        r#"{"fixed": true}"#,
        "--reason",
        "the flag was wrong",
        "--as",
        "bob",
    ]);
    // The replay's run, and its record (written once the replays are
    // confirmed: before or after the run's, in either order).
    let (mut asked, mut ok) = (None, None);
    while asked.is_none() || ok.is_none() {
        let r = tap.next().await;
        if r.fire_id == dead.fire_id && r.kind == RunKind::Fired && r.replay.is_some() {
            asked = Some(r);
        } else if r.fire_id == dead.fire_id && r.kind == RunKind::Succeeded {
            ok = Some(r);
        }
    }
    let ok = ok.expect("ran");
    assert!(ok.replay.is_some(), "a replay's run: {ok:?}");
    // Who replayed it, why and with what, in the history: a `fired` record
    // with the replay's time.
    let asked = asked.expect("a fired record of the replay");
    assert_eq!(asked.replay, ok.replay, "the same replay");
    assert_eq!(asked.by.as_deref(), Some("bob"));
    assert_eq!(asked.reason.as_deref(), Some("the flag was wrong"));
    assert_eq!(asked.payload, Some(serde_json::json!({"fixed": true})));
    assert_eq!(ok.output.as_deref().map(str::trim), Some("fixed"), "{ok:?}");
    let bad = sundial()
        .args([
            "dlq",
            "replay",
            "x@y",
            "--payload",
            "{nope",
            "--broker",
            &v.url(),
        ])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("--payload: not JSON"),
        "{}",
        stderr(&bad)
    );
}

/// `job cancel`: a running occurrence stops where it stands — its running
/// step is stopped by its worker, the steps after it never start (even a
/// `when = "failure"` one), it ends `cancelled` with who asked and why —
/// and what cannot be cancelled is refused naming `fire_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_occurrence_stops_its_running_step_and_starts_nothing_more() {
    let v = Vhost::new("wf-cancel");
    let _s = SchedulerProcess::start(&v, "wfc1");
    let conn = connect(&v).await;
    let mut tap = EventTap::new(&conn).await;
    let _w = Daemon::worker(
        &v,
        "wfc-w1",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")],
    );
    wait_for_consumers(&v, 1).await;
    apply_jobs(
        &v,
        r#"[[jobs]]
id = "slow"
schedule = "0 0 1 1 *"
[[jobs.steps]]
id = "extract"
timeout = "5m"
executor = { type = "shell", command = ["/bin/sh", "-c", "sleep 120"] }
[[jobs.steps]]
id = "load"
after = ["extract"]
executor = { type = "noop" }
[[jobs.steps]]
id = "page"
after = ["extract", "load"]
when = "failure"
executor = { type = "noop" }

[[jobs]]
id = "lone"
schedule = "0 0 1 1 *"
executor = { type = "noop" }
"#,
    );
    let cli = |args: &[&str]| {
        sundial()
            .args(args)
            .args(["--broker", &v.url()])
            .envs(TEST_ENV.iter().copied())
            .output()
            .expect("sundial runs")
    };
    let out = cli(&["job", "trigger", "slow"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let occ = stdout(&out)
        .split('(')
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("the trigger prints its fire id")
        .to_string();
    let extract = format!("{occ}/extract");
    let started = tap.until(&extract, RunKind::Started).await;
    let worker = started.last().map(|r| r.worker.clone()).expect("started");

    let out = cli(&[
        "job",
        "cancel",
        &occ,
        "--reason",
        "wrong input file",
        "--as",
        "alice",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("cancel: {occ} cancelled"));

    // The running step is stopped (long before its 120 s), the others are
    // skipped, and the occurrence ends cancelled: nothing else of it.
    let mut records: Vec<RunEvent> = Vec::new();
    let settled = |rs: &[RunEvent]| {
        let stopped = rs
            .iter()
            .any(|r| r.fire_id == extract && r.kind == RunKind::Failed);
        let skipped = ["load", "page"].iter().all(|s| {
            rs.iter()
                .any(|r| r.fire_id == format!("{occ}/{s}") && r.kind == RunKind::Skipped)
        });
        stopped && skipped
    };
    while !settled(&records) {
        records.push(tap.next().await);
    }
    let mine = of(&records, &occ);
    let cancelled = mine
        .iter()
        .find(|r| r.fire_id == occ && r.kind == RunKind::Cancelled)
        .unwrap_or_else(|| panic!("a cancelled record: {mine:#?}"));
    assert_eq!(
        cancelled.reason.as_deref(),
        Some("cancelled by alice: wrong input file")
    );
    assert_eq!(cancelled.by.as_deref(), Some("alice"));
    let failed = mine
        .iter()
        .find(|r| r.fire_id == extract && r.kind == RunKind::Failed)
        .expect("extract stopped");
    assert_eq!(failed.worker, worker, "stopped by the worker running it");
    assert_eq!(failed.reason.as_deref(), Some("occurrence cancelled"));
    assert!(
        failed.duration_ms.is_some_and(|ms| ms < 60_000),
        "stopped, not run out: {failed:?}"
    );
    for s in ["load", "page"] {
        let skip = mine
            .iter()
            .find(|r| r.fire_id == format!("{occ}/{s}") && r.kind == RunKind::Skipped)
            .expect("skipped");
        assert_eq!(skip.reason.as_deref(), Some("occurrence cancelled"), "{s}");
    }
    assert!(
        !mine
            .iter()
            .any(|r| matches!(r.kind, RunKind::Started | RunKind::Fired)
                && (r.fire_id.ends_with("/load") || r.fire_id.ends_with("/page"))),
        "nothing after extract was published: {mine:#?}"
    );
    assert!(
        !mine.iter().any(|r| r.fire_id == occ
            && matches!(
                r.kind,
                RunKind::Succeeded | RunKind::Dead | RunKind::Retrying
            )),
        "it does not end again: {mine:#?}"
    );

    // Refusals, each naming fire_id: ended already; a lone job's fire; a
    // step's fire id.
    let out = cli(&["job", "cancel", &occ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has ended already (cancelled)"),
        "{}",
        stderr(&out)
    );
    let out = cli(&["job", "cancel", "lone@2026-01-01T00:00:00.000Z"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a workflow"), "{}", stderr(&out));
    let out = cli(&["job", "cancel", &extract]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("fire_id"), "{}", stderr(&out));
}
