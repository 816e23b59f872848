//! Bytes per job, by part (ADR 0024): N jobs of the scale phase's shape
//! applied to a registry view in this process, measured as RSS growth (the
//! bench runs on mimalloc, as the binary does) after each step:
//! 1. every job compact (a node that holds none of their shards);
//! 2. every job full (a node that holds every shard: its fired form);
//! 3. plus a timer entry each (every shard's `ShardTimer` loaded).
//!
//! And the time a fire spends decoding its job's definition (the fired
//! form keeps it encoded).
//!
//! The encoded definitions' own size is summed exactly; the rest of the
//! compact form (the id, the sorted map's slot) is the difference.

use sundial_core::{
    protocol::registry::{RegistryRecord, StoredJob},
    registry::{Held, RegistryView},
    timer::ShardTimer,
};

use crate::sched::{rss_mib, spread_jobs_range};

pub(crate) struct Bytes {
    pub(crate) jobs: usize,
    /// Per job: the compact form in all, its encoded definition alone.
    pub(crate) compact: f64,
    pub(crate) encoded: f64,
    /// Per job: the fired form (timer core, encoded definition, map slot).
    pub(crate) full: f64,
    /// Per job: its timer entry (slot, deadline).
    pub(crate) timer: f64,
    /// Microseconds per job to make a compact job full (a takeover does
    /// this for the jobs of each shard it takes).
    pub(crate) parse_us: f64,
    /// Microseconds per fire to decode its job's definition.
    pub(crate) decode_us: f64,
}

/// Runs each measurement in a process of its own (this bench again, with
/// `--bytes-part FORM N`): a form built after another was dropped would
/// reuse its freed pages and measure nothing.
pub(crate) fn bytes(n: usize, shards: u32) -> Bytes {
    let part = |form: &str| -> Vec<f64> {
        let exe = std::env::current_exe().expect("the bench's own path");
        let out = std::process::Command::new(exe)
            .args(["--bytes-part", form, &n.to_string(), &shards.to_string()])
            .output()
            .expect("the measuring process runs");
        assert!(
            out.status.success(),
            "--bytes-part {form}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    let (c, f) = (part("compact"), part("full"));
    let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(f64::NAN);
    Bytes {
        jobs: n,
        compact: at(&c, 0),
        encoded: at(&c, 1),
        parse_us: at(&c, 2),
        full: at(&f, 0),
        timer: at(&f, 1),
        decode_us: at(&f, 2),
    }
}

/// One measurement (`--bytes-part compact|full N SHARDS`), printed as one
/// line of numbers: compact: bytes per job, encoded bytes per job, µs per
/// job to make it full; full: bytes per job, timer bytes per job, µs per
/// job to decode its definition.
pub(crate) fn part(form: &str, n: usize, shards: u32) -> String {
    let per_mib = |mib: f64| mib * 1024.0 * 1024.0 / n as f64;
    let now = chrono::Utc::now();
    let all: Vec<u32> = (0..shards).collect();
    let before = rss_mib();
    let mut view = RegistryView::new(shards);
    if form == "full" {
        let _ = view.hold(&all);
    }
    let batch = 1_000;
    for from in (0..n).step_by(batch) {
        let jobs = spread_jobs_range(from, (from + batch).min(n), 2_000, "s")
            .into_iter()
            .map(|j| StoredJob::new(j, now))
            .collect();
        view.apply_owned(RegistryRecord::UpsertMany { jobs })
            .expect("applies");
    }
    let grown = rss_mib() - before;
    if form == "full" {
        let mut timers: Vec<ShardTimer> = Vec::new();
        let mut decoding = std::time::Duration::ZERO;
        for (_, jobs) in view.hold(&all) {
            let t = std::time::Instant::now();
            let decoded = jobs.iter().filter(|j| j.spec().is_ok()).count();
            decoding += t.elapsed();
            assert_eq!(decoded, jobs.len(), "every definition decodes");
            let mut t = ShardTimer::new(now);
            let _ = t.load(jobs, now, now);
            timers.push(t);
        }
        let timer = rss_mib() - before - grown;
        return format!(
            "{:.1} {:.1} {:.3}",
            per_mib(grown),
            per_mib(timer),
            decoding.as_secs_f64() * 1e6 / n as f64
        );
    }
    let encoded: usize = view
        .iter_held()
        .map(|(_, h)| match h {
            Held::Compact(c) => c.encoded_len(),
            Held::Full(_) => 0,
        })
        .sum();
    // A takeover parses the jobs of the shards taken: timed here for all.
    let t = std::time::Instant::now();
    let loads = view.hold(&all);
    let parse_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(loads);
    format!(
        "{:.1} {:.1} {:.3}",
        per_mib(grown),
        encoded as f64 / n as f64,
        parse_us
    )
}
