//! Tracing setup: human-readable text by default, JSON lines for collectors;
//! always to stderr, so stdout stays for command output.
//!
//! Two rules keep a command's output its own:
//! - lapin's own log lines are off unless the filter names `lapin`: it logs
//!   every channel the broker closes at ERROR (a passive declare of a
//!   missing queue is one) and every returned message, bytes and all, at
//!   WARN; Sundial reports those conditions itself, once, with context.
//!   The same for `rustls_platform_verifier`, which logs a certificate it
//!   refuses at ERROR before the connection fails with that very reason.
//! - a write to a closed stderr is dropped, never reported (reporting it
//!   would write to stderr again; `eprintln!` would panic).

use sundial_core::settings::{LogFormat, LogSettings};
use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

/// How a command logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A long-running process (scheduler, worker, run): `log.level`.
    Service,
    /// A command that prints a result and exits: warnings and errors only
    /// (unless `RUST_LOG` says otherwise), so its output is its own.
    Command,
}

/// The filter directives for `log`, in `mode`. `RUST_LOG`, when set, wins.
pub fn directives(log: &LogSettings, mode: Mode, rust_log: Option<&str>) -> String {
    let base = match rust_log {
        Some(r) if !r.trim().is_empty() => return with_lapin_off(r),
        _ => match mode {
            Mode::Service => log.level.clone(),
            Mode::Command if log.level.trim() == "info" => "warn".to_string(),
            Mode::Command => log.level.clone(),
        },
    };
    with_lapin_off(&base)
}

fn with_lapin_off(filter: &str) -> String {
    let mut f = filter.to_string();
    for quiet in ["lapin", "rustls_platform_verifier"] {
        if !filter.contains(quiet) {
            f.push_str(&format!(",{quiet}=off"));
        }
    }
    f
}

/// Installs the global subscriber.
pub fn init(log: &LogSettings, mode: Mode) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = EnvFilter::try_new(directives(log, mode, rust_log.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new("info,lapin=off,rustls_platform_verifier=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .log_internal_errors(false);
    // A second init (tests calling into the library) is harmless: keep the first.
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// stderr, with write errors swallowed: once the reader of our logs is gone,
/// logging must neither fail the caller nor try to report itself.
struct Stderr;

struct StderrWriter;

impl std::io::Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> Self::Writer {
        StderrWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(level: &str) -> LogSettings {
        LogSettings {
            format: LogFormat::Text,
            level: level.into(),
        }
    }

    #[test]
    fn lapin_is_off_unless_named_and_commands_log_warnings_only() {
        assert_eq!(
            directives(&log("info"), Mode::Service, None),
            "info,lapin=off,rustls_platform_verifier=off"
        );
        assert_eq!(
            directives(&log("info"), Mode::Command, None),
            "warn,lapin=off,rustls_platform_verifier=off"
        );
        assert_eq!(
            directives(&log("debug"), Mode::Command, None),
            "debug,lapin=off,rustls_platform_verifier=off"
        );
        assert_eq!(
            directives(&log("info,lapin=warn"), Mode::Service, None),
            "info,lapin=warn,rustls_platform_verifier=off"
        );
        assert_eq!(
            directives(&log("info"), Mode::Command, Some("trace")),
            "trace,lapin=off,rustls_platform_verifier=off"
        );
    }
}
