//! Connecting to RabbitMQ (one address or several, TLS, bounded), channels
//! (confirming, and past ids lapin still holds poisoned), the probe
//! connection for passive declares, consumers. Message properties are
//! [`crate::props`] (re-exported here).

use std::time::Duration;

use lapin::{types::FieldTable, Connection, ConnectionProperties};
use sundial_core::settings::{mask_url_password, DEFAULT_CONNECT_TIMEOUT};

use crate::error::Error;
pub use crate::props::{encode_stamped, field_table, header_string, integer, meta_of, properties};

/// AMQP heartbeat asked for when the URL sets none: a node that hangs
/// (SIGSTOP, a frozen VM) is noticed within two of these, not RabbitMQ's
/// 60 s default. A URL's own `?heartbeat=N` wins.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// `url` with `heartbeat=` [`DEFAULT_HEARTBEAT_SECS`] unless it sets one.
fn with_heartbeat(url: &str) -> String {
    if url.contains("heartbeat=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}heartbeat={DEFAULT_HEARTBEAT_SECS}")
}

/// Opens a connection named `name` (shown in the management UI and in
/// `rabbitmqctl list_connections`, which makes fault tests and operators'
/// lives easier).
///
/// Bounded by [`DEFAULT_CONNECT_TIMEOUT`]; services use [`connect_to`], which
/// takes `broker.connect_timeout`.
pub async fn connect(url: &str, name: &str) -> Result<Connection, Error> {
    connect_within(url, name, DEFAULT_CONNECT_TIMEOUT).await
}

async fn connect_within(url: &str, name: &str, within: Duration) -> Result<Connection, Error> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let full = with_heartbeat(url);
    bounded(url, within, Connection::connect(&full, props)).await
}

/// `connecting` within `within`: a broker that takes the socket and never
/// answers the handshake is an unreachable address, not a wait for ever.
async fn bounded(
    url: &str,
    within: Duration,
    connecting: impl std::future::Future<Output = lapin::Result<Connection>>,
) -> Result<Connection, Error> {
    match tokio::time::timeout(within, connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(source)) => Err(Error::Connect {
            url: mask_url_password(url),
            source,
        }),
        Err(_) => Err(Error::ConnectTimeout {
            url: mask_url_password(url),
            after: sundial_core::HumanDuration(within),
        }),
    }
}

/// Connects with the broker settings: each of `broker.urls` in turn (the
/// nodes of a cluster), the first that answers wins; `amqps://` with the
/// configured CA and client certificate when set (files read now, so a
/// rotated certificate is picked up at the next reconnect). When none
/// answers, the error names every address tried and the last reason; the
/// caller's supervisor backs off and tries them all again.
pub async fn connect_to(
    b: &sundial_core::settings::BrokerSettings,
    name: &str,
) -> Result<Connection, Error> {
    connect_any(b, name).await.map(|(c, _)| c)
}

