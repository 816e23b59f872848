//! Deployment files that cannot run here (no Docker engine, no cluster) are
//! at least parsed, and the keys Sundial relies on are checked.

use yaml_rust2::{Yaml, YamlLoader};

fn read(path: &str) -> String {
    let full = format!("{}/deploy/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn yaml(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn compose_runs_topology_then_two_schedulers_and_three_workers() {
    let docs = yaml("compose.yaml");
    let services = &docs[0]["services"];
    for s in [
        "rabbitmq",
        "topology",
        "scheduler-1",
        "scheduler-2",
        "worker",
    ] {
        assert!(!services[s].is_badvalue(), "service {s}");
    }
    assert_eq!(services["worker"]["deploy"]["replicas"].as_i64(), Some(3));
    let names: Vec<&str> = ["scheduler-1", "scheduler-2"]
        .iter()
        .map(|s| {
            assert_eq!(services[*s]["command"][0].as_str(), Some("scheduler"));
            services[*s]["command"][2].as_str().expect("--node NAME")
        })
        .collect();
    assert_ne!(names[0], names[1], "each scheduler has its own node name");
    assert_eq!(services["topology"]["command"][1].as_str(), Some("apply"));
    assert!(read("compose.yaml").contains("rabbitmq_prometheus"));
}

#[test]
fn kubernetes_manifests_probe_health_and_scale_workers_with_keda() {
    let docs = yaml("kubernetes/sundial.yaml");
    let kind = |k: &str| -> Vec<&Yaml> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(k))
            .collect()
    };
    let deployments = kind("Deployment");
    assert_eq!(deployments.len(), 2);
    let scheduler = deployments
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some("sundial-scheduler"))
        .expect("scheduler deployment");
    assert_eq!(
        scheduler["spec"]["replicas"].as_i64(),
        Some(2),
        "two schedulers split the shards by lease"
    );
    for d in &deployments {
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        assert_eq!(
            c["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
    }
    let scaled = kind("ScaledObject");
    assert_eq!(scaled.len(), 1);
    let t = &scaled[0]["spec"]["triggers"][0];
    assert_eq!(t["type"].as_str(), Some("rabbitmq"));
    assert_eq!(t["metadata"]["mode"].as_str(), Some("QueueLength"));
    assert_eq!(
        scaled[0]["spec"]["scaleTargetRef"]["name"].as_str(),
        Some("sundial-worker")
    );
    assert_eq!(kind("Job").len(), 1, "topology apply runs as a Job");
}

#[test]
fn alert_rules_cover_dead_letters_lateness_owners_and_restarts() {
    let docs = yaml("prometheus/alerts.yaml");
    let rules = docs[0]["groups"][0]["rules"].as_vec().expect("rules");
    let exprs: Vec<&str> = rules.iter().filter_map(|r| r["expr"].as_str()).collect();
    for metric in [
        "sundial_dead_letters",
        "sundial_fire_lateness_seconds_bucket",
        "sundial_shards_owned",
        "sundial_restarts_total",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "an alert on {metric}"
        );
    }
    assert!(rules
        .iter()
        .all(|r| r["alert"].as_str().is_some() && !r["labels"]["severity"].is_badvalue()));
    // The dead man's switch (issue 25): when no scheduler checks, or none
    // fires, something outside Sundial says so.
    for metric in [
        "sundial_last_alert_check_timestamp_seconds",
        "sundial_last_fire_timestamp_seconds",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "an alert on {metric}"
        );
    }
    // Every metric a rule names is one Sundial exports.
    let known = include_str!("../../runtime/src/metrics.rs");
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let Some(name) = word.strip_prefix("sundial_").map(|_| word) else {
                continue;
            };
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                known.contains(&format!("\"{base}\"")),
                "{name} in `{e}` is not a metric of runtime/src/metrics.rs"
            );
        }
    }
}

#[test]
fn dashboard_and_definitions_are_json_with_what_sundial_needs() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("grafana/sundial-dashboard.json")).expect("JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    assert!(panels.iter().all(|p| p["targets"][0]["expr"]
        .as_str()
        .is_some_and(|e| e.contains("sundial_"))));

    let defs: serde_json::Value =
        serde_json::from_str(&read("rabbitmq/definitions.json")).expect("JSON");
    let users: Vec<&str> = defs["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    for u in [
        "sundial-admin",
        "sundial-scheduler",
        "sundial-worker",
        "sundial-client",
    ] {
        assert!(users.contains(&u), "user {u}");
        let row = defs["permissions"]
            .as_array()
            .expect("permissions")
            .iter()
            .find(|p| p["user"] == u)
            .expect("permissions row");
        for k in ["configure", "write", "read"] {
            assert!(row[k].as_str().is_some(), "{u}.{k}");
        }
    }
    let worker_write = defs["permissions"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["user"] == "sundial-worker"))
        .and_then(|p| p["write"].as_str())
        .expect("worker write");
    assert!(
        !worker_write.contains("control"),
        "workers may not write control commands"
    );
}

#[test]
fn systemd_units_and_dockerfile_start_the_binary() {
    let s = read("systemd/sundial-scheduler.service");
    assert!(s.contains("ExecStart=/usr/local/bin/sundial") && s.contains(" scheduler"));
    let w = read("systemd/sundial-worker@.service");
    assert!(w.contains("worker --pool %i"));
    for unit in [&s, &w] {
        for section in ["[Unit]", "[Service]", "[Install]"] {
            assert!(unit.contains(section), "{section}");
        }
    }
    let d = read("Dockerfile");
    assert!(d.matches("FROM ").count() >= 2, "multi-stage");
    assert!(d.contains("USER sundial"), "not root");
}
