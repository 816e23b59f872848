//! The one place the web application and the scheduler meet: the API's
//! job reads answered by this process's scheduler (neither crate imports
//! the other; ADR 0019).

use std::sync::Arc;

use sundial_scheduler::RegistryReads;
use sundial_web::api::{JobsRead, JobsSource};

/// The API's job reads, answered by this process's scheduler: the one
/// place the web application and the scheduler meet (neither crate
/// imports the other).
pub struct SchedulerJobs(pub Arc<RegistryReads>);

impl JobsSource for SchedulerJobs {
    fn read(&self, q: sundial_core::registry_read::JobsQuery) -> JobsRead<'_> {
        Box::pin(async move { self.0.read(q).await.map_err(Into::into) })
    }
}

/// How this process's scheduler sends alerts over HTTP (webhook and Slack
/// routes): the binary's client, which the scheduler crate does not carry.
/// `None` (logged) when no route is set or the client cannot be built.
pub fn alert_post(
    routes: &[sundial_core::alert::Route],
) -> Option<sundial_scheduler::alerts::Post> {
    if routes.is_empty() {
        return None;
    }
    let client = match sundial_runtime::http_client::builder()
        .timeout(sundial_scheduler::alerts::SEND_TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no HTTP client: alerts are not sent");
            return None;
        }
    };
    Some(sundial_scheduler::alerts::Post(Arc::new(
        move |url: String, headers: Vec<(&'static str, String)>, body: String| {
            let mut req = client.post(url).body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            Box::pin(async move {
                match req.send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            })
        },
    )))
}
