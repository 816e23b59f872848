//! The history stream (ADR 0015): workers append run records to it, a
//! scheduler's index, its run tracker and the CLI read it ([`Reader`]).

use futures_util::{FutureExt, StreamExt};
use lapin::{
    options::BasicAckOptions,
    types::{AMQPValue, FieldTable, ShortString},
    Acker, Channel, Connection, Consumer,
};
use sundial_core::{codec::decode, protocol::run::RunBatch, CodecError};

use crate::{
    broker::{integer, meta_of, open_channel},
    error::Error,
};

/// Which history stream an index follows, as text: the broker's addresses
/// (`host:port`, sorted: a cluster is the same whichever node answers), the
/// vhost and the stream's name. An index is bound to it
/// ([`Index::bind`]); a stream declared again under the same name is told
/// apart by its records ([`ingest`]).
pub fn stream_identity(
    broker: &sundial_core::settings::BrokerSettings,
    topo: &sundial_core::topology::Topology,
) -> String {
    let mut hosts = Vec::new();
    let mut vhost = String::from("?");
    for url in std::iter::once(&broker.url).chain(&broker.urls) {
        if let Ok(u) = url.parse::<lapin::uri::AMQPUri>() {
            hosts.push(format!("{}:{}", u.authority.host, u.authority.port));
            vhost = u.vhost;
        }
    }
    hosts.sort();
    hosts.dedup();
    // The vhost as a URL writes it (`/` is `%2f`).
    let vhost = vhost.replace('%', "%25").replace('/', "%2f");
    format!(
        "amqp://{}/{vhost} stream {}",
        hosts.join(","),
        topo.history_stream()
    )
}

/// One message of the history stream, as a [`Reader`] hands it out.
#[derive(Debug)]
pub struct Message {
    /// Its stream offset (`None` only from a broker that does not say).
    pub offset: Option<u64>,
    /// Its `message_id` (a worker's batch id).
    pub id: Option<String>,
    /// The records, or why they could not be read (a foreign publisher, a
    /// newer version): the caller decides whether to skip or log it.
    pub batch: Result<RunBatch, CodecError>,
}

/// The one reader of the history stream (the run tracker, the index,
/// `sundial run`, the ledger, the bench and the tests): a stream consumer
/// that hands out one message at a time and acks only what it has handed
/// out, when the caller asks for more (a stream's acks only give credit;
/// a read cancelled while it waits or acks loses nothing). Under load the acks go
/// together (`multiple`), one per `ack_every` messages.
pub struct Reader {
    ch: Channel,
    consumer: Consumer,
    /// The last message handed out and not acked yet, and how many.
    unacked: Option<(Acker, u16)>,
    ack_every: u16,
    /// A delivery taken from the consumer and not handed out yet: a read
    /// cancelled while it acked (a `select!` taking another branch) hands
    /// it out on the next call instead of losing it.
    taken: Option<Box<lapin::message::Delivery>>,
}

impl Reader {
    /// Follows the history stream `stream` (`Topology::history_stream`)
    /// from `start`, with `prefetch` messages in flight.
    pub async fn open(
        conn: &Connection,
        stream: &str,
        start: StreamStart,
        prefetch: u16,
    ) -> Result<Self, Error> {
        let (ch, consumer) = consume_stream(conn, stream, start, prefetch).await?;
        Ok(Self {
            ch,
            consumer,
            unacked: None,
            ack_every: (prefetch / 2).max(1),
            taken: None,
        })
    }

    /// The next message, waiting for it; `None` when the consumer ended
    /// (its channel closed).
    pub async fn next(&mut self) -> Result<Option<Message>, Error> {
        if self.taken.is_none() {
            let delivery = match self.consumer.next().now_or_never() {
                Some(d) => d,
                None => {
                    // Nothing is waiting: give the credit back before waiting.
                    self.ack(0).await?;
                    self.consumer.next().await
                }
            };
            if !self.take(delivery)? {
                return Ok(None);
            }
        }
        self.hand_out().await
    }

