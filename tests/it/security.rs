//! Least privilege, with real users on the real broker: the permission rows
//! of deploy/rabbitmq/definitions.json, applied to a private vhost.

use std::process::Command;

use sundial_core::protocol::run::RunKind;

use crate::{
    fires::{connect, wait_for_consumers, EventTap},
    util::{sundial, topology_apply, Vhost, TEST_ENV},
};

/// A broker user with one definitions.json permission row on a vhost;
/// deleted on drop.
struct User {
    name: String,
}

impl User {
    fn from_definitions(v: &Vhost, role: &str) -> Self {
        let defs: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/rabbitmq/definitions.json"
            ))
            .expect("read definitions.json"),
        )
        .expect("definitions.json is JSON");
        let row = defs["permissions"]
            .as_array()
            .expect("permissions")
            .iter()
            .find(|p| p["user"] == role)
            .unwrap_or_else(|| panic!("no permissions for {role}"));
        let name = format!("{}-{role}", v.name);
        let ctl = |args: &[&str]| {
            let out = Command::new("rabbitmqctl")
                .args(args)
                .output()
                .expect("rabbitmqctl");
            assert!(
                out.status.success(),
                "rabbitmqctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ctl(&["add_user", &name, "pw"]);
        let perm = |k: &str| row[k].as_str().expect("regex").to_string();
        ctl(&[
            "set_permissions",
            "-p",
            &v.name,
            &name,
            &perm("configure"),
            &perm("write"),
            &perm("read"),
        ]);
        Self { name }
    }

    fn url(&self, v: &Vhost) -> String {
        format!("amqp://{}:pw@127.0.0.1:5672/{}", self.name, v.name)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.name])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_credentials_run_jobs_but_cannot_publish_control_commands() {
    let v = Vhost::new("sec");
    topology_apply(&v);
    let user = User::from_definitions(&v, "sundial-worker");

    // Refused: publishing to the control exchange with the worker's user.
    let conn = sundial_amqp::broker::connect(&user.url(&v), "it-sec")
        .await
        .expect("the worker user connects");
    let ch = sundial_amqp::broker::confirming_channel(&conn)
        .await
        .expect("channel");
    let body = br#"{"command":"delete","id":"nightly-backup"}"#;
    let sent = sundial_amqp::publish::publish_raw_confirmed(
        &ch,
        "sundial.control",
        "",
        body,
        lapin::BasicProperties::default(),
    )
    .await;
    let err = sent.expect_err("the broker refuses the publish");
    assert!(err.to_string().contains("ACCESS_REFUSED"), "{err}");
    let _ = conn.close(200, "".into()).await;

    // Allowed: the same user runs a worker that consumes and runs a fire.
    let guest = connect(&v).await;
    let mut tap = EventTap::new(&guest).await;
    let _w = {
        let mut c = sundial();
        c.args(["worker", "--id", "least", "--broker", &user.url(&v)])
            .envs(TEST_ENV.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        KillOnDrop(c.spawn().expect("worker starts"))
    };
    wait_for_consumers(&v, 1).await;
    let ch = sundial_amqp::broker::confirming_channel(&guest)
        .await
        .expect("channel");
    let f = crate::fires::noop_fire("least-job");
    crate::fires::publish(&ch, std::slice::from_ref(&f)).await;
    let evs = tap.until(&f.fire_id, RunKind::Succeeded).await;
    assert_eq!(evs.last().map(|e| e.worker.as_str()), Some("least"));
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
