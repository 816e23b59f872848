//! The dashboard in a real browser: Debian's headless Chromium driven over
//! WebDriver (chromedriver, fantoccini) against a real scheduler and worker
//! on the real broker. Load the overview; search a job; pause it with a
//! reason and see `sundial job get` report it; trigger it and see the run
//! in its history; trigger a workflow with a payload from the dialog and
//! follow the occurrence's page to its end (its step graph, every shard,
//! the payload the step saw), the job page's graph and the list's strip;
//! replay a dead letter and see it leave the list. A second story, a bad
//! night signed in with a named token: a job page following a triggered
//! run, who did what, the failing jobs, a 390 px phone, a scheduler lost
//! and back. Each page is saved as a screenshot under
//! `target/tmp/dashboard/` (the ones in docs/dashboard.md come from here).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`.ci/run`
//! installs Debian's `chromium` and `chromium-driver`); a missing one fails
//! the test naming the package.

use sundial_testkit as util;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use util::{
    apply_jobs, free_addr, http_call, stderr, sundial, wait_status, Daemon, Vhost, TEST_ENV,
};

/// Every wait on the page.
const PAGE_WAIT: Duration = Duration::from_secs(30);

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        for (bin, package) in [
            ("/usr/bin/chromedriver", "chromium-driver"),
            ("/usr/bin/chromium", "chromium"),
        ] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: apt-get install {package} (.ci/run does)"
            );
        }
        let addr = free_addr();
        let port = addr.rsplit(':').next().expect("port").to_string();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // Listening is ready (its HTTP server keeps connections open, so a
        // read-to-end client would wait).
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver does not listen on {addr} within 20s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    // A profile per window: Chromium locks its profile directory.
    static WINDOWS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = WINDOWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile = std::env::temp_dir().join(format!("sundial-chromium-{}-{n}", std::process::id()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("a Chromium session through chromedriver: {e}"))
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&d).expect("screenshot dir");
    d
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let path = shots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    println!("screenshot: {}", path.display());
}

/// Waits (bounded) until `f` finds what it looks for.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {PAGE_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The texts of the elements `css` matches (empty while there are none).
async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap_or_default() {
        out.push(e.text().await.unwrap_or_default());
    }
    out
}

/// The ids (`data-id` / `data-fire`) of the rows of a table.
async fn row_keys(c: &Client, css: &str, attr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap_or_default() {
        if let Ok(Some(v)) = e.attr(attr).await {
            out.push(v);
        }
    }
    out
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} on the page: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Confirms the open dialog (after filling `fields`) and waits until it
/// closed (the action succeeded; an error keeps it open and fails here).
async fn confirm(c: &Client, fields: &[(&str, &str)]) {
    c.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Css("#modal:not([hidden]) #modal-ok"))
        .await
        .expect("the confirmation dialog opens");
    for (name, text) in fields {
        c.find(Locator::Css(&format!("#field-{name}")))
            .await
            .expect("dialog field")
            .send_keys(text)
            .await
            .expect("type into the dialog");
    }
    click(c, "#modal-ok").await;
    until("the dialog closes", || async {
        if modal_hidden(c).await {
            return Some(());
        }
        let err = texts(c, "#modal-error:not([hidden])").await;
        assert!(err.is_empty(), "the dialog shows an error: {err:?}");
        None
    })
    .await;
}

/// Opens `job`'s page and waits until it rendered (its next fires).
async fn open_job(c: &Client, base: &str, job: &str) {
    c.goto(&format!("{base}#/job/{job}"))
        .await
        .expect("job page");
    c.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Css("#upcoming-table"))
        .await
        .expect("the job page renders");
}

/// Triggers `job` through the API; its fire id.
fn trigger_by_api(addr: &str, job: &str) -> String {
    let (status, text) = http_call(
        addr,
        "POST",
        &format!("/api/v1/jobs/{job}/trigger"),
        &[],
        None,
    )
    .expect("trigger");
    assert_eq!(status, 200, "{text}");
    let r: Value = serde_json::from_str(&text).expect("JSON");
    r["result"]["fire_id"]
        .as_str()
        .expect("a fire id")
        .to_string()
}

/// Whether the dialog is closed.
async fn modal_hidden(c: &Client) -> bool {
    match c.find(Locator::Css("#modal")).await {
        Ok(m) => matches!(m.attr("hidden").await, Ok(Some(_))),
        Err(_) => false,
    }
}