/// As [`connect_to`], also saying which address it connected to (password
/// masked), for `sundial status`.
pub async fn connect_any(
    b: &sundial_core::settings::BrokerSettings,
    name: &str,
) -> Result<(Connection, String), Error> {
    let urls: Vec<&str> = if b.urls.is_empty() {
        vec![b.url.as_str()]
    } else {
        b.urls.iter().map(String::as_str).collect()
    };
    let mut last = None;
    for url in &urls {
        match connect_one(b, url, name).await {
            Ok(c) => return Ok((c, mask_url_password(url))),
            Err(e @ (Error::Connect { .. } | Error::ConnectTimeout { .. })) => {
                tracing::debug!(url = %mask_url_password(url), error = %e, "broker address not reachable; trying the next");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    let url = urls
        .iter()
        .map(|u| mask_url_password(u))
        .collect::<Vec<_>>()
        .join(", ");
    match last {
        Some(Error::Connect { source, .. }) => Err(Error::Connect { url, source }),
        Some(Error::ConnectTimeout { after, .. }) => Err(Error::ConnectTimeout { url, after }),
        Some(e) => Err(e),
        None => Err(Error::ConnectionLost("no broker address configured")),
    }
}

async fn connect_one(
    b: &sundial_core::settings::BrokerSettings,
    url: &str,
    name: &str,
) -> Result<Connection, Error> {
    if b.tls.is_empty() {
        return connect_within(url, name, b.connect_timeout).await;
    }
    let (cert_chain, identity) = read_tls(b)?;
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let runtime = lapin::runtime::default_runtime().map_err(|source| Error::Connect {
        url: mask_url_password(url),
        source,
    })?;
    let full = with_heartbeat(url);
    let connecting = Connection::connect_with_config(
        &full,
        props,
        lapin::tcp::OwnedTLSConfig {
            identity,
            cert_chain,
        },
        runtime,
    );
    bounded(url, b.connect_timeout, connecting).await
}

/// Reads the TLS files of `b` (CA, client certificate and key) as
/// [`connect_to`] will: commands call it at start, so an unreadable file is
/// one clear line before anything starts, not a reconnect loop.
pub fn check_tls(b: &sundial_core::settings::BrokerSettings) -> Result<(), Error> {
    read_tls(b).map(|_| ())
}

type TlsFiles = (Option<String>, Option<lapin::tcp::OwnedIdentity>);

fn read_tls(b: &sundial_core::settings::BrokerSettings) -> Result<TlsFiles, Error> {
    let read = |p: &std::path::Path, setting: &'static str| {
        std::fs::read(p).map_err(|source| Error::Tls {
            setting,
            path: p.to_path_buf(),
            source,
        })
    };
    let cert_chain = match &b.tls.ca_file {
        Some(p) => Some(
            String::from_utf8(read(p, "broker.tls.ca_file")?).map_err(|_| Error::Tls {
                setting: "broker.tls.ca_file",
                path: p.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not PEM text"),
            })?,
        ),
        None => None,
    };
    let identity = match &b.tls.client {
        Some((cert, key)) => Some(lapin::tcp::OwnedIdentity::PKCS8 {
            pem: read(cert, "broker.tls.cert_file")?,
            key: read(key, "broker.tls.key_file")?,
        }),
        None => None,
    };
    Ok((cert_chain, identity))
}

/// A token cancelled when the connection reports an error (closed by the
/// broker, socket lost): everything using it should stop and reconnect.
pub fn on_connection_error(conn: &Connection) -> tokio_util::sync::CancellationToken {
    let lost = tokio_util::sync::CancellationToken::new();
    let token = lost.clone();
    let status = conn.status().clone();
    let mut events = conn.events_listener();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(ev) = events.next().await {
            if let lapin::Event::Error(e) = ev {
                // lapin reports channel-level errors here too (a 404 on one
                // channel, a 403 for a user without a permission); only a
                // connection that is no longer connected is lost.
                if status.connected() {
                    tracing::debug!(error = %e, "channel error; the connection is fine");
                    continue;
                }
                tracing::warn!(error = %e, "broker connection error");
                token.cancel();
                break;
            }
        }
    });
    lost
}

/// A private subscription: a server-named, exclusive, auto-delete queue
/// bound to `exchange` with each of `keys`, consumed without acks. For
/// copies of a stream of messages (run events, new dead letters, cancel
/// requests); it goes away with its connection. Returns the channel too,
/// so the caller can close it explicitly.
pub async fn subscribe(
    conn: &Connection,
    exchange: &str,
    keys: &[&str],
) -> Result<(lapin::Channel, lapin::Consumer), Error> {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions};
    let ch = open_channel(conn).await?;
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("queue.declare (private)"))?;
    for key in keys {
        ch.queue_bind(
            q.name().clone(),
            exchange.into(),
            (*key).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker(format!("queue.bind {exchange} {key}")))?;
    }
    let consumer = consume_no_ack(&ch, q.name().as_str()).await?;
    Ok((ch, consumer))
}

/// Consumes `queue` with automatic acks: a tap whose messages are the
/// reader's to drop (private subscriptions, test taps).
pub async fn consume_no_ack(ch: &lapin::Channel, queue: &str) -> Result<lapin::Consumer, Error> {
    use lapin::options::BasicConsumeOptions;
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map_err(Error::broker(format!("basic.consume {queue}")))
}

