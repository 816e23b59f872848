//! Fires read off the work queues, a webhook target, a queue emptied.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sundial_amqp::broker::meta_of;
use sundial_core::{codec::decode, protocol::fire::FireEvent, topology::shard_of};

use crate::{bounded, TEST_SHARDS};

/// Every fire of the default pool, read from all its work queues (one
/// consumer per queue, so no fire is taken by a competing tap).
pub struct FireTap {
    fires: futures_util::stream::SelectAll<lapin::Consumer>,
}

impl FireTap {
    pub async fn new(conn: &lapin::Connection) -> Self {
        let ch = conn.create_channel().await.expect("channel");
        let mut consumers = Vec::new();
        for shard in 0..TEST_SHARDS {
            let q = format!("sundial.work.default.{shard}");
            consumers.push(
                sundial_amqp::broker::consume_no_ack(&ch, &q)
                    .await
                    .expect("consume work queue"),
            );
        }
        Self {
            fires: futures_util::stream::select_all(consumers),
        }
    }

    /// The next fire of any job, with the instant it arrived.
    pub async fn next_any(&mut self) -> (FireEvent, DateTime<Utc>) {
        bounded("a fire", async {
            let d = self
                .fires
                .next()
                .await
                .expect("work stream open")
                .expect("delivery");
            let ev =
                decode::<FireEvent>(&meta_of(&d.properties), &d.data).expect("fire event decodes");
            assert_eq!(
                d.properties.message_id().as_ref().map(|m| m.to_string()),
                Some(ev.fire_id.clone()),
                "message_id is the fire id"
            );
            assert_eq!(
                ev.shard,
                shard_of(&ev.job_id, TEST_SHARDS),
                "routed to its shard"
            );
            (ev, Utc::now())
        })
        .await
    }

    /// The next fire of `job`.
    pub async fn next(&mut self, job: &str) -> (FireEvent, DateTime<Utc>) {
        loop {
            let f = self.next_any().await;
            if f.0.job_id == job {
                return f;
            }
        }
    }
}

/// A tiny HTTP server on 127.0.0.1 for webhook and `http` executor tests:
/// answers each request with the next status of `statuses` (then 200) and
/// hands every request's head and body to the test.
pub struct HttpSink {
    pub url: String,
    requests: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
}

impl HttpSink {
    pub async fn start(statuses: Vec<u16>) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (tx, requests) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let (head, body) = loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        break (String::new(), String::new());
                    };
                    if n == 0 {
                        break (String::new(), String::new());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .and_then(|v| v.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_string(), body.to_string());
                    }
                };
                let status = statuses.next().unwrap_or(200);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = tx.send((head, body));
            }
        });
        Self { url, requests }
    }

    /// The next request: (head, body).
    pub async fn next(&mut self) -> (String, String) {
        bounded("an HTTP request", self.requests.recv())
            .await
            .expect("sink running")
    }
}

/// Takes every message of `queue` (acked), returning them: for dead-letter
/// checks.
pub async fn drain(ch: &lapin::Channel, queue: &str) -> Vec<lapin::message::Delivery> {
    let mut out = Vec::new();
    while let Some(m) = bounded(
        "basic.get",
        ch.basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        ),
    )
    .await
    .expect("basic.get")
    {
        out.push(m.delivery);
    }
    out
}