    /// The next message if one is already here (to group what arrived
    /// together), else `None` at once.
    pub async fn ready(&mut self) -> Result<Option<Message>, Error> {
        if self.taken.is_none() {
            match self.consumer.next().now_or_never() {
                Some(d) => {
                    if !self.take(d)? {
                        return Ok(None);
                    }
                }
                None => return Ok(None),
            }
        }
        self.hand_out().await
    }

    /// Keeps `delivery` to hand out; `false` when the consumer ended.
    fn take(
        &mut self,
        delivery: Option<Result<lapin::message::Delivery, lapin::Error>>,
    ) -> Result<bool, Error> {
        match delivery {
            None => Ok(false),
            Some(d) => {
                self.taken = Some(Box::new(d.map_err(Error::broker("history delivery"))?));
                Ok(true)
            }
        }
    }

    /// Hands out the delivery taken, after acking what came before it.
    async fn hand_out(&mut self) -> Result<Option<Message>, Error> {
        self.ack(self.ack_every).await?;
        // Nothing awaits from here on: the delivery is handed out whole.
        let Some(d) = self.taken.take().map(|d| *d) else {
            return Ok(None);
        };
        let message = Message {
            offset: stream_offset(&d),
            id: d.properties.message_id().as_ref().map(|s| s.to_string()),
            batch: decode::<RunBatch>(&meta_of(&d.properties), &d.data),
        };
        let n = self.unacked.take().map_or(0, |(_, n)| n);
        self.unacked = Some((d.acker, n + 1));
        Ok(Some(message))
    }

    /// Acks what was handed out, when more than `at_least` messages wait.
    async fn ack(&mut self, at_least: u16) -> Result<(), Error> {
        if self.unacked.as_ref().is_some_and(|(_, n)| *n > at_least) {
            if let Some((acker, _)) = self.unacked.take() {
                acker
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .map_err(Error::broker("basic.ack history"))?;
            }
        }
        Ok(())
    }

    /// Closes the reader's channel.
    pub async fn close(self, why: &str) {
        let _ = self.ch.close(200, why.into()).await;
    }
}

/// Where a stream consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// The oldest record the stream still holds.
    First,
    /// Only records appended from now on.
    Next,
    /// This offset (or the first one kept, if it is gone).
    Offset(u64),
    /// The first chunk written at or after this instant (to the second).
    Since(chrono::DateTime<chrono::Utc>),
}

/// Consumes the stream `stream` from `start` on a channel of its own,
/// `prefetch` unacked at a time (a stream consumer needs acks, and they
/// only give credit: the records stay). Returns the channel too.
pub async fn consume_stream(
    conn: &Connection,
    stream: &str,
    start: StreamStart,
    prefetch: u16,
) -> Result<(lapin::Channel, lapin::Consumer), Error> {
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    let ch = open_channel(conn).await?;
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(Error::broker("basic.qos"))?;
    let offset = match start {
        StreamStart::First => AMQPValue::LongString("first".into()),
        StreamStart::Next => AMQPValue::LongString("next".into()),
        StreamStart::Offset(o) => AMQPValue::LongLongInt(i64::try_from(o).unwrap_or(i64::MAX)),
        StreamStart::Since(t) => AMQPValue::Timestamp(u64::try_from(t.timestamp()).unwrap_or(0)),
    };
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-stream-offset"), offset);
    let consumer = ch
        .basic_consume(
            stream.into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .map_err(Error::broker(format!("basic.consume {stream}")))?;
    Ok((ch, consumer))
}

/// The stream offset of a delivery from a stream consumer.
pub fn stream_offset(d: &lapin::message::Delivery) -> Option<u64> {
    let h = d.properties.headers().as_ref()?;
    let v = h.inner().get("x-stream-offset")?;
    integer(v).and_then(|o| u64::try_from(o).ok())
}
