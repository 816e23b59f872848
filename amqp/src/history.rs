//! The history stream (ADR 0015): workers append run records to it, a
//! scheduler's index follows it.

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
