//! The HTTP API (`/api/v1`) of a scheduler: job search and paging from its
//! registry view, one job with its next fires and DST notes, writes through
//! the control queue (upsert, delete, pause with a reason, resume, trigger,
//! backfill) with the control protocol's field names, errors with the right
//! status, and bearer tokens with the read and admin roles.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{
    apply_jobs, free_addr, http_call, stderr, stdout, sundial, wait_status, Daemon, Vhost, TEST_ENV,
};

/// A scheduler on `v` serving the API on `addr`, with `env` on top.
fn scheduler(v: &Vhost, addr: &str, env: &[(&str, &str)]) -> Daemon {
    let mut all = vec![
        ("SUNDIAL__HTTP__ENABLED", "true"),
        ("SUNDIAL__HTTP__LISTEN", addr),
    ];
    all.extend_from_slice(env);
    let d = Daemon::start_with_env(v, "api-node", &all);
    wait_status(addr, "/readyz", 200, Duration::from_secs(30));
    d
}

/// `method path` with an optional JSON body and token → (status, JSON).
fn call(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let bytes = body.map(|b| b.to_string().into_bytes());
    let (status, text) = http_call(addr, method, path, &headers, bytes.as_deref())
        .unwrap_or_else(|| panic!("{method} {path}: nothing answers on {addr}"));
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
    (status, v)
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    call(addr, "GET", path, None, None)
}

fn post(addr: &str, path: &str, body: Value) -> (u16, Value) {
    call(addr, "POST", path, Some(body), None)
}

