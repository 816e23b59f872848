//! Messages keep their metadata through the real broker: `codec::Meta` →
//! AMQP properties → RabbitMQ → properties → `Meta`, and decode to the same
//! message.

use lapin::{
    options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties,
};
use sundial_amqp::broker::{meta_of, properties};
use sundial_core::{
    codec::decode,
    protocol::{control::Command, fire::Watermark},
};

use crate::util::{bounded, Vhost};

/// A connection to `v` and a channel in confirm mode with queue `queue`.
async fn confirming_channel_with_queue(
    v: &Vhost,
    queue: &str,
) -> (lapin::Connection, lapin::Channel) {
    let conn = bounded(
        "connect",
        sundial_amqp::broker::connect(&v.url(), "it-wire"),
    )
    .await
    .expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue");
    (conn, ch)
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_and_body_survive_the_broker() {
    let v = Vhost::new("wire");
    let (conn, ch) = confirming_channel_with_queue(&v, "wire").await;

    let wm = Watermark {
        shard: 5,
        epoch: 2,
        up_to: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("ts"),
        owner: "n1".into(),
    };
    // Stamped as the processes send it (send time, id): all of it survives.
    let enc = sundial_amqp::broker::encode_stamped(&wm).expect("encodes");
    let confirm = bounded(
        "publish",
        ch.basic_publish(
            "".into(),
            "wire".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &enc.body,
            properties(&enc.meta),
        ),
    )
    .await
    .expect("publishes");
    assert!(bounded("confirm", confirm).await.expect("confirm").is_ack());

    let got = bounded(
        "get",
        ch.basic_get("wire".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("get")
    .expect("a message");
    let meta = meta_of(&got.delivery.properties);
    assert_eq!(meta, enc.meta);
    assert_eq!(
        got.delivery.properties.delivery_mode(),
        &Some(2),
        "persistent"
    );
    assert_eq!(
        decode::<Watermark>(&meta, &got.delivery.data).expect("decodes"),
        wm
    );
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn version_header_in_other_client_encodings_is_understood() {
    let v = Vhost::new("wire-poly");
    let (conn, ch) = confirming_channel_with_queue(&v, "poly").await;
    // pika sends small ints as signed 32/64-bit, some clients send strings.
    for value in [
        AMQPValue::LongInt(1),
        AMQPValue::ShortShortInt(1),
        AMQPValue::LongString(LongString::from("1")),
    ] {
        let mut headers = FieldTable::default();
        headers.insert("x-sundial-version".into(), value);
        let props = BasicProperties::default().with_headers(headers);
        let confirm = bounded(
            "publish",
            ch.basic_publish(
                "".into(),
                "poly".into(),
                BasicPublishOptions::default(),
                br#"{"command":"get","id":"a"}"#,
                props,
            ),
        )
        .await
        .expect("publishes");
        // Once confirmed, the message is in the queue: one get must find it.
        assert!(bounded("confirm", confirm).await.expect("confirm").is_ack());
        let got = bounded(
            "get",
            ch.basic_get("poly".into(), BasicGetOptions { no_ack: true }),
        )
        .await
        .expect("get")
        .expect("the confirmed message");
        let meta = meta_of(&got.delivery.properties);
        assert_eq!(meta.version, Some(1));
        assert_eq!(
            decode::<Command>(&meta, &got.delivery.data).expect("decodes"),
            Command::Get { id: "a".into() }
        );
    }
    let _ = conn.close(200, "done".into()).await;
}