/// Opens a channel on `conn`. lapin (4.12) keeps the error of a channel the
/// broker closed (a 404 probe, a 405 lease that another node holds) for its
/// id, and reuses ids once they wrap around at `channel_max`: opening a
/// channel that gets such an id fails at once with that old error. A fresh
/// `channel.open` never fails with a protocol error of its own, so such a
/// failure is retried on the next id, at most once per id (lapin refuses
/// such an open locally, without a round trip to the broker).
pub async fn open_channel(conn: &Connection) -> Result<lapin::Channel, Error> {
    let ids = usize::from(conn.configuration().channel_max()).max(1);
    let mut tries = 0;
    loop {
        match conn.create_channel().await {
            Ok(ch) => return Ok(ch),
            Err(e)
                if tries < ids
                    && matches!(e.kind(), lapin::ErrorKind::ProtocolError(_))
                    && conn.status().connected() =>
            {
                tries += 1;
                tracing::debug!(error = %e, "channel id holds an old channel's error; opening on the next one");
            }
            Err(e) => return Err(Error::broker("channel.open")(e)),
        }
    }
}

/// Channels a [`Probe`] connection opens before it is replaced: below
/// RabbitMQ's default `channel_max` (2,047), where lapin starts reusing
/// channel ids.
const PROBE_CHANNELS_MAX: u32 = 1_000;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection of its own for operations that fail by design: the passive
/// declare of a queue that may not exist (an unknown pool, a pool whose
/// queues were deleted). The broker answers such a probe by closing its
/// channel with 404, and lapin (4.12) keeps that error for the channel id:
/// once ids wrap around at `channel_max`, a new channel that gets a used id
/// fails to open with an old request's error. Probes therefore never share
/// a connection with real work, and their connection is replaced (the old
/// one closed once its last probe is done) before its ids wrap. Each probe
/// gets its own short-lived channel, and its error answers its own request.
pub struct Probe {
    broker: sundial_core::settings::BrokerSettings,
    name: String,
    /// The current connection and how many channels it has opened.
    slot: tokio::sync::Mutex<Option<(std::sync::Arc<Connection>, u32)>>,
}

impl Probe {
    /// Probes on connections to `broker` named `name` (opened on first use).
    pub fn new(broker: sundial_core::settings::BrokerSettings, name: impl Into<String>) -> Self {
        Self {
            broker,
            name: name.into(),
            slot: tokio::sync::Mutex::new(None),
        }
    }

    async fn connection(&self) -> Result<std::sync::Arc<Connection>, Error> {
        let mut slot = self.slot.lock().await;
        if let Some((c, used)) = slot.as_mut() {
            if c.status().connected() && *used < PROBE_CHANNELS_MAX {
                *used += 1;
                return Ok(c.clone());
            }
            // lapin closes a connection when its last handle goes: when the
            // probes still running on this one are done.
            *slot = None;
        }
        let c = std::sync::Arc::new(connect_to(&self.broker, &self.name).await?);
        *slot = Some((c.clone(), 1));
        Ok(c)
    }

    /// `(messages ready, consumers)` of `queue`, or `None` when it does not
    /// exist; bounded by [`PROBE_TIMEOUT`].
    pub async fn passive_declare(&self, queue: &str) -> Result<Option<(u32, u32)>, Error> {
        let conn = self.connection().await?;
        match tokio::time::timeout(PROBE_TIMEOUT, passive_declare(&conn, queue)).await {
            Ok(r) => r,
            Err(_) => Err(Error::ConnectionLost(
                "queue.declare passive: no answer within 10s",
            )),
        }
    }

    /// Closes the current connection.
    pub async fn close(&self) {
        if let Some((c, _)) = self.slot.lock().await.take() {
            let _ = c.close(200, "probes done".into()).await;
        }
    }
}

/// `(messages ready, consumers)` of a queue, or `None` when it does not
/// exist. A passive declare needs no permission; a 404 closes the channel
/// it happens on, so each one opens its own — and poisons that channel id
/// for the connection's life (see [`Probe`]): on a long-lived connection,
/// probe queues that may be missing through a [`Probe`].
pub(crate) async fn passive_declare(
    conn: &Connection,
    queue: &str,
) -> Result<Option<(u32, u32)>, Error> {
    let ch = open_channel(conn).await?;
    match ch
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
    {
        Ok(q) => {
            let _ = ch.close(200, "passive declare".into()).await;
            Ok(Some((q.message_count(), q.consumer_count())))
        }
        Err(e) => match Error::broker(format!("queue.declare passive {queue}"))(e) {
            e if e.is_not_found() => Ok(None),
            e => Err(e),
        },
    }
}

/// A new channel in publisher-confirm mode.
pub async fn confirming_channel(conn: &Connection) -> Result<lapin::Channel, Error> {
    let ch = open_channel(conn).await?;
    ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .map_err(Error::broker("confirm.select"))?;
    Ok(ch)
}
