//! Declares Sundial's topology. Declaring is idempotent in AMQP: the same
//! declaration twice changes nothing. A pre-existing exchange or queue with
//! other arguments makes the broker close the channel with 406
//! PRECONDITION_FAILED and a message naming the argument; we turn that into
//! [`Error::Conflict`] naming the queue.

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
    Connection, ExchangeKind,
};
use sundial_core::topology::{Declarations, ExchangeKind as Kind};
use tracing::{debug, info, warn};

use crate::{broker::field_table, error::Error};

/// What `apply` declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub exchanges: usize,
    pub queues: usize,
    pub bindings: usize,
}

/// The broker's text for a 406, if that is what `e` is.
fn precondition_failed(e: &lapin::Error) -> Option<String> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406 => {
            Some(amqp.get_message().to_string())
        }
        _ => None,
    }
}

/// A failed `{what}.declare` of `name`: a conflict when the broker says 406.
fn declare_err<'a>(what: &'static str, name: &'a str) -> impl FnOnce(lapin::Error) -> Error + 'a {
    move |source| match precondition_failed(&source) {
        Some(detail) => Error::Conflict {
            what,
            name: name.to_string(),
            detail,
        },
        None => Error::broker(format!("{what}.declare {name}"))(source),
    }
}

/// Whether a 406 on `queue` names an argument added after that queue may
/// have been declared by an older release.
fn predates<'a>(d: &'a Declarations, queue: &str, detail: &str) -> Option<&'a str> {
    d.added_later
        .iter()
        .find(|(q, arg, _)| q == queue && detail.contains(arg))
        .map(|(_, _, why)| *why)
}

fn lapin_kind(k: Kind) -> ExchangeKind {
    match k {
        Kind::Direct => ExchangeKind::Direct,
        Kind::Fanout => ExchangeKind::Fanout,
        Kind::Topic => ExchangeKind::Topic,
        Kind::Headers => ExchangeKind::Headers,
    }
}

/// Declares every exchange, queue and binding in `d` on one channel.
pub async fn apply(conn: &Connection, d: &Declarations) -> Result<Applied, Error> {
    let ch = crate::broker::open_channel(conn).await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for e in &d.exchanges {
        ch.exchange_declare(
            e.name.as_str().into(),
            lapin_kind(e.kind),
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(declare_err("exchange", &e.name))?;
        debug!(exchange = %e.name, kind = e.kind.as_str(), "declared exchange");
    }
    let queue_opts = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut ch = ch;
    for q in &d.queues {
        let declared = ch
            .queue_declare(q.name.as_str().into(), queue_opts, field_table(&q.args))
            .await
            .map_err(declare_err("queue", &q.name));
        match declared {
            Ok(_) => debug!(queue = %q.name, "declared queue"),
            Err(Error::Conflict { detail, .. }) if predates(d, &q.name, &detail).is_some() => {
                let why = predates(d, &q.name, &detail).unwrap_or_default();
                warn!(queue = %q.name, %detail, "queue declared by an older Sundial, kept as it is: {why}");
                // The 406 closed the channel.
                ch = crate::broker::open_channel(conn).await?;
            }
            Err(e) => return Err(e),
        }
    }
    for b in &d.bindings {
        ch.queue_bind(
            b.queue.as_str().into(),
            b.exchange.as_str().into(),
            b.routing_key.as_str().into(),
            QueueBindOptions::default(),
            field_table(&b.args),
        )
        .await
        .map_err(Error::broker(format!(
            "queue.bind {} to {}",
            b.queue, b.exchange
        )))?;
    }
    // Closing politely; a failure here changes nothing that was declared.
    let _ = ch.close(200, "topology applied".into()).await;
    let applied = Applied {
        exchanges: d.exchanges.len(),
        queues: d.queues.len(),
        bindings: d.bindings.len(),
    };
    info!(
        exchanges = applied.exchanges,
        queues = applied.queues,
        bindings = applied.bindings,
        "topology applied"
    );
    Ok(applied)
}

/// As [`apply`], for processes that may run with least-privilege
/// credentials (deploy/rabbitmq/definitions.json): without configure
/// permission, the topology is taken as declared by `sundial topology apply`
/// (run with admin credentials) and `Ok(false)` is returned.
pub async fn apply_if_permitted(conn: &Connection, d: &Declarations) -> Result<bool, Error> {
    match apply(conn, d).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_access_refused() => {
            info!(error = %e, "no permission to declare the topology; using it as declared by `sundial topology apply`");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