/// Asserts an error answer: its status and the field it names.
#[track_caller]
fn refused(got: (u16, Value), status: u16, field: &str) -> String {
    assert_eq!(got.0, status, "status of {}", got.1);
    assert_eq!(got.1["error"]["field"], json!(field), "field of {}", got.1);
    got.1["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const JOBS: &str = r#"
[[jobs]]
id = "berlin-weekly"
schedule = "30 2 * * 0"
timezone = "Europe/Berlin"
executor = { type = "noop" }
labels = { team = "ops" }
"#;

#[test]
fn jobs_are_searched_paged_and_changed_through_the_api() {
    let v = Vhost::new("api");
    let addr = free_addr();
    let _s = scheduler(&v, &addr, &[]);
    let mut file = JOBS.to_string();
    for i in 0..30 {
        let team = if i % 3 == 0 { "ops" } else { "data" };
        file.push_str(&format!(
            "[[jobs]]\nid = \"yearly-{i:02}\"\nschedule = \"0 0 1 1 *\"\nexecutor = {{ type = \"noop\" }}\nlabels = {{ team = \"{team}\" }}\n"
        ));
    }
    apply_jobs(&v, &file);

    // Every job once, in id order, page by page.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            None => "/api/v1/jobs?limit=7".to_string(),
            Some(c) => format!("/api/v1/jobs?limit=7&cursor={c}"),
        };
        let (status, page) = get(&addr, &path);
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 31);
        for j in page["jobs"].as_array().expect("jobs") {
            seen.push(j["id"].as_str().expect("id").to_string());
        }
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 31, "every job once: {seen:?}");
    assert_eq!(seen, sorted, "in id order, no duplicates");

    // Search by id substring, label and pause state.
    let (_, p) = get(&addr, "/api/v1/jobs?q=berlin");
    assert_eq!(p["total"], 1);
    assert_eq!(p["jobs"][0]["id"], "berlin-weekly");
    let (_, p) = get(&addr, "/api/v1/jobs?label=team%3Dops&q=yearly");
    assert_eq!(p["total"], 10, "yearly-00, -03, … -27: {p}");
    let (_, p) = get(&addr, "/api/v1/jobs?paused=true");
    assert_eq!(p["total"], 0);
    let (_, p) = get(&addr, "/api/v1/jobs?sort=next&limit=1");
    assert_eq!(p["jobs"][0]["id"], "berlin-weekly", "it fires first: {p}");

    // One job: its next fires in its zone, with the DST note of the
    // spring-forward Sunday (2027-03-28, 02:30 does not exist in Berlin).
    let (status, j) = get(&addr, "/api/v1/jobs/berlin-weekly?next=30");
    assert_eq!(status, 200, "{j}");
    let upcoming = j["upcoming"].as_array().expect("upcoming");
    assert_eq!(upcoming.len(), 30);
    let dst: Vec<&Value> = upcoming.iter().filter(|o| !o["note"].is_null()).collect();
    assert_eq!(dst.len(), 1, "one DST note in 30 weeks: {upcoming:?}");
    assert!(
        dst[0]["local"]
            .as_str()
            .unwrap_or("")
            .starts_with("2027-03-28T03:"),
        "the gap's occurrence runs at 03:00 local: {dst:?}"
    );
    assert_eq!(j["job"]["timezone"], "Europe/Berlin");

    // Pause with a reason: stored, and `sundial job get` shows it.
    let (status, r) = post(
        &addr,
        "/api/v1/jobs/berlin-weekly/pause",
        json!({"reason": "DB migration until Friday (ana)"}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["changed"], true);
    let got = crate::util::job_get(&v, "berlin-weekly");
    assert_eq!(got["paused"], true, "{got}");
    assert_eq!(got["paused_reason"], "DB migration until Friday (ana)");
    let listed = crate::util::sundial()
        .args(["job", "list", "--broker", &v.url()])
        .envs(crate::util::TEST_ENV.iter().copied())
        .output()
        .expect("job list");
    let table = crate::util::stdout(&listed);
    assert!(
        table.lines().any(|l| l.starts_with("berlin-weekly")
            && l.trim_end().ends_with("DB migration until Friday (ana)")),
        "`sundial job list` shows the reason: {table}"
    );
    let (_, p) = get(&addr, "/api/v1/jobs?paused=true");
    assert_eq!(
        p["jobs"][0]["paused_reason"],
        "DB migration until Friday (ana)"
    );
    assert!(
        p["jobs"][0]["next"].is_null(),
        "a paused job has no next fire"
    );
    let (status, r) = post(&addr, "/api/v1/jobs/berlin-weekly/resume", json!({}));
    assert_eq!(
        (status, &r["result"]["changed"]),
        (200, &json!(true)),
        "{r}"
    );
    let (_, j) = get(&addr, "/api/v1/jobs/berlin-weekly?next=0");
    assert_eq!(j["paused"], false);
    assert!(
        j["paused_reason"].is_null(),
        "a resume clears the reason: {j}"
    );

    // Trigger: the confirmed fire id.
    let (status, r) = post(&addr, "/api/v1/jobs/yearly-01/trigger", json!({}));
    assert_eq!(status, 200, "{r}");
    assert!(
        r["result"]["fire_id"]
            .as_str()
            .unwrap_or("")
            .starts_with("yearly-01@trigger:"),
        "{r}"
    );

    // Backfill three New Years; the overlap policy decides how many fire.
    let window = json!({"from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:01Z"});
    let (status, r) = post(&addr, "/api/v1/jobs/yearly-02/backfill", window.clone());
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["occurrences"], 3);
    assert_eq!(r["result"]["fired"], 3);
    assert_eq!(r["result"]["first"], "2024-01-01T00:00:00.000Z");
    let mut forbid = window.clone();
    forbid["overlap"] = json!("forbid");
    let (_, r) = post(&addr, "/api/v1/jobs/yearly-02/backfill", forbid);
    assert_eq!(
        (&r["result"]["fired"], &r["result"]["skipped"]),
        (&json!(1), &json!(2)),
        "{r}"
    );
    let msg = refused(
        post(
            &addr,
            "/api/v1/jobs/yearly-02/backfill",
            json!({"from": "2026-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}),
        ),
        422,
        "to",
    );
    assert!(msg.contains("future"), "{msg}");
    refused(
        post(
            &addr,
            "/api/v1/jobs/yearly-02/backfill",
            json!({"from": "2026-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"}),
        ),
        400,
        "to",
    );
    refused(
        post(
            &addr,
            "/api/v1/jobs/yearly-02/backfill",
            json!({"to": "2025-01-01T00:00:00Z"}),
        ),
        400,
        "from",
    );
    // The CLI has the same command.
    let out = sundial()
        .args([
            "job",
            "backfill",
            "yearly-03",
            "--from",
            "2025-01-01T00:00:00Z",
            "--to",
            "2025-01-01T00:00:01Z",
            "--json",
            "--broker",
            &v.url(),
        ])
        .envs(TEST_ENV.iter().copied())
        .output()
        .expect("job backfill");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"fired\": 1"), "{}", stdout(&out));

    // Upsert and delete; refusals name the control protocol's field.
    let job = json!({"id": "made-by-api", "schedule": "*/5 * * * *", "executor": {"type": "noop"}});
    let (status, r) = post(&addr, "/api/v1/jobs", job);
    assert_eq!(
        (status, &r["result"]["changed"]),
        (200, &json!(true)),
        "{r}"
    );
    refused(
        post(
            &addr,
            "/api/v1/jobs",
            json!({"id": "bad", "schedule": "61 * * * *", "executor": {"type": "noop"}}),
        ),
        422,
        "job.schedule",
    );
    refused(
        post(
            &addr,
            "/api/v1/jobs",
            json!({"id": "bad", "schedul": "* * * * *"}),
        ),
        400,
        "job.schedul",
    );
    let (status, _) = call(&addr, "DELETE", "/api/v1/jobs/made-by-api", None, None);
    assert_eq!(status, 200);
    refused(get(&addr, "/api/v1/jobs/made-by-api"), 404, "id");
    refused(
        post(&addr, "/api/v1/jobs/no-such-job/trigger", json!({})),
        404,
        "id",
    );

    // Errors of the request itself.
    refused(get(&addr, "/api/v1/jobs?limit=5&colour=red"), 400, "colour");
    refused(get(&addr, "/api/v1/jobs?limit=0"), 400, "limit");
    refused(get(&addr, "/api/v1/jobs?paused=maybe"), 400, "paused");
    refused(
        post(&addr, "/api/v1/jobs/yearly-01/pause", json!({"reason": 5})),
        400,
        "reason",
    );
    refused(
        post(
            &addr,
            "/api/v1/jobs/yearly-01/pause",
            json!({"reason": "x".repeat(501)}),
        ),
        400,
        "reason",
    );
    let (status, text) =
        http_call(&addr, "POST", "/api/v1/jobs", &[], Some(b"{not json")).expect("answer");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"field\":\"body\""), "{text}");
    let big = vec![b' '; 2 * 1024 * 1024];
    // By hand: the server refuses it by its Content-Length, before the
    // body is sent, which a client library would report as a broken write.
    let (status, _, text) =
        crate::util::raw_http(&addr, "POST", "/api/v1/jobs", &[], Some(&big)).expect("answer");
    assert_eq!(status, 413, "{text}");
    let (status, _) = get(&addr, "/api/v1/nothing-here");
    assert_eq!(status, 404);
    let (status, head, _) =
        crate::util::http_exchange(&addr, "PUT", "/api/v1/jobs", &[], Some(b"{}")).expect("answer");
    assert_eq!(status, 405);
    assert!(
        head.iter()
            .any(|(k, v)| k == "allow" && v == "GET, HEAD, POST"),
        "a 405 says what is allowed: {head:?}"
    );
    let (status, _) = call(&addr, "POST", "/api/v1/nothing-here", Some(json!({})), None);
    assert_eq!(status, 404, "a write to no endpoint is a 404, not a 405");

    // Dead letters: an unknown pool, a replay of letters that are not there.
    refused(get(&addr, "/api/v1/pools/no-such-pool/dead"), 404, "pool");
    let (status, d) = get(&addr, "/api/v1/pools/default/dead");
    assert_eq!((status, &d["letters"]), (200, &json!([])), "{d}");
    let msg = refused(
        post(
            &addr,
            "/api/v1/pools/default/dead/replay",
            json!({"fire_ids": ["gone@2026-01-01T00:00:00.000Z"]}),
        ),
        409,
        "fire_ids",
    );
    assert!(msg.contains("not in sundial.dead.default"), "{msg}");
    refused(
        post(&addr, "/api/v1/pools/default/dead/purge", json!({})),
        400,
        "fire_ids",
    );
    refused(
        post(
            &addr,
            "/api/v1/pools/default/dead/purge",
            json!({"every": true}),
        ),
        400,
        "every",
    );

    // Another site's page cannot use the open API through the browser: a
    // cross-origin write, or a host name rebound to 127.0.0.1.
    let pause = "/api/v1/jobs/yearly-05/pause";
    let (status, text) = http_call(
        &addr,
        "POST",
        pause,
        &[("Origin", "http://evil.example")],
        Some(b"{}"),
    )
    .expect("answer");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("\"field\":\"origin\""), "{text}");
    let (status, text) = http_call(
        &addr,
        "GET",
        "/api/v1/jobs",
        &[("Host", "evil.example:9797")],
        None,
    )
    .expect("answer");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("\"field\":\"host\""), "{text}");
    let own = format!("http://{addr}");
    let (status, text) = http_call(
        &addr,
        "POST",
        pause,
        &[("Origin", own.as_str())],
        Some(b"{}"),
    )
    .expect("answer");
    assert_eq!(status, 200, "the dashboard's own origin may write: {text}");

    // The OpenAPI document is served.
    let (status, doc) = get(&addr, "/api/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(
        doc["paths"]["/api/v1/jobs/{id}/backfill"].is_object(),
        "{doc}"
    );
}

