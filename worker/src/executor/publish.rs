//! The `publish` executor: hands the job's payload (JSON) to an exchange of
//! yours with confirms, so consumers in any language do the work.

use lapin::{
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Connection,
};
use sundial_core::{
    attempt::Failure, job::PublishExecutor, protocol::fire::FireEvent, protocol::CONTENT_TYPE_JSON,
};

use super::Executed;
use sundial_amqp::publish::{publish_raw_confirmed, PublishError};

/// Headers that tell your consumer which fire it is handling.
const JOB_HEADER: &str = "x-sundial-job";
const ATTEMPT_HEADER: &str = "x-sundial-attempt";
const SCHEDULED_HEADER: &str = "x-sundial-scheduled-at";

pub(super) async fn run(conn: &Connection, spec: &PublishExecutor, fire: &FireEvent) -> Executed {
    let ch = match sundial_amqp::broker::confirming_channel(conn).await {
        Ok(ch) => ch,
        Err(e) => return Executed::failed(Failure::retry(format!("publish: {e}"))),
    };
    let done = publish(&ch, spec, fire).await;
    let _ = ch.close(200, "publish done".into()).await;
    done
}

async fn publish(ch: &lapin::Channel, spec: &PublishExecutor, fire: &FireEvent) -> Executed {
    let body = match serde_json::to_vec(&fire.payload) {
        Ok(b) => b,
        Err(e) => return Executed::failed(Failure::abort(format!("payload: {e}"))),
    };
    let mut h = FieldTable::default();
    h.insert(
        ShortString::from(JOB_HEADER),
        AMQPValue::LongString(LongString::from(fire.job_id.as_str())),
    );
    h.insert(
        ShortString::from(ATTEMPT_HEADER),
        AMQPValue::LongLongInt(i64::from(fire.attempt)),
    );
    h.insert(
        ShortString::from(SCHEDULED_HEADER),
        AMQPValue::LongString(LongString::from(
            sundial_core::protocol::timestamp(fire.scheduled_at).as_str(),
        )),
    );
    for (name, value) in sundial_core::protocol::run_context::step_values(fire) {
        h.insert(
            ShortString::from(name.amqp_header()),
            AMQPValue::LongString(LongString::from(value.as_str())),
        );
    }
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from(CONTENT_TYPE_JSON))
        .with_message_id(ShortString::from(fire.fire_id.as_str()))
        .with_headers(h);
    match publish_raw_confirmed(ch, &spec.exchange, &spec.routing_key, &body, props).await {
        Ok(()) => Executed::ok(),
        // Unroutable or nacked: your topology may be coming up; retry.
        Err(e @ (PublishError::Returned { .. } | PublishError::Nacked)) => {
            Executed::failed(Failure::retry(e.to_string()))
        }
        Err(e) => Executed::failed(Failure::retry(format!("publish: {e}"))),
    }
}
