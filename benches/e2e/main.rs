//! One harness for Sundial's performance claims, against the local RabbitMQ,
//! each Sundial figure printed as a ratio to a raw lapin baseline measured
//! in the same run (the machine is shared and noisy: only same-run ratios
//! mean something).
//!
//! ```text
//! cargo bench --bench e2e                          # full: ~10 min, 1M-job scale phase
//! cargo bench --bench e2e -- --quick               # < 2 min, 100k-job scale phase
//! cargo bench --bench e2e -- --json results.json   # also write the results as JSON
//! cargo bench --bench e2e -- --jobs 300000         # scale phase size
//! cargo bench --bench e2e -- --only lateness,scale  # some phases (raw baselines always run)
//! cargo bench --bench e2e -- --quick --cluster     # on a 3-node test cluster (burst, lateness, e2e)
//! ```
//!
//! `--cluster` starts `tests/cluster/cluster.sh up` (three RabbitMQ nodes
//! beside the system broker, ~25 s) and takes it down at the end; every
//! client, raw lapin and Sundial alike, connects to node 1, and every quorum
//! queue has three members with leaders spread over the nodes.
//!
//! Phases (each in its own vhost, created and deleted with rabbitmqctl):
//! 1. raw publish-with-confirms: ceiling (the best of 8 channels with 1,000
//!    in flight and 64 channels with 10,000, after a warm-up) and confirm
//!    latency paced at the lateness phase's rate, to 64 quorum queues.
//! 2. raw publish + consume with acks: throughput and latency at 500/s.
//! 3. Sundial fire throughput: a burst of cron jobs due in one second.
//! 4. Sundial fire lateness: jobs spread evenly, fires/s and the histogram.
//! 5. Sundial end to end: fires run by `sundial worker` processes (no-op).
//! 6. Scale: N jobs registered through the control queue, RSS, lateness at
//!    ~5,000 fires/s, replay time of a fresh node, and that node's jobs API
//!    over HTTP (a page, one job, a search).
//! 7. History index: records/s into a fresh index, size on disk, query p99
//!    with it full (`--history N` rows: 1M quick, 10M full; no broker), and
//!    a job's runs through the HTTP API.

/// The allocator the `sundial` binary uses (ADR 0010), so RSS figures match.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bytes;
mod common;
mod history;
mod nodes;
mod scale;
mod sched;
mod work;

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use common::{ms, pct};

use work::shards;

struct Args {
    quick: bool,
    json: Option<String>,
    jobs: Option<usize>,
    /// Rows of the history phase.
    history: Option<usize>,
    /// Phases to run (`--only lateness,scale`); the raw baselines always run.
    only: Option<Vec<String>>,
    /// On the 3-node test cluster instead of the system broker.
    cluster: bool,
    /// The scale phase on this many scheduler processes (`--nodes 3`).
    nodes: Option<usize>,
    /// The end-to-end phase runs its default setup only (one worker,
    /// `run_events = failures`): what a profile or a before/after compares.
    e2e_default: bool,
}

impl Args {
    fn runs(&self, phase: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| p == phase))
    }
}

fn args() -> Args {
    let mut a = Args {
        quick: false,
        json: None,
        jobs: None,
        history: None,
        only: None,
        cluster: false,
        nodes: None,
        e2e_default: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => a.quick = true,
            "--cluster" => a.cluster = true,
            "--e2e-default" => a.e2e_default = true,
            "--nodes" => a.nodes = it.next().and_then(|n| n.parse().ok()).filter(|n| *n >= 2),
            "--json" => a.json = it.next(),
            "--jobs" => a.jobs = it.next().and_then(|n| n.replace('_', "").parse().ok()),
            "--history" => a.history = it.next().and_then(|n| n.replace('_', "").parse().ok()),
            "--only" => {
                a.only = it
                    .next()
                    .map(|p| p.split(',').map(str::to_string).collect())
            }
            _ => {} // cargo bench passes --bench
        }
    }
    // The scale and history phases measure one process and its index, not
    // the broker: on the cluster only what the broker's replication changes.
    if a.cluster && a.only.is_none() {
        a.only = Some(["burst", "lateness", "e2e"].map(str::to_string).to_vec());
    }
    a
}