fn api(addr: &str, path: &str) -> Value {
    let (status, text) = http_call(addr, "GET", path, &[], None).expect("API answers");
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_and_steers_jobs_in_a_real_browser() {
    let v = Vhost::new("dashboard");
    let work = std::env::temp_dir().join(format!("{}-work", v.name));
    std::fs::create_dir_all(&work).expect("work dir");
    let marker = work.join("hook-is-back");
    let addr = free_addr();
    let db = work.join("history.db");
    let db_s = db.display().to_string();
    let _scheduler = Daemon::start_with_env(
        &v,
        "dash-node",
        &[
            ("SUNDIAL__HTTP__ENABLED", "true"),
            ("SUNDIAL__HTTP__LISTEN", &addr),
            ("SUNDIAL__HISTORY__ENABLED", "true"),
            ("SUNDIAL__HISTORY__PATH", &db_s),
            ("SUNDIAL__SCHEDULER__ALERT_INTERVAL", "1s"),
        ],
    );
    let _worker = Daemon::worker(
        &v,
        "dash-worker",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")],
    );
    wait_status(&addr, "/readyz", 200, Duration::from_secs(30));
    let mut jobs = String::from(
        r#"
[[jobs]]
id = "report-nightly"
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
executor = { type = "noop" }
labels = { team = "finance" }

[[jobs]]
id = "cleanup-hourly"
schedule = "0 * * * *"
executor = { type = "noop" }

[[jobs]]
id = "nightly-etl"
schedule = "0 2 * * *"
labels = { team = "data" }
[[jobs.steps]]
id = "extract"
executor = { type = "shell", command = ["/bin/sh", "-c", "echo payload=$SUNDIAL_PAYLOAD"] }
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
id = "page-someone"
after = ["extract", "transform", "load"]
when = "failure"
executor = { type = "noop" }

[[jobs]]
id = "stuck-import"
schedule = "0 5 * * *"
[[jobs.steps]]
id = "fetch"
executor = { type = "shell", command = ["/bin/sh", "-c", "sleep 120"] }
[[jobs.steps]]
id = "import"
after = ["fetch"]
executor = { type = "noop" }
"#,
    );
    jobs.push_str(&format!(
        "\n[[jobs]]\nid = \"sync-partner-feed\"\nschedule = \"0 0 1 1 *\"\nretry = {{ max_attempts = 1 }}\nexecutor = {{ type = \"shell\", command = [\"/bin/sh\", \"-c\", \"test -e {} || {{ echo 'partner API: 503 Service Unavailable' >&2; exit 3; }}\"] }}\n",
        marker.display()
    ));
    // Three occurrences slower than their sla: late alerts.
    let t =
        chrono::DurationRound::duration_trunc(chrono::Utc::now(), chrono::TimeDelta::seconds(1))
            .expect("a whole second")
            + chrono::TimeDelta::seconds(3);
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    jobs.push_str(&format!(
        "\n[[jobs]]\nid = \"ledger-close\"\nschedule = \"* * * * * *\"\nstart_at = \"{}\"\nend_at = \"{}\"\nsla = \"1s\"\nexecutor = {{ type = \"shell\", command = [\"/bin/sh\", \"-c\", \"sleep 1.5\"] }}\n",
        stamp(t),
        stamp(t + chrono::TimeDelta::seconds(3))
    ));
    for i in 0..120 {
        jobs.push_str(&format!(
            "\n[[jobs]]\nid = \"tenant-{i:03}-export\"\nschedule = \"{} 4 * * *\"\nexecutor = {{ type = \"noop\" }}\nlabels = {{ tenant = \"t{i:03}\" }}\n",
            i % 60
        ));
    }
    apply_jobs(&v, &jobs);

    // A dead letter to replay: the feed fails once and is dead-lettered.
    let trigger = sundial()
        .args(["job", "trigger", "sync-partner-feed", "--broker", &v.url()])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("job trigger");
    assert!(trigger.status.success(), "{}", stderr(&trigger));
    let dead_fire = until("the failing feed is dead-lettered", || async {
        let d = api(&addr, "/api/v1/pools/default/dead");
        d["letters"][0]["fire_id"].as_str().map(str::to_string)
    })
    .await;
    // And a few runs for the charts.
    for _ in 0..3 {
        trigger_by_api(&addr, "cleanup-hourly");
    }

    let driver = Driver::start();
    let c = browser(&driver).await;
    let base = format!("http://{addr}/");

    // Overview: nodes, shards, pools, rates.
    c.goto(&base).await.expect("open the dashboard");
    c.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Css("#overview-cards"))
        .await
        .expect("the overview renders");
    let cards = texts(&c, "#overview-cards .card")
        .await
        .join(" | ")
        .to_lowercase();
    assert!(cards.contains("scheduler nodes"), "{cards}");
    assert!(
        cards.contains("4/4") && cards.contains("shards owned"),
        "every shard owned: {cards}"
    );
    let nodes = texts(&c, "#nodes-table tbody tr").await.join("\n");
    assert!(nodes.contains("dash-node"), "the node is listed: {nodes}");
    let workers = texts(&c, "#workers-table tbody tr").await.join("\n");
    assert!(
        workers.contains("dash-worker") && workers.contains("default"),
        "the worker is listed with its pool: {workers}"
    );
    let pools = texts(&c, "#pools-table tbody tr").await.join("\n");
    assert!(pools.starts_with("default"), "{pools}");
    screenshot(&c, "overview").await;

    // Jobs: 126 of them; a search narrows to one.
    c.goto(&format!("{base}#/jobs")).await.expect("jobs page");
    until("the job list", || async {
        let n = texts(&c, "#job-count").await;
        n.first().filter(|t| t.starts_with("126 jobs")).cloned()
    })
    .await;
    assert_eq!(
        row_keys(&c, "#jobs-table tbody tr", "data-id").await.len(),
        50,
        "one page of 50"
    );
    let history_length = || async {
        c.execute("return history.length", vec![])
            .await
            .expect("history length")
            .as_u64()
            .expect("a number")
    };
    let before = history_length().await;
    let search = c.find(Locator::Css("#search")).await.expect("search box");
    // In any case, typed slowly (results arrive between keystrokes): the box
    // keeps the focus and every keystroke, and no history entry is added.
    for key in ["RE", "PO", "RT"] {
        search.send_keys(key).await.expect("type a search");
        tokio::time::sleep(Duration::from_millis(400)).await; // a person typing, not a synchronisation
    }
    until("the search result", || async {
        let rows = row_keys(&c, "#jobs-table tbody tr", "data-id").await;
        (rows == ["report-nightly"]).then_some(())
    })
    .await;
    let focus = c
        .execute(
            "return [document.activeElement.id, document.activeElement.value]",
            vec![],
        )
        .await
        .expect("focus");
    assert_eq!(
        focus,
        json!(["search", "REPORT"]),
        "the search box keeps focus and keys"
    );
    assert_eq!(
        history_length().await,
        before,
        "no history entry per keystroke"
    );
    assert!(
        c.current_url()
            .await
            .expect("url")
            .as_str()
            .ends_with("#/jobs?q=REPORT"),
        "the address says the search"
    );
    screenshot(&c, "jobs").await;

    // Pause it with a reason from the list; the CLI sees the pause.
    click(&c, "#jobs-table tr[data-id='report-nightly'] button.pause").await;
    confirm(
        &c,
        &[("reason", "month-end close: finance asked to hold it (ana)")],
    )
    .await;
    until("the row shows the pause", || async {
        let state = texts(&c, "#jobs-table tr[data-id='report-nightly'] td.state").await;
        state
            .first()
            .filter(|s| s.contains("month-end close"))
            .cloned()
    })
    .await;
    let reply = util::job_get(&v, "report-nightly");
    assert_eq!(reply["paused"], true, "{reply}");
    assert_eq!(
        reply["paused_reason"],
        "month-end close: finance asked to hold it (ana)"
    );

    // Its page: trigger it, and the run appears in its history.
    open_job(&c, &base, "report-nightly").await;
    let reason = texts(&c, "#pause-reason").await.join("");
    assert!(
        reason.contains("month-end close"),
        "the page shows why: {reason}"
    );
    assert_eq!(
        texts(&c, "#upcoming-table tbody tr").await.len(),
        10,
        "next 10 fires"
    );
    click(&c, "button.trigger").await;
    confirm(&c, &[]).await;
    let fire = until("the triggered run in the history", || async {
        c.refresh().await.ok()?;
        c.wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Css("#duration-chart"))
            .await
            .ok()?;
        let fires = row_keys(&c, "#history-table tbody tr", "data-fire").await;
        let rows = texts(&c, "#history-table tbody tr").await;
        let i = fires
            .iter()
            .position(|f| f.starts_with("report-nightly@trigger:"))?;
        rows.get(i)
            .filter(|r| r.contains("succeeded"))
            .map(|_| fires[i].clone())
    })
    .await;
    screenshot(&c, "job").await;

    // Runs: the live tail has it.
    c.goto(&format!("{base}#/runs")).await.expect("runs page");
    until("the runs tail", || async {
        let fires = row_keys(&c, "#runs-table tbody tr", "data-fire").await;
        fires.contains(&fire).then_some(())
    })
    .await;
    screenshot(&c, "runs").await;

    // A workflow: its page draws the steps; a trigger with a payload and a
    // reason from the dialog; the toast links to the occurrence's page,
    // which follows it to its end: every step and shard, and the payload
    // the first step saw; the job list shows it as a strip.
    c.goto(&format!("{base}#/job/nightly-etl"))
        .await
        .expect("workflow page");
    let nodes = until("the step graph", || async {
        let steps = row_keys(&c, "#steps-graph g.step", "data-step").await;
        (steps.len() == 4).then_some(steps)
    })
    .await;
    assert_eq!(nodes, ["extract", "transform", "load", "page-someone"]);
    let note = texts(&c, "#job-steps p").await.join("");
    assert!(note.contains("No occurrence yet"), "{note}");
    click(&c, "button.trigger").await;
    confirm(
        &c,
        &[
            ("payload", r#"{"date": "2026-12-04"}"#),
            ("reason", "rerun after the late partner file"),
        ],
    )
    .await;
    click(&c, "#toast-link").await;
    let states = until("the occurrence ends on its page", || async {
        let mut states = Vec::new();
        for step in ["extract", "transform", "load", "page-someone"] {
            let css = format!("#run-graph g.step[data-step='{step}']");
            states.push(row_keys(&c, &css, "data-state").await.pop()?);
        }
        let head = texts(&c, "h1.fire-id .pill").await.join("");
        (head == "succeeded").then_some(states)
    })
    .await;
    assert_eq!(states, ["succeeded", "succeeded", "succeeded", "skipped"]);
    let occurrence = c
        .current_url()
        .await
        .expect("url")
        .fragment()
        .unwrap_or_default()
        .to_string();
    assert!(
        occurrence.starts_with("/run/nightly-etl%40trigger%3A"),
        "the toast links to the occurrence: {occurrence}"
    );
    let fires = row_keys(&c, "#run-table tbody tr", "data-fire").await;
    for k in 0..4 {
        assert!(
            fires
                .iter()
                .any(|f| f.ends_with(&format!("/transform#{k}/4"))),
            "shard {k} is listed: {fires:?}"
        );
    }
    let extract_output = c
        .find(Locator::Css(
            "#run-table tbody tr[data-fire$='/extract'] pre",
        ))
        .await
        .expect("extract's output")
        .prop("textContent")
        .await
        .expect("its text")
        .unwrap_or_default();
    assert!(
        extract_output.contains(r#"payload={"date":"2026-12-04"}"#),
        "the step ran with the dialog's payload: {extract_output}"
    );
    screenshot(&c, "run").await;
    // Its job page colours the graph by that occurrence and links to it.
    c.goto(&format!("{base}#/job/nightly-etl"))
        .await
        .expect("workflow page");
    until("the graph in the occurrence's states", || async {
        let s = row_keys(&c, "#steps-graph g.step", "data-state").await;
        (s == ["succeeded", "succeeded", "succeeded", "skipped"]).then_some(())
    })
    .await;
    let link = texts(&c, "#last-occurrence").await.join("");
    assert!(link.starts_with("nightly-etl@trigger:"), "{link}");
    screenshot(&c, "workflow").await;
    c.goto(&format!("{base}#/jobs?q=nightly"))
        .await
        .expect("jobs page");
    let strip = until("the workflow's strip", || async {
        let s = row_keys(&c, "#jobs-table .last-occurrence .strip span", "class").await;
        (s.len() == 4).then_some(s)
    })
    .await;
    assert_eq!(
        strip,
        ["s-succeeded", "s-succeeded", "s-succeeded", "s-skipped"],
        "one cell per step, in stage order"
    );

    // A stuck occurrence, cancelled from its page: the running step is
    // stopped, the next one never starts.
    let (status, text) = http_call(
        &addr,
        "POST",
        "/api/v1/jobs/stuck-import/trigger",
        &[],
        None,
    )
    .expect("trigger");
    assert_eq!(status, 200, "{text}");
    let stuck: Value = serde_json::from_str(&text).expect("JSON");
    let stuck = stuck["result"]["fire_id"]
        .as_str()
        .expect("a fire id")
        .to_string();
    c.goto(&format!("{base}#/run/{}", stuck.replace(':', "%3A")))
        .await
        .expect("the occurrence's page");
    until("fetch runs", || async {
        let s = row_keys(&c, "#run-graph g.step[data-step='fetch']", "data-state").await;
        (s == ["running"]).then_some(())
    })
    .await;
    click(&c, "#cancel-occurrence").await;
    confirm(&c, &[("reason", "the source is down")]).await;
    let states = until("the occurrence is cancelled", || async {
        let head = texts(&c, "h1.fire-id .pill").await.join("");
        let s = row_keys(&c, "#run-graph g.step", "data-state").await;
        (head == "cancelled" && s == ["failed", "skipped"]).then_some(s)
    })
    .await;
    assert_eq!(states, ["failed", "skipped"]);
    let rows = texts(&c, "#run-table tbody tr").await.join("\n");
    assert!(
        rows.contains("cancelled by (loopback): the source is down")
            && rows.contains("occurrence cancelled"),
        "who, why, and what it did to the steps: {rows}"
    );
    assert!(
        texts(&c, "#cancel-occurrence").await.is_empty(),
        "no cancel button once it ended"
    );
    screenshot(&c, "cancelled").await;

    // Dead letters: inspect, then replay (the partner is back) and see it
    // leave the list.
    c.goto(&format!("{base}#/dead?pool=default"))
        .await
        .expect("dead letters page");
    until("the dead letter", || async {
        let fires = row_keys(&c, "#dead-table tbody tr", "data-fire").await;
        fires.contains(&dead_fire).then_some(())
    })
    .await;
    click(
        &c,
        &format!("#dead-table tr[data-fire='{dead_fire}'] a.inspect"),
    )
    .await;
    let headers = until("the letter's headers", || async {
        let t = texts(&c, "#dead-headers").await.join("\n");
        t.contains("x-sundial-error").then_some(t)
    })
    .await;
    assert!(
        headers.contains("/bin/sh exited with"),
        "the reason is shown: {headers}"
    );
    let output = until("the last attempt's output", || async {
        texts(&c, "#dead-output").await.into_iter().next()
    })
    .await;
    assert!(output.contains("503 Service Unavailable"), "{output}");
    screenshot(&c, "dead-letters").await;
    std::fs::write(&marker, b"").expect("the partner is back");
    click(
        &c,
        &format!("#dead-table tr[data-fire='{dead_fire}'] input.pick"),
    )
    .await;
    click(&c, "#replay").await;
    confirm(&c, &[]).await;
    until("the letter leaves the list", || async {
        let fires = row_keys(&c, "#dead-table tbody tr", "data-fire").await;
        let page = texts(&c, "h1").await;
        (page.iter().any(|h| h == "Dead letters") && !fires.contains(&dead_fire)).then_some(())
    })
    .await;
    // The replay ran and succeeded.
    until("the replayed run succeeds", || async {
        let runs = api(&addr, "/api/v1/jobs/sync-partner-feed/runs");
        runs["runs"]
            .as_array()?
            .iter()
            .any(|r| r["outcome"] == "succeeded")
            .then_some(())
    })
    .await;
    let d = api(&addr, "/api/v1/pools/default/dead");
    assert_eq!(d["letters"], json!([]), "{d}");

    // Alerts: ledger-close's late occurrences, open, on the alerts page,
    // the job page (with its SLO) and the overview.
    c.goto(&format!("{base}#/alerts"))
        .await
        .expect("alerts page");
    let late = until("ledger-close's late alerts", || async {
        let ids = row_keys(&c, "#alerts-table tbody tr", "data-alert").await;
        let late: Vec<String> = ids
            .into_iter()
            .filter(|i| i.starts_with("late:ledger-close@"))
            .collect();
        (late.len() >= 2).then_some(late)
    })
    .await;
    let rows = texts(&c, "#alerts-table tbody tr").await.join("\n");
    assert!(
        rows.contains("open") && rows.contains("not succeeded within its sla (1s)"),
        "{rows}"
    );
    screenshot(&c, "alerts").await;
    click(
        &c,
        &format!(
            "#alerts-table tr[data-alert='{}'] a[href^='#/job/']",
            late[0]
        ),
    )
    .await;
    let slo = until("the job page's SLO", || async {
        texts(&c, "#job-slo").await.into_iter().next()
    })
    .await;
    assert!(slo.contains("succeeded within 1s"), "{slo}");
    let on_job = row_keys(&c, "#job-alerts-table tbody tr", "data-alert").await;
    assert!(
        late.iter().all(|a| on_job.contains(a)),
        "{late:?} on the job page: {on_job:?}"
    );
    c.execute(
        "document.getElementById('job-alerts').scrollIntoView()",
        vec![],
    )
    .await
    .expect("scrolled to the job's alerts");
    screenshot(&c, "job-alerts").await;
    // "every alert of this job" keeps the job.
    click(&c, "#job-alerts-all").await;
    let only = until("the job's alerts page", || async {
        let ids = row_keys(&c, "#alerts-table tbody tr", "data-alert").await;
        let chip = texts(&c, "#alerts-job").await;
        (!ids.is_empty() && !chip.is_empty()).then_some(ids)
    })
    .await;
    assert!(
        only.iter().all(|a| a.contains(":ledger-close@")),
        "only ledger-close's alerts: {only:?}"
    );
    c.goto(&base).await.expect("overview");
    let open = until("the open alerts card", || async {
        texts(&c, "#overview-cards .card")
            .await
            .into_iter()
            .find(|t| t.to_lowercase().contains("open alerts"))
    })
    .await;
    let n: usize = open
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count: {open:?}"));
    assert!(n >= late.len(), "{open:?}: at least {late:?}");

    // Pages say what they are; unknown ones say so.
    c.goto(&format!("{base}#/job/ledger-close"))
        .await
        .expect("job page");
    until("the job page", || async {
        texts(&c, "#job-slo").await.into_iter().next()
    })
    .await;
    let title = c.title().await.expect("title");
    assert!(title.starts_with("ledger-close · Job"), "{title}");
    // A destructive dialog: Cancel has the focus, Esc closes it and gives
    // the focus back.
    click(&c, "button.danger").await;
    c.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Css("#modal:not([hidden])"))
        .await
        .expect("the delete dialog");
    let focused = c
        .execute("return document.activeElement.id", vec![])
        .await
        .expect("focus");
    assert_eq!(
        focused,
        json!("modal-cancel"),
        "a destructive button is never the default"
    );
    c.active_element()
        .await
        .expect("focus")
        .send_keys("\u{e00c}")
        .await
        .expect("Esc");
    until("Esc closes the dialog", || async {
        modal_hidden(&c).await.then_some(())
    })
    .await;
    let focused = c
        .execute("return document.activeElement.className", vec![])
        .await
        .expect("focus");
    assert_eq!(focused, json!("danger"), "the focus is back on the button");
    assert_eq!(
        util::job_get(&v, "ledger-close")["id"],
        "ledger-close",
        "not deleted"
    );
    c.goto(&format!("{base}#/nowhere"))
        .await
        .expect("unknown page");
    let said = until("an unknown page", || async {
        texts(&c, "#not-found").await.into_iter().next()
    })
    .await;
    assert!(said.contains("#/nowhere"), "{said}");
    c.goto(&format!("{base}#/job/%E0%A4%A"))
        .await
        .expect("malformed id");
    let said = until("a malformed id", || async {
        texts(&c, "#not-found").await.into_iter().next()
    })
    .await;
    assert!(said.contains("not a well-formed job id"), "{said}");

    // Dead letters in two windows: each sees every letter, and a replay in
    // one while the other keeps listing finds what it named.
    std::fs::remove_file(&marker).expect("the partner goes down again");
    let mut fired = std::collections::BTreeSet::new();
    for _ in 0..8 {
        fired.insert(trigger_by_api(&addr, "sync-partner-feed"));
    }
    assert_eq!(fired.len(), 8, "{fired:?}");
    until("8 dead letters", || async {
        let d = api(&addr, "/api/v1/pools/default/dead");
        (d["letters"].as_array()?.len() == 8).then_some(())
    })
    .await;
    let c2 = browser(&driver).await;
    let dead_page = format!("{base}#/dead?pool=default");
    let listed = |c: &Client| {
        let c = c.clone();
        async move {
            let rows: std::collections::BTreeSet<String> =
                row_keys(&c, "#dead-table tbody tr", "data-fire")
                    .await
                    .into_iter()
                    .collect();
            rows
        }
    };
    c.goto(&dead_page).await.expect("window A");
    c2.goto(&dead_page).await.expect("window B");
    let a = until("window A lists them", || async {
        let r = listed(&c).await;
        (r.len() == 8).then_some(r)
    })
    .await;
    let b = until("window B lists them", || async {
        let r = listed(&c2).await;
        (r.len() == 8).then_some(r)
    })
    .await;
    assert_eq!(a, fired);
    assert_eq!(b, fired);
    let picked: Vec<String> = fired.iter().take(2).cloned().collect();
    for f in &picked {
        click(&c, &format!("#dead-table tr[data-fire='{f}'] input.pick")).await;
    }
    click(&c, "#replay").await;
    let replay = c.clone();
    let replayed = tokio::spawn(async move { confirm(&replay, &[]).await });
    // Window B keeps listing meanwhile: every listing is whole.
    let rest: std::collections::BTreeSet<String> = fired.iter().skip(2).cloned().collect();
    for _ in 0..6 {
        c2.goto(&format!("{base}#/")).await.expect("away");
        c2.goto(&dead_page).await.expect("back");
        let seen = until("window B lists", || async {
            let r = listed(&c2).await;
            (!r.is_empty()).then_some(r)
        })
        .await;
        assert!(
            seen == fired || seen == rest,
            "window B saw a part: {seen:?}"
        );
    }
    replayed
        .await
        .expect("the replay's dialog closed without an error");
    let toast = until("the replay's toast", || async {
        texts(&c, "#toast")
            .await
            .into_iter()
            .find(|t| t.contains("replay"))
    })
    .await;
    assert!(toast.contains("2 done"), "{toast}");
    // The two replayed fail again (the partner is still down) and come
    // back. Select all that match a filter, purge: the queue is empty.
    until("the replayed letters back", || async {
        let d = api(&addr, "/api/v1/pools/default/dead");
        (d["letters"].as_array()?.len() == 8).then_some(())
    })
    .await;
    c.goto(&format!("{base}#/dead?pool=default&job=SYNC"))
        .await
        .expect("filtered");
    until("the filtered list", || async {
        let r = listed(&c).await;
        (r == fired).then_some(())
    })
    .await;
    screenshot(&c, "dead-letters-filtered").await;
    click(&c, "#dead-select-all").await;
    click(&c, "#purge").await;
    confirm(&c, &[]).await;
    until("the queue empties", || async {
        let d = api(&addr, "/api/v1/pools/default/dead");
        d["letters"].as_array()?.is_empty().then_some(())
    })
    .await;
    let _ = c2.close().await;

    // Label chips filter the jobs; "their runs" carries the label to Runs.
    c.goto(&format!("{base}#/jobs")).await.expect("jobs page");
    click(&c, "#jobs-table tr[data-id='report-nightly'] a.chip").await;
    until("the jobs of team=finance", || async {
        let rows = row_keys(&c, "#jobs-table tbody tr", "data-id").await;
        (rows == ["report-nightly"]).then_some(())
    })
    .await;
    click(&c, "#label-runs").await;
    let jobs_of_runs = until("the runs of team=finance", || async {
        let rows = texts(&c, "#runs-table tbody tr td:nth-child(2) > a").await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert!(
        jobs_of_runs.iter().all(|j| j == "report-nightly"),
        "{jobs_of_runs:?}"
    );
    // Runs page past the newest 100: 100 more runs, then "older".
    for _ in 0..100 {
        trigger_by_api(&addr, "cleanup-hourly");
    }
    until("over 100 runs", || async {
        let page = api(
            &addr,
            "/api/v1/runs?limit=1000&job=cleanup-hourly&outcome=succeeded",
        );
        (page["runs"].as_array()?.len() >= 100).then_some(())
    })
    .await;
    c.goto(&format!("{base}#/runs?job=cleanup"))
        .await
        .expect("runs page");
    let first = until("the newest 100", || async {
        let rows = row_keys(&c, "#runs-table tbody tr", "data-fire").await;
        (rows.len() == 100).then_some(rows)
    })
    .await;
    click(&c, "#runs-older").await;
    let older = until("an older page", || async {
        let rows = row_keys(&c, "#runs-table tbody tr", "data-fire").await;
        let url = c.current_url().await.ok()?;
        (url.as_str().contains("cursor=") && !rows.is_empty() && rows != first).then_some(rows)
    })
    .await;
    assert!(
        older
            .iter()
            .all(|f| !first.contains(f) && f.starts_with("cleanup-hourly@")),
        "older runs, not the newest again: {older:?}"
    );
    c.find(Locator::Css("#runs-newest"))
        .await
        .expect("a way back to the newest");

    let _ = c.close().await;
    let _ = std::fs::remove_dir_all(&work);
}

/// A bad night, in a browser signed in with a named token (`ana`): trigger
/// a job and watch its page follow the run without a reload; pause and
/// resume it with reasons and see who did what in its audit trail (and who
/// paused, while paused); on a 390 px phone every column of Jobs and Runs
/// is reachable (tables scroll inside themselves, a 128-character id
/// wraps); the scheduler killed with the Overview open: the page keeps its
/// data and says "unreachable since …, retrying", and recovers by itself
/// when the scheduler is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_night_live_pages_who_did_what_a_phone_and_a_lost_scheduler() {
    const TOKEN: &str = "ana-admin-token-0123456789";
    let v = Vhost::new("dashboard-night");
    let work = std::env::temp_dir().join(format!("{}-work", v.name));
    std::fs::create_dir_all(&work).expect("work dir");
    let config = work.join("sundial.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nrequire_tokens = true\n[[http.tokens]]\nname = \"ana\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            sundial_core::auth::hash_token(TOKEN)
        ),
    )
    .expect("settings file");
    let config_arg = config.display().to_string();
    let addr = free_addr();
    let db = work.join("history.db").display().to_string();
    let env = [
        ("SUNDIAL__HTTP__ENABLED", "true"),
        ("SUNDIAL__HTTP__LISTEN", addr.as_str()),
        ("SUNDIAL__HISTORY__ENABLED", "true"),
        ("SUNDIAL__HISTORY__PATH", db.as_str()),
    ];
    let start = || {
        Daemon::spawn(
            &v,
            &["--config", &config_arg, "scheduler", "--node", "night-node"],
            "night-node",
            &env,
        )
    };
    util::topology_apply(&v);
    let scheduler = start();
    let _worker = Daemon::worker(
        &v,
        "night-worker",
        &[("SUNDIAL__WORKER__SHELL__ALLOW", "/bin/sh")],
    );
    wait_status(&addr, "/readyz", 200, Duration::from_secs(30));
    let long_id = format!("tenant-{}", "x".repeat(121));
    apply_jobs(
        &v,
        &format!(
            r#"
[[jobs]]
id = "slow-report"
schedule = "0 3 * * *"
executor = {{ type = "shell", command = ["/bin/sh", "-c", "sleep 4; echo report done"] }}

[[jobs]]
id = "flaky-export"
schedule = "0 5 * * *"
retry = {{ max_attempts = 1 }}
executor = {{ type = "shell", command = ["/bin/sh", "-c", "echo 'export: 500 from the warehouse' >&2; exit 3"] }}

[[jobs]]
id = "{long_id}"
schedule = "0 4 * * *"
executor = {{ type = "noop" }}
labels = {{ team = "tenants" }}
"#
        ),
    );

    let driver = Driver::start();
    let c = browser(&driver).await;
    let base = format!("http://{addr}/");
    c.goto(&base).await.expect("open the dashboard");
    c.execute(
        "sessionStorage.setItem('sundial-token', arguments[0])",
        vec![json!(TOKEN)],
    )
    .await
    .expect("sign in");
    // Loaded again with the token (the first load asked for one).
    c.refresh().await.expect("reload");

    // Trigger from the job page: the page follows the run (no reload).
    open_job(&c, &base, "slow-report").await;
    c.execute("window.stillHere = true", vec![])
        .await
        .expect("a mark on this document");
    click(&c, "button.trigger").await;
    confirm(&c, &[("reason", "check after the deploy")]).await;
    let run_link = until("the toast's link to the run", || async {
        let e = c.find(Locator::Css("#toast-link")).await.ok()?;
        e.attr("href").await.ok().flatten()
    })
    .await;
    assert!(
        run_link.starts_with("#/run/slow-report%40trigger%3A"),
        "{run_link}"
    );
    let row = "#history-table tbody tr[data-fire^='slow-report@trigger:']";
    until("the run shows running", || async {
        let t = texts(&c, row).await.join("");
        t.contains("running").then_some(())
    })
    .await;
    until("the run shows succeeded", || async {
        let t = texts(&c, row).await.join("");
        t.contains("succeeded").then_some(())
    })
    .await;
    assert_eq!(
        c.execute("return window.stillHere === true", vec![])
            .await
            .expect("mark"),
        json!(true),
        "followed without a reload"
    );

    // Pause and resume with reasons: who did what.
    click(&c, "button.pause").await;
    confirm(&c, &[("reason", "bank API down")]).await;
    let why = until("the pause, with who", || async {
        texts(&c, "#pause-reason").await.into_iter().next()
    })
    .await;
    assert!(
        why.contains("by ana") && why.contains("bank API down"),
        "{why}"
    );
    click(&c, "button.resume").await;
    confirm(&c, &[("reason", "bank API back")]).await;
    let trail = until("the audit trail", || async {
        let actions = row_keys(&c, "#audit-table tbody tr", "data-action").await;
        (actions.len() >= 4 && actions[..3] == ["resume", "pause", "trigger"]).then_some(actions)
    })
    .await;
    assert_eq!(
        trail.last().map(String::as_str),
        Some("upsert-many"),
        "the jobs file applied: {trail:?}"
    );
    let by = texts(&c, "#audit-table tbody td.by").await;
    assert_eq!(by[..3], ["ana", "ana", "ana"], "the token's name: {by:?}");
    let reasons = texts(&c, "#audit-table tbody td.reason").await;
    assert_eq!(
        reasons[..3],
        ["bank API back", "bank API down", "check after the deploy"],
        "the past pause reason stays after the resume"
    );
    c.execute(
        "document.getElementById('job-audit').scrollIntoView()",
        vec![],
    )
    .await
    .expect("scrolled to the trail");
    screenshot(&c, "job-audit").await;

    // Triage: the list shows each job's last run, failures in 24 h and its
    // last 10 runs; "failing" keeps the jobs that failed.
    let (status, text) = http_call(
        &addr,
        "POST",
        "/api/v1/jobs/flaky-export/trigger",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        None,
    )
    .expect("trigger");
    assert_eq!(status, 200, "{text}");
    c.goto(&format!("{base}#/jobs")).await.expect("jobs page");
    until("the last runs in the list", || async {
        let slow = texts(&c, "#jobs-table tr[data-id='slow-report'] td.last-run").await;
        let flaky = texts(&c, "#jobs-table tr[data-id='flaky-export'] td.fail24").await;
        (slow.first().is_some_and(|t| t.contains("succeeded")) && flaky == ["1"]).then_some(())
    })
    .await;
    let strip = row_keys(
        &c,
        "#jobs-table tr[data-id='slow-report'] td.last10 .strip span",
        "class",
    )
    .await;
    assert_eq!(strip, ["s-succeeded"], "one run so far");
    click(&c, "#failing-filter").await;
    let failing = until("the failing jobs", || async {
        let rows = row_keys(&c, "#failing-table tbody tr", "data-id").await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(failing, ["flaky-export"]);
    let now = texts(&c, "#failing-table tbody tr td:nth-child(4)").await;
    assert_eq!(now, ["failing"], "its newest run failed");
    screenshot(&c, "jobs-failing").await;
    click(&c, "#failing-filter").await;

    // A phone: every column reachable, the page itself never wider.
    c.set_window_size(390, 844).await.expect("a 390 px window");
    let reachable = |table: &'static str, cell: String| {
        let c = c.clone();
        async move {
            c.execute(
                "const t = document.querySelector(arguments[0]); t.scrollLeft = t.scrollWidth; \
                 const b = document.querySelector(arguments[1]).getBoundingClientRect(); \
                 return [b.left >= 0 && b.right <= window.innerWidth + 1, \
                         document.documentElement.scrollWidth <= window.innerWidth + 1]",
                vec![json!(table), json!(cell)],
            )
            .await
            .expect("measured")
        }
    };
    c.goto(&format!("{base}#/jobs")).await.expect("jobs page");
    until("the jobs", || async {
        let n = row_keys(&c, "#jobs-table tbody tr", "data-id").await;
        (n.len() == 3).then_some(())
    })
    .await;
    screenshot(&c, "jobs-390").await;
    assert_eq!(
        reachable(
            "#jobs-table",
            format!("#jobs-table tr[data-id='{long_id}'] button.trigger")
        )
        .await,
        json!([true, true]),
        "the long id's actions are reachable, the page does not scroll sideways"
    );
    c.goto(&format!("{base}#/runs")).await.expect("runs page");
    until("the runs", || async {
        let n = row_keys(&c, "#runs-table tbody tr", "data-fire").await;
        (!n.is_empty()).then_some(())
    })
    .await;
    screenshot(&c, "runs-390").await;
    assert_eq!(
        reachable(
            "#runs-table",
            "#runs-table tbody tr td:last-child".to_string()
        )
        .await,
        json!([true, true]),
        "the last column of Runs is reachable"
    );
    c.set_window_size(1280, 1000).await.expect("a wide window");

    // The scheduler goes away with the Overview open, and comes back.
    c.goto(&base).await.expect("overview");
    let at = until("the overview", || async {
        texts(&c, "#overview-at").await.into_iter().next()
    })
    .await;
    drop(scheduler);
    let banner = until("the unreachable banner", || async {
        texts(&c, "#offline:not([hidden])")
            .await
            .into_iter()
            .find(|t| t.contains("unreachable since"))
    })
    .await;
    assert!(banner.contains("retrying"), "{banner}");
    assert!(
        !texts(&c, "#overview-cards .card").await.is_empty(),
        "the page keeps its last data"
    );
    screenshot(&c, "unreachable").await;
    let _scheduler = start();
    until("the page recovers", || async {
        let banner = texts(&c, "#offline:not([hidden])").await;
        let now = texts(&c, "#overview-at").await.into_iter().next()?;
        (banner.is_empty() && now != at).then_some(())
    })
    .await;

    let _ = c.close().await;
    let _ = std::fs::remove_dir_all(&work);
}