#[test]
fn tokens_separate_readers_from_admins() {
    let v = Vhost::new("api-auth");
    let addr = free_addr();
    let hash = |t: &str| sundial_core::auth::hash_token(t);
    let config = std::env::temp_dir().join(format!("{}-sundial.toml", v.name));
    std::fs::write(
        &config,
        format!(
            "[http]\nrequire_tokens = true\n[[http.tokens]]\nname = \"viewer\"\nrole = \"read\"\nsha256 = \"{}\"\n[[http.tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            hash("read-secret"),
            hash("admin-secret")
        ),
    )
    .expect("settings file");
    let config_arg = config.display().to_string();
    let all = [
        ("SUNDIAL__HTTP__ENABLED", "true"),
        ("SUNDIAL__HTTP__LISTEN", addr.as_str()),
    ];
    crate::util::topology_apply(&v);
    let _s = Daemon::spawn(
        &v,
        &["--config", &config_arg, "scheduler", "--node", "auth-node"],
        "auth-node",
        &all,
    );
    // /readyz stays open (probes and scrapes carry no token).
    wait_status(&addr, "/readyz", 200, Duration::from_secs(30));
    apply_jobs(&v, JOBS);

    let jobs = "/api/v1/jobs";
    refused(call(&addr, "GET", jobs, None, None), 401, "authorization");
    refused(
        call(&addr, "GET", jobs, None, Some("wrong")),
        401,
        "authorization",
    );
    let (status, page) = call(&addr, "GET", jobs, None, Some("read-secret"));
    assert_eq!((status, &page["total"]), (200, &json!(1)), "{page}");
    // The scheme is case-insensitive (RFC 9110).
    let (status, text) = http_call(
        &addr,
        "GET",
        jobs,
        &[("Authorization", "bearer read-secret")],
        None,
    )
    .expect("answer");
    assert_eq!(status, 200, "lower-case scheme: {text}");
    let pause = "/api/v1/jobs/berlin-weekly/pause";
    let msg = refused(
        call(
            &addr,
            "POST",
            pause,
            Some(json!({"reason": "r"})),
            Some("read-secret"),
        ),
        403,
        "authorization",
    );
    assert!(msg.contains("read"), "{msg}");
    refused(
        call(&addr, "POST", pause, Some(json!({"reason": "r"})), None),
        401,
        "authorization",
    );
    let (status, r) = call(
        &addr,
        "POST",
        pause,
        Some(json!({"reason": "by ops"})),
        Some("admin-secret"),
    );
    assert_eq!(status, 200, "{r}");
    let (_, j) = call(
        &addr,
        "GET",
        "/api/v1/jobs/berlin-weekly",
        None,
        Some("read-secret"),
    );
    assert_eq!(j["paused_reason"], "by ops");
    // Behind a reverse proxy (another Host and Origin) the token is what
    // counts.
    let (status, text) = http_call(
        &addr,
        "POST",
        "/api/v1/jobs/berlin-weekly/resume",
        &[
            ("Authorization", "Bearer admin-secret"),
            ("Host", "sundial.example.com"),
            ("Origin", "https://sundial.example.com"),
        ],
        Some(b"{}"),
    )
    .expect("answer");
    assert_eq!(status, 200, "{text}");
    let (status, _) = crate::util::http_get(&addr, "/metrics").expect("metrics");
    assert_eq!(status, 200, "/metrics needs no token");
    let _ = std::fs::remove_file(&config);
}