fn bar(phase: &str, len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix:<28} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(phase.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

fn percentiles(v: &mut [f64]) -> Value {
    json!({
        "p50_ms": pct(v, 0.5) * 1e3, "p90_ms": pct(v, 0.9) * 1e3, "p99_ms": pct(v, 0.99) * 1e3,
        "p999_ms": pct(v, 0.999) * 1e3, "max_ms": pct(v, 1.0) * 1e3, "samples": v.len(),
    })
}

fn hist_line(v: &mut [f64]) -> String {
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {}",
        ms(pct(v, 0.5)),
        ms(pct(v, 0.9)),
        ms(pct(v, 0.99)),
        ms(pct(v, 0.999)),
        ms(pct(v, 1.0))
    )
}

fn main() {
    // A child of the bytes phase: one measurement, one line.
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|x| x == "--bytes-part") {
        let arg = |k: usize| argv.get(i + k).cloned().unwrap_or_default();
        let n = arg(2).parse().expect("N");
        let shards = arg(3).parse().expect("SHARDS");
        println!("{}", bytes::part(&arg(1), n, shards));
        return;
    }
    let a = args();
    let quick = a.quick;
    let nodes = a.nodes;
    let scale_jobs = a.jobs.unwrap_or(match (nodes, quick) {
        (Some(_), _) => 10_000_000,
        (None, true) => 100_000,
        (None, false) => 1_000_000,
    });
    let steady_jobs = if quick { 20_000 } else { 100_000 };
    let burst_jobs = if quick { 10_000 } else { 20_000 };
    let e2e_fires = if quick { 8_000 } else { 20_000 };
    let window: u64 = if quick { 6 } else { 15 };
    // Seconds between the bulk load of the scale phase and its window.
    let settle: u64 = if quick { 5 } else { 20 };
    // Quick: one worker per level (2 and 4 workers only confirm the broker bound).
    let workers: &[usize] = if quick { &[1] } else { &[1, 2, 4] };
    let history_rows = a
        .history
        .unwrap_or(if quick { 1_000_000 } else { 10_000_000 });
    let [do_burst, do_lateness, do_e2e, do_bytes, do_scale, do_history] =
        ["burst", "lateness", "e2e", "bytes", "scale", "history"].map(|p| a.runs(p));

    let _cluster = a.cluster.then(|| {
        let t = std::time::Instant::now();
        let c = common::Cluster::up();
        println!(
            "3-node test cluster up in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        c
    });
    let on_cluster = a.cluster;
    let samples = Arc::new(sched::Samples::default());
    metrics::set_global_recorder(sched::Rec(samples.clone())).expect("first recorder");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = actix::System::with_tokio_rt(move || rt).block_on(async move {
        println!(
            "sundial benchmark harness ({} mode): {} shards, quorum queues, {} cores, {}",
            if quick { "quick" } else { "full" },
            shards(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            if on_cluster {
                "3-node test cluster (clients on node 1, 3 members per quorum queue)"
            } else {
                "system broker (one node)"
            }
        );

        // 0. Bytes per job, by part (no broker: alone, nothing else runs).
        let mut bytes_json = None;
        if do_bytes {
            let bn = scale_jobs.min(2_000_000);
            let pb = bar(&format!("bytes per job, {bn} jobs"), 1);
            let b = bytes::bytes(bn, shards());
            pb.finish_and_clear();
            println!(
                "bytes per job ({} `@every` jobs, RSS growth): compact {:.0} (target ≤ 400; its encoded definition {:.0}); full {:.0} + timer entry {:.0} = {:.0} (target ≤ 600); compact → full {:.2} µs per job; a fire decodes its definition in {:.2} µs",
                b.jobs, b.compact, b.encoded, b.full, b.timer, b.full + b.timer, b.parse_us, b.decode_us
            );
            bytes_json = Some(json!({"jobs": b.jobs, "compact": b.compact, "encoded_definition": b.encoded,
                "full": b.full, "timer": b.timer, "parse_us": b.parse_us, "decode_us": b.decode_us}));
        }

        if !(do_burst || do_lateness || do_e2e || do_scale || do_history) {
            return json!({"bytes_per_job": bytes_json});
        }

        // 1. Raw publish with confirms.
        let pb = bar("raw publish+confirm", 1);
        let v = crate::common::vhost("raw");
        let conn = sundial_amqp::broker::connect(&v.url(), "bench-raw").await.expect("connect");
        let paced = std::time::Duration::from_secs(if quick { 3 } else { 5 });
        // Paced at the lateness phase's rate (its jobs are `@every 20s`), so
        // that phase's p99 is compared at the same load.
        let paced_rate = u32::try_from(steady_jobs / 20).unwrap_or(5_000);
        let (raw_ceiling, raw_p50, raw_p99) =
            sched::raw_baseline(&conn, shards(), 20_000, &[(8, 1_000), (64, 10_000)], paced_rate, paced).await;
        let ceiling = raw_ceiling.best;
        let _ = conn.close(200, "".into()).await;
        drop(v);
        pb.finish_and_clear();
        let shapes: Vec<String> = raw_ceiling
            .per_shape
            .iter()
            .map(|(c, w, r)| format!("{r:.0} from {c} channels with {w} in flight"))
            .collect();
        println!(
            "raw lapin publish+confirm: ceiling {ceiling:.0} msg/s (best of {}); confirm latency at {paced_rate}/s p50 {} p99 {}",
            shapes.join(", "),
            ms(raw_p50),
            ms(raw_p99)
        );

        // 2. Raw publish + consume with acks.
        let pb = bar("raw publish+consume", 1);
        let v = crate::common::vhost("rawpc");
        let paced_n = work::PACED_RATE as usize * if quick { 3 } else { 5 };
        let work::Measured {
            thr: (raw_elapsed, _),
            lat: (_, mut raw_lat),
            cpu: raw_cpu,
            ..
        } = work::raw(&v, e2e_fires, paced_n).await;
        let raw_cpu = raw_cpu.per_thousand(e2e_fires);
        drop(v);
        pb.finish_and_clear();
        let raw_pc = e2e_fires as f64 / raw_elapsed.max(1e-9);
        println!(
            "raw lapin publish+consume+ack: {raw_pc:.0} msg/s; publish→delivery at {}/s p50 {} p99 {}; CPU per 1,000: broker {:.0} ms, harness (publisher and consumer) {:.0} ms",
            work::PACED_RATE,
            ms(pct(&mut raw_lat, 0.5)),
            ms(pct(&mut raw_lat, 0.99)),
            raw_cpu.broker,
            raw_cpu.harness,
        );

        let mut out = json!({
            "mode": if quick { "quick" } else { "full" },
            "broker": if on_cluster { "cluster-3" } else { "single" },
            "shards": shards(),
            "raw": {
                "publish_confirm_ceiling_per_s": ceiling,
                "publish_confirm_per_shape": raw_ceiling.per_shape.iter().map(|(c, w, r)| json!({"channels": c, "in_flight": w, "per_s": r})).collect::<Vec<_>>(),
                "confirm_latency_paced_per_s": paced_rate,
                "confirm_latency_p50_ms": raw_p50 * 1e3, "confirm_latency_p99_ms": raw_p99 * 1e3,
                "publish_consume_per_s": raw_pc, "publish_to_delivery": percentiles(&mut raw_lat),
                "publish_consume_cpu_ms_per_1000": {"broker": raw_cpu.broker, "harness": raw_cpu.harness},
            },
        });

        // 3. Fire throughput.
        if do_burst {
            let pb = bar("sundial fire burst", 1);
            let (burst_rate, burst_secs, cpu) = sched::burst(&samples, burst_jobs, shards()).await;
            pb.finish_and_clear();
            let burst_ratio = burst_rate / ceiling;
            println!(
                "sundial fire throughput: {burst_jobs} fires due at once, all confirmed in {:.2} s = {burst_rate:.0} fires/s; ratio to raw ceiling {burst_ratio:.2} (target ≥ 0.80); CPU per 1,000: broker {:.0} ms (raw {:.0}), scheduler {:.0} ms (raw publisher {:.0})",
                burst_secs,
                cpu.broker,
                raw_ceiling.cpu.broker,
                cpu.harness,
                raw_ceiling.cpu.harness,
            );
            out["fire_throughput"] = json!({"fires": burst_jobs, "per_s": burst_rate, "ratio": burst_ratio,
                "cpu_ms_per_1000": {"broker": cpu.broker, "scheduler": cpu.harness},
                "raw_cpu_ms_per_1000": {"broker": raw_ceiling.cpu.broker, "publisher": raw_ceiling.cpu.harness}});
        }

        // 4. Fire lateness.
        if do_lateness {
            let pb = bar(&format!("sundial lateness {steady_jobs} jobs"), window);
            let mut st = sched::steady(&samples, steady_jobs, window, shards(), |t| pb.set_position(t)).await;
            pb.finish_and_clear();
            let late_ratio = pct(&mut st.lateness, 0.99) / raw_p99;
            println!(
                "sundial fire lateness, {steady_jobs} jobs, {:.0} fires/s (due {:.0}/s): confirmed − scheduled {}; timer precision p99 {}; p99 ratio to raw confirm p99 {late_ratio:.2}",
                st.fires_per_s,
                st.due_per_s,
                hist_line(&mut st.lateness),
                ms(pct(&mut st.precision, 0.99)),
            );
            out["fire_lateness"] = json!({"jobs": steady_jobs, "fires_per_s": st.fires_per_s, "due_per_s": st.due_per_s,
                "confirmed_minus_scheduled": percentiles(&mut st.lateness),
                "precision": percentiles(&mut st.precision), "p99_ratio_to_raw_confirm_p99": late_ratio});
        }

        // 5. End to end.
        if do_e2e {
            let mut e2e = Vec::new();
            // (workers, run events): every record goes to the history stream
            // in batches at every level; the default (`failures`) also
            // publishes each failure on sundial.events, `outcomes` each
            // outcome, `all` each start too.
            let setups: Vec<(usize, &str)> = if a.e2e_default {
                vec![(1, "failures")]
            } else {
                workers
                    .iter()
                    .map(|k| (*k, "failures"))
                    .chain([(1, "outcomes"), (1, "all")])
                    .collect()
            };
            for (k, events) in setups {
                let pb = bar(&format!("sundial e2e, {k} worker(s), {events}"), 1);
                let v = crate::common::vhost(&format!("e2e-w{k}-{events}"));
                let env = [("SUNDIAL__WORKER__RUN_EVENTS", events)];
                // Fire-to-start latency is read from `started` records.
                let paced = if events == "failures" { paced_n } else { 0 };
                let work::Measured {
                    thr: (elapsed, _),
                    lat: (_, mut lat),
                    cpu,
                    history: (batches, records),
                } = work::sundial(&v, k, e2e_fires, paced, &env).await;
                let cpu = cpu.per_thousand(e2e_fires);
                drop(v);
                pb.finish_and_clear();
                let rate = e2e_fires as f64 / elapsed.max(1e-9);
                let latency = if lat.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; fire→start at {}/s p50 {} p99 {}",
                        work::PACED_RATE,
                        ms(pct(&mut lat, 0.5)),
                        ms(pct(&mut lat, 0.99))
                    )
                };
                println!(
                    "sundial end to end, {k} worker(s), run_events={events}{}: {rate:.0} jobs/s; ratio to raw publish+consume {:.2} (target ≥ 0.75, every run in history){latency}; CPU per 1,000: broker {:.0} ms (raw {:.0}), worker(s) {:.0} ms, harness {:.0} ms (raw {:.0})",
                    if events == "failures" { " (default)" } else { "" },
                    rate / raw_pc,
                    cpu.broker,
                    raw_cpu.broker,
                    cpu.others,
                    cpu.harness,
                    raw_cpu.harness,
                );
                println!(
                    "  history: {batches} stream messages for {records} records ({:.1} a message) during the pipelined run",
                    records as f64 / batches.max(1) as f64
                );
                e2e.push(json!({"workers": k, "run_events": events, "jobs_per_s": rate, "ratio": rate / raw_pc,
                    "fire_to_start": percentiles(&mut lat),
                    "cpu_ms_per_1000": {"broker": cpu.broker, "workers": cpu.others, "harness": cpu.harness},
                    "history_messages": batches, "history_records": records}));
            }
            out["end_to_end"] = json!(e2e);
        }

        if let Some(b) = bytes_json.take() {
            out["bytes_per_job"] = b;
        }

        // 6. Scale.
        if let (true, Some(count)) = (do_scale, nodes) {
            let pb = bar(&format!("scale {scale_jobs} jobs, {count} nodes"), scale_jobs as u64);
            let mut r = nodes::nodes(scale_jobs, count, shards(), window, |phase, pos, len| {
                pb.set_message(phase.to_string());
                pb.set_length(len);
                pb.set_position(pos);
            })
            .await;
            pb.finish_and_clear();
            let per_node: Vec<String> = r
                .rss
                .iter()
                .map(|(name, owned, mib)| format!("{name} {owned} shards {mib:.0} MiB"))
                .collect();
            println!(
                "scale out, {} jobs on {count} schedulers: registered in {:.1} s ({:.0} jobs/s), every node holds every job {:.1} s later; RSS {}; {:.0} fires/s received, lateness (received − scheduled) {}",
                r.jobs,
                r.register_s,
                r.jobs as f64 / r.register_s.max(1e-9),
                r.converge_s,
                per_node.join(", "),
                r.fires_per_s,
                hist_line(&mut r.lateness),
            );
            println!(
                "scale out: jobs API of one node, a page of 50 p50 {} p99 {}; one job with 10 next fires p50 {} p99 {}; SIGKILL of n1 → every shard owned again {:.2} s, first fire of its shards {}; n1 started afresh ready (every job) in {:.1} s, RSS {:.0} MiB",
                ms(pct(&mut r.api_page, 0.5)),
                ms(pct(&mut r.api_page, 0.99)),
                ms(pct(&mut r.api_job, 0.5)),
                ms(pct(&mut r.api_job, 0.99)),
                r.takeover_s,
                r.first_fire_s.map_or("none within 60 s".to_string(), |s| format!("{s:.2} s")),
                r.ready_s,
                r.fresh_rss,
            );
            out["scale_nodes"] = json!({"jobs": r.jobs, "nodes": count, "register_s": r.register_s,
                "converge_s": r.converge_s,
                "rss": r.rss.iter().map(|(n, o, m)| json!({"node": n, "shards": o, "rss_mib": m})).collect::<Vec<_>>(),
                "fires_per_s": r.fires_per_s, "lateness": percentiles(&mut r.lateness),
                "api_page": percentiles(&mut r.api_page), "api_job": percentiles(&mut r.api_job),
                "takeover_s": r.takeover_s, "first_fire_s": r.first_fire_s,
                "ready_s": r.ready_s, "fresh_rss_mib": r.fresh_rss});
        } else if do_scale {
            let pb = bar(&format!("scale {scale_jobs} jobs"), scale_jobs as u64);
            let mut sc = scale::scale(&samples, scale_jobs, shards(), window, settle, |phase, pos, len| {
                pb.set_message(phase.to_string());
                pb.set_length(len);
                pb.set_position(pos);
            })
            .await;
            pb.finish_and_clear();
            println!(
                "scale, {} jobs: registered in {:.1} s ({:.0} jobs/s); RSS +{:.0} MiB (target < 1024); replay {:.2} s (target < 10); {:.0} fires/s (due {:.0}/s), lateness {} (target p99 < 10 ms); timer precision p99 {}",
                sc.jobs,
                sc.register_s,
                sc.jobs as f64 / sc.register_s.max(1e-9),
                sc.rss_growth_mib,
                sc.replay_s,
                sc.steady.fires_per_s,
                sc.steady.due_per_s,
                hist_line(&mut sc.steady.lateness),
                ms(pct(&mut sc.steady.precision, 0.99)),
            );
            println!(
                "jobs API, {} jobs: a page of 50 p50 {} p99 {}; one job with 10 next fires p50 {} p99 {} (targets < 20 ms); a search walking every id p50 {} p99 {}",
                sc.jobs,
                ms(pct(&mut sc.api_page, 0.5)),
                ms(pct(&mut sc.api_page, 0.99)),
                ms(pct(&mut sc.api_job, 0.5)),
                ms(pct(&mut sc.api_job, 0.99)),
                ms(pct(&mut sc.api_search, 0.5)),
                ms(pct(&mut sc.api_search, 0.99)),
            );
            out["scale"] = json!({"jobs": sc.jobs, "register_s": sc.register_s, "rss_growth_mib": sc.rss_growth_mib,
                "replay_s": sc.replay_s, "fires_per_s": sc.steady.fires_per_s, "due_per_s": sc.steady.due_per_s,
                "lateness": percentiles(&mut sc.steady.lateness), "precision": percentiles(&mut sc.steady.precision),
                "api_page": percentiles(&mut sc.api_page), "api_job": percentiles(&mut sc.api_job),
                "api_search": percentiles(&mut sc.api_search)});
        }

        // 7. History index.
        if do_history {
            let pb = bar(&format!("history {history_rows} rows"), history_rows as u64);
            let mut h = history::history(history_rows, |n| pb.set_position(n)).await;
            pb.finish_and_clear();
            println!(
                "history index, {} rows (2 records each): ingest {:.0} records/s; {:.0} MiB on disk ({:.0} bytes/row); RSS +{:.0} MiB; last 50 runs of a job p50 {} p99 {}; failed runs of a pool in one hour p50 {} p99 {}",
                h.rows,
                h.records_per_s,
                h.bytes as f64 / 1048576.0,
                h.bytes as f64 / h.rows.max(1) as f64,
                h.rss_growth_mib,
                ms(pct(&mut h.last_50_of_a_job, 0.5)),
                ms(pct(&mut h.last_50_of_a_job, 0.99)),
                ms(pct(&mut h.failed_in_an_hour, 0.5)),
                ms(pct(&mut h.failed_in_an_hour, 0.99)),
            );
            println!(
                "history API, {} rows: GET /api/v1/jobs/ID/runs?limit=50 p50 {} p99 {} (target < 20 ms)",
                h.rows,
                ms(pct(&mut h.api_runs_of_a_job, 0.5)),
                ms(pct(&mut h.api_runs_of_a_job, 0.99)),
            );
            let mut lists = serde_json::Map::new();
            for (name, times) in &mut h.api_lists {
                println!(
                    "history API, {} rows: {name} p50 {} p99 {}",
                    h.rows,
                    ms(pct(times, 0.5)),
                    ms(pct(times, 0.99)),
                );
                lists.insert(name.to_string(), percentiles(times));
            }
            out["history_lists"] = serde_json::Value::Object(lists);
            out["history"] = json!({"rows": h.rows, "records_per_s": h.records_per_s, "bytes": h.bytes,
                "rss_growth_mib": h.rss_growth_mib, "last_50_of_a_job": percentiles(&mut h.last_50_of_a_job),
                "failed_in_an_hour": percentiles(&mut h.failed_in_an_hour),
                "api_runs_of_a_job": percentiles(&mut h.api_runs_of_a_job)});
        }
        out
    });
    if let Some(path) = a.json {
        let text = serde_json::to_string_pretty(&report).expect("JSON");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        println!("results written to {path}");
    }
}
