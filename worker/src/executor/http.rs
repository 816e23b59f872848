//! The `http` executor: one request, success when the status is expected
//! (any 2xx unless the job lists statuses). reqwest over rustls (ring, the
//! same crypto provider as the AMQP connection).

use std::time::Duration;

use sundial_core::{
    attempt::{Failure, OutputTail},
    job::HttpExecutor,
    protocol::{fire::FireEvent, run_context as rc, timestamp},
};

use super::Executed;

/// How much of a response body goes into the run event.
const BODY_TAIL: usize = 1024;

#[derive(Clone)]
pub(crate) struct Client(reqwest::Client);

impl Client {
    pub(crate) fn new() -> Result<Self, crate::Error> {
        sundial_runtime::http_client::builder()
            .build()
            .map(Client)
            .map_err(crate::Error::HttpClient)
    }

    /// One request with the run's identity in headers (`Idempotency-Key`
    /// is the fire id, so a receiver can drop a repeated delivery) and, when
    /// the job sets no `body`, its payload as JSON (unless it is `null`).
    pub(super) async fn run(&self, spec: &HttpExecutor, fire: &FireEvent) -> Executed {
        let timeout: Duration = fire.timeout.get();
        let method = match reqwest::Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes())
        {
            Ok(m) => m,
            Err(_) => {
                return Executed::failed(Failure::abort(format!(
                    "executor.method: invalid HTTP method \"{}\"",
                    spec.method
                )))
            }
        };
        let mut req = self.0.request(method, &spec.url).timeout(timeout);
        let sets = |name: &str| spec.headers.keys().any(|k| k.eq_ignore_ascii_case(name));
        for (k, v) in &spec.headers {
            req = req.header(k, v);
        }
        // After the job's own headers, replacing any of the same name: a
        // job cannot fake its fire id.
        req = req.headers(identity(fire));
        match &spec.body {
            Some(body) => req = req.body(body.clone()),
            None if !fire.payload.is_null() => {
                if !sets("content-type") {
                    req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
                }
                req = req.body(fire.payload.to_string());
            }
            None => {}
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let why = if e.is_builder() {
                    return Executed::failed(Failure::abort(format!("executor.url: {e}")));
                } else if e.is_timeout() {
                    format!("{} timed out", spec.url)
                } else {
                    chain(&e)
                };
                return Executed::failed(Failure::retry(why));
            }
        };
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let mut tail = OutputTail::new(BODY_TAIL);
        tail.push(text.as_bytes());
        let output = (!tail.is_empty()).then(|| tail.text());
        let ok = if spec.expect.is_empty() {
            status.is_success()
        } else {
            spec.expect.contains(&status.as_u16())
        };
        let result = if ok {
            Ok(())
        } else {
            Err(Failure::retry(format!(
                "{} {} answered {status}",
                spec.method.to_ascii_uppercase(),
                spec.url
            )))
        };
        Executed { result, output }
    }
}

fn identity(fire: &FireEvent) -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    let values = [
        (rc::HEADER_IDEMPOTENCY_KEY, fire.fire_id.clone()),
        (rc::HEADER_FIRE_ID, fire.fire_id.clone()),
        (rc::HEADER_JOB_ID, fire.job_id.clone()),
        (rc::HEADER_SCHEDULED_AT, timestamp(fire.scheduled_at)),
        (rc::HEADER_ATTEMPT, fire.attempt.to_string()),
    ]
    .into_iter()
    .chain(
        rc::step_values(fire)
            .into_iter()
            .map(|(name, value)| (name.http_header(), value)),
    );
    for (name, value) in values {
        // Ids are [a-z0-9._-] and timestamps ASCII: always valid values.
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
    h
}

/// The error and its innermost cause: reqwest's own message ("error
/// sending request") hides the useful part ("Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut root = e.source();
    while let Some(next) = root.and_then(|c| c.source()) {
        root = Some(next);
    }
    match root {
        Some(r) => format!("{e}: {r}"),
        None => e.to_string(),
    }
}
