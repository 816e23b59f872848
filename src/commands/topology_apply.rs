//! `sundial topology apply`: declare every exchange, queue and binding.

use std::io::Write;

use sundial_core::settings::Settings;

use super::CommandError;

pub async fn run(settings: &Settings, out: &mut impl Write) -> Result<(), CommandError> {
    let fail = CommandError::from;
    let conn = sundial_amqp::broker::connect_to(&settings.broker, "sundial topology apply")
        .await
        .map_err(fail)?;
    let decl = settings.topology.declarations();
    let result = sundial_amqp::topology::apply(&conn, &decl).await;
    // The connection is closed either way; a close error adds nothing.
    let _ = conn.close(200, "done".into()).await;
    let applied = result.map_err(fail)?;
    writeln!(
        out,
        "topology \"{}\" applied: {} exchanges, {} queues, {} bindings",
        settings.topology.prefix, applied.exchanges, applied.queues, applied.bindings
    )
    .map_err(CommandError::output)
}
