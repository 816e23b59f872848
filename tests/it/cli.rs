//! The CLI as users run it.

use crate::util::{stderr, stdout, sundial};

#[test]
fn schedule_next_prints_instants_with_offsets_and_nothing_else() {
    let o = sundial()
        .args([
            "schedule",
            "next",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--after",
            "2026-03-28T12:00:00Z",
            "-n",
            "3",
        ])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "2026-03-29T03:00:00+02:00\n2026-03-30T02:30:00+02:00\n2026-03-31T02:30:00+02:00\n"
    );
}

#[test]
fn schedule_next_json_has_notes() {
    let o = sundial()
        .args([
            "schedule",
            "next",
            "0 * * * *",
            "--tz",
            "America/New_York",
            "--after",
            "2026-11-01T04:30:00Z",
            "-n",
            "3",
            "--json",
        ])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json array");
    assert_eq!(
        v,
        serde_json::json!([
            {"at": "2026-11-01T01:00:00-04:00", "utc": "2026-11-01T05:00:00Z", "note": "dst-overlap"},
            {"at": "2026-11-01T01:00:00-05:00", "utc": "2026-11-01T06:00:00Z", "note": "dst-overlap"},
            {"at": "2026-11-01T02:00:00-05:00", "utc": "2026-11-01T07:00:00Z", "note": null}
        ])
    );
    let gap = sundial()
        .args([
            "schedule",
            "next",
            "30 2 * * *",
            "--tz",
            "America/New_York",
            "--after",
            "2026-03-08T00:00:00Z",
            "-n",
            "1",
            "--json",
        ])
        .output()
        .expect("runs");
    assert!(
        stdout(&gap).contains("\"dst-gap-shifted\""),
        "{}",
        stdout(&gap)
    );
}

#[test]
fn schedule_next_bad_input_exits_2_with_one_line() {
    for (args, needle) in [
        (
            vec!["61 * * * *"],
            "invalid schedule \"61 * * * *\": minute must be 0-59",
        ),
        (vec!["0 0 30 2 *"], "never fires"),
        (
            vec!["* * * * *", "--tz", "Mars/Olympus"],
            "unknown time zone \"Mars/Olympus\"",
        ),
        (vec!["* * * * *", "--after", "yesterday"], "invalid --after"),
    ] {
        let o = sundial()
            .args(["schedule", "next"])
            .args(&args)
            .output()
            .expect("runs");
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&o), "", "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn config_show_layers_file_env_and_flags_and_masks_secrets() {
    let dir = std::env::temp_dir().join(format!("sundial-it-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("sundial.toml");
    std::fs::write(&file, "[topology]\nshards = 16\nprefix = \"fromfile\"\n[control]\nhmac_key = \"0123456789abcdef-secret\"\n")
        .expect("write settings");
    let o = sundial()
        .args(["config", "show", "--config"])
        .arg(&file)
        .args([
            "--prefix",
            "fromflag",
            "--broker",
            "amqp://u:hunter2@example.invalid:5672/v",
        ])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "8")
        .env("SUNDIAL__WORKER__CONCURRENCY", "4")
        .output()
        .expect("runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown: toml::Table = toml::from_str(&stdout(&o)).expect("toml output");
    assert_eq!(
        shown["topology"]["shards"].as_integer(),
        Some(8),
        "env beats file"
    );
    assert_eq!(
        shown["topology"]["prefix"].as_str(),
        Some("fromflag"),
        "flag beats file"
    );
    assert_eq!(shown["worker"]["concurrency"].as_integer(), Some(4));
    assert_eq!(
        shown["broker"]["url"].as_str(),
        Some("amqp://u:****@example.invalid:5672/v")
    );
    assert_eq!(shown["control"]["hmac_key"].as_str(), Some("****"));
    assert!(!stdout(&o).contains("hunter2") && !stdout(&o).contains("secret"));
}

#[test]
fn bad_setting_fails_at_start_naming_the_key() {
    let o = sundial()
        .args(["config", "show"])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "0")
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("topology.shards"), "{}", stderr(&o));
    let o = sundial()
        .args(["config", "show"])
        .env("SUNDIAL__TOPOLOGY__SHARDZ", "3")
        .output()
        .expect("runs");
    assert_eq!(
        o.status.code(),
        Some(2),
        "unknown keys are refused: {}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("shardz"), "{}", stderr(&o));
}

#[test]
fn tls_files_are_read_at_start_and_a_missing_one_is_named() {
    let out = sundial()
        .args([
            "topology",
            "apply",
            "--broker",
            "amqps://guest:guest@127.0.0.1:5671/%2f",
        ])
        .env(
            "SUNDIAL__BROKER__TLS__CA_FILE",
            "/nonexistent/sundial-ca.pem",
        )
        .output()
        .expect("runs");
    // A settings error (exit 2), found before anything connects.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("broker.tls.ca_file: cannot read /nonexistent/sundial-ca.pem"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn worker_flags_are_validated_like_settings() {
    for (args, key) in [
        (["--pool", "Bad.Pool"], "worker.pool"),
        (["--concurrency", "0"], "worker.concurrency"),
    ] {
        let out = sundial().arg("worker").args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{args:?}: {}", stderr(&out));
    }
}
