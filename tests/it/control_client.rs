//! A raw control client, as a client in any language would be, for tests
//! that speak the control protocol over AMQP: an exclusive reply queue,
//! JSON bodies, the version header.

use futures_util::StreamExt;
use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, Consumer,
};
use sundial_amqp::broker::meta_of;
use sundial_core::{codec::decode, protocol::control::Reply};

use crate::util::bounded;

/// A raw control client, as any AMQP client would be: an exclusive reply
/// queue, JSON bodies, the version header.
pub(crate) struct RawClient {
    ch: Channel,
    reply_queue: String,
    replies: Consumer,
    n: u32,
    /// The properties of the last reply.
    pub(crate) last_props: Option<BasicProperties>,
}

impl RawClient {
    pub(crate) async fn new(conn: &Connection) -> Self {
        // A private queue with no binding: replies come by the default
        // exchange, addressed to its name.
        let (ch, replies) = bounded(
            "reply queue",
            sundial_amqp::broker::subscribe(conn, "", &[]),
        )
        .await
        .expect("reply queue");
        let reply_queue = replies.queue().to_string();
        Self {
            ch,
            reply_queue,
            replies,
            n: 0,
            last_props: None,
        }
    }

    /// Publishes `body` with `props` (plus reply_to and correlation_id) and
    /// returns the reply.
    pub(crate) async fn call(&mut self, body: &[u8], props: BasicProperties) -> Reply {
        self.n += 1;
        let corr = format!("c{}", self.n);
        let props = props
            .with_reply_to(self.reply_queue.as_str().into())
            .with_correlation_id(corr.as_str().into());
        self.ch
            .basic_publish(
                "sundial.control".into(),
                "".into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .expect("publish command");
        let (replies, last_props) = (&mut self.replies, &mut self.last_props);
        bounded("reply", async {
            loop {
                let d = replies
                    .next()
                    .await
                    .expect("reply stream open")
                    .expect("reply delivery");
                if d.properties.correlation_id().as_ref().map(|c| c.as_str()) == Some(corr.as_str())
                {
                    *last_props = Some(d.properties.clone());
                    return decode::<Reply>(&meta_of(&d.properties), &d.data)
                        .expect("reply decodes");
                }
            }
        })
        .await
    }
}

pub(crate) fn v1() -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert("x-sundial-version".into(), AMQPValue::LongInt(1));
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(h)
}

pub(crate) async fn upsert(client: &mut RawClient, job: serde_json::Value) {
    let body = serde_json::json!({"command": "upsert", "job": job});
    let reply = client.call(body.to_string().as_bytes(), v1()).await;
    assert!(reply.ok, "upsert refused: {reply:?}");
}

/// Sends `upsert-many` with `jobs`; fails the test if it is refused.
pub(crate) async fn upsert_many(client: &mut RawClient, jobs: Vec<serde_json::Value>) {
    let body = serde_json::json!({"command": "upsert-many", "jobs": jobs});
    let reply = client.call(body.to_string().as_bytes(), v1()).await;
    assert!(reply.ok, "upsert-many refused: {reply:?}");
}