/// Every write is in the audit trail with who, when and why, whichever
/// door it came through: the CLI (`--as`, `--reason`), the open loopback
/// API (the body's `by`, else `(loopback)`); a no-op and a dry run write
/// nothing; `sundial job log` prints the trail; a deleted job's trail stays.
#[test]
fn every_write_is_in_the_audit_trail_with_who_and_why() {
    let v = Vhost::new("api-audit");
    let addr = free_addr();
    let db = std::env::temp_dir().join(format!("{}-history.db", v.name));
    let _ = std::fs::remove_file(&db);
    let db_arg = db.display().to_string();
    let _s = scheduler(
        &v,
        &addr,
        &[
            ("SUNDIAL__HISTORY__ENABLED", "true"),
            ("SUNDIAL__HISTORY__PATH", &db_arg),
        ],
    );
    apply_jobs(&v, JOBS);
    let job = "berlin-weekly";
    let cli = |args: &[&str]| {
        let mut c = sundial();
        c.args(args)
            .args(["--broker", &v.url()])
            .envs(TEST_ENV.iter().copied());
        let out = crate::util::output_within(c, Duration::from_secs(60), &format!("{args:?}"));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    cli(&[
        "job",
        "pause",
        job,
        "--as",
        "carol",
        "--reason",
        "upstream down",
    ]);
    let (_, j) = get(&addr, &format!("/api/v1/jobs/{job}"));
    assert_eq!(
        (&j["paused_reason"], &j["paused_by"]),
        (&json!("upstream down"), &json!("carol")),
        "{j}"
    );
    // Paused already: changes nothing, writes nothing.
    cli(&["job", "pause", job, "--as", "carol"]);
    let path = format!("/api/v1/jobs/{job}");
    let (status, r) = post(
        &addr,
        &format!("{path}/resume"),
        json!({"by": "dave", "reason": "upstream back"}),
    );
    assert_eq!(status, 200, "{r}");
    let (status, r) = post(&addr, &format!("{path}/trigger"), json!({}));
    assert_eq!(status, 200, "{r}");
    let fire_id = r["result"]["fire_id"]
        .as_str()
        .expect("fire id")
        .to_string();
    // Relative times; a dry run counts and fires nothing.
    let (status, r) = post(
        &addr,
        &format!("{path}/backfill"),
        json!({"from": "30d", "to": "0s", "dry_run": true}),
    );
    assert_eq!(status, 200, "{r}");
    assert!(
        r["result"]["occurrences"].as_u64().is_some_and(|n| n >= 4),
        "{r}"
    );
    let (status, text) = crate::util::http_call(
        &addr,
        "DELETE",
        &path,
        &[],
        Some(br#"{"reason": "replaced by berlin-daily"}"#),
    )
    .expect("answer");
    assert_eq!(status, 200, "{text}");

    // The index reads the trail from the history stream.
    let trail = crate::util::poll_until(
        Duration::from_secs(20),
        "five audit entries of the job",
        || {
            let (_, page) = get(&addr, &format!("/api/v1/audit?job={job}"));
            let entries = page["entries"].as_array()?.clone();
            (entries.len() >= 5).then_some(entries)
        },
        || format!("{}", get(&addr, &format!("/api/v1/audit?job={job}")).1),
    );
    let seen: Vec<(String, String, String)> = trail
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
            (s("action"), s("by"), s("reason"))
        })
        .collect();
    let user = std::env::var("USER").unwrap_or_else(|_| "-".into());
    let want = |a: &str, b: &str, r: &str| (a.to_string(), b.to_string(), r.to_string());
    assert_eq!(
        seen,
        [
            want("delete", "(loopback)", "replaced by berlin-daily"),
            want("trigger", "(loopback)", "-"),
            want("resume", "dave", "upstream back"),
            want("pause", "carol", "upstream down"),
            want("upsert", if user.is_empty() { "-" } else { &user }, "-"),
        ],
        "newest first, no entry for the no-op pause or the dry run: {trail:?}"
    );
    assert_eq!(trail[1]["detail"], json!(format!("fired {fire_id}")));
    assert!(
        trail
            .iter()
            .all(|e| e["node"] == "api-node" && e["at"].is_string()),
        "{trail:?}"
    );
    // Filters and paging.
    let (_, by_dave) = get(&addr, "/api/v1/audit?by=dave");
    assert_eq!(
        by_dave["entries"].as_array().map(Vec::len),
        Some(1),
        "{by_dave}"
    );
    let (_, first) = get(&addr, &format!("/api/v1/audit?job={job}&limit=2"));
    let next = first["next"].as_str().expect("a next page").to_string();
    let (_, rest) = get(
        &addr,
        &format!("/api/v1/audit?job={job}&limit=10&cursor={next}"),
    );
    assert_eq!(rest["entries"].as_array().map(Vec::len), Some(3), "{rest}");
    refused(get(&addr, "/api/v1/audit?action=explode"), 400, "action");
    refused(get(&addr, "/api/v1/audit?cursor=abc"), 400, "cursor");

    // The CLI prints the trail of the deleted job, oldest first.
    let out = cli(&["job", "log", job, "--api", &format!("http://{addr}")]);
    let text = stdout(&out);
    let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s:?} in {text}"));
    assert!(at("upstream down") < at("upstream back"), "{text}");
    assert!(at("carol") < at("replaced by berlin-daily"), "{text}");
    let _ = std::fs::remove_file(&db);
}
