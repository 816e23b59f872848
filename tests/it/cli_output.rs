//! The command line people expect: shell completions, tables that stay
//! aligned with long job ids, progress on a terminal and silence when piped.

use crate::util::{job_apply, stderr, stdout, sundial, SchedulerProcess, Vhost};

#[test]
fn completions_for_each_shell_and_one_line_for_an_unknown_one() {
    for (shell, marker) in [
        ("bash", "complete -F _sundial"),
        ("zsh", "#compdef sundial"),
        ("fish", "complete -c sundial"),
    ] {
        let out = sundial()
            .args(["completions", shell])
            .output()
            .expect("runs");
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("dlq"), "{shell} completes subcommands");
    }
    let out = sundial()
        .args(["completions", "tcsh"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("possible values: bash"), "{err}");
}

#[test]
fn job_list_columns_stay_aligned_with_long_ids_and_apply_is_quiet_when_piped() {
    let v = Vhost::new("cli-out");
    let _s = SchedulerProcess::start(&v, "cli-out");
    let long = "a".repeat(100);
    let mut jobs: Vec<serde_json::Value> = vec![
        serde_json::json!({"id": "short", "schedule": "@hourly", "executor": {"type": "noop"}}),
        serde_json::json!({"id": long, "schedule": "@daily", "executor": {"type": "noop"}}),
    ];
    // Enough jobs for a progress bar, were stderr a terminal.
    jobs.extend((0..1_500).map(|i| {
        serde_json::json!({"id": format!("bulk-{i:04}"), "schedule": "@hourly", "executor": {"type": "noop"}})
    }));
    let out = job_apply(
        &v,
        serde_json::to_string(&jobs).expect("json").as_bytes(),
        "json",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "nothing but the result when piped");

    let out = sundial()
        .args(["job", "list", "--broker", &v.url()])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .output()
        .expect("job list");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.first().expect("a header");
    let col = header.find("SCHEDULE").expect("SCHEDULE column");
    for l in lines
        .iter()
        .filter(|l| l.starts_with("short") || l.starts_with(&long))
    {
        assert_eq!(l.find('@'), Some(col), "aligned under SCHEDULE:\n{text}");
    }
}

#[test]
fn job_apply_shows_progress_on_a_terminal() {
    let v = Vhost::new("cli-tty");
    let _s = SchedulerProcess::start(&v, "cli-tty");
    let jobs: Vec<serde_json::Value> = (0..1_500)
        .map(|i| {
            serde_json::json!({"id": format!("tty-{i:04}"), "schedule": "@hourly", "executor": {"type": "noop"}})
        })
        .collect();
    let file = std::env::temp_dir().join(format!("{}-tty.json", v.name));
    std::fs::write(&file, serde_json::to_vec(&jobs).expect("json")).expect("write");
    // `script` gives the command a pseudo-terminal, as a user's shell does.
    let cmd = format!(
        "{} job apply -f {} --broker {}",
        env!("CARGO_BIN_EXE_sundial"),
        file.display(),
        v.url()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("SUNDIAL__TOPOLOGY__SHARDS", "4")
        .env("RUST_LOG", "warn")
        .output()
        .expect("script runs");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("applying jobs"), "{}", stdout(&out));
}
