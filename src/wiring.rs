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

/// The clients alerts go out with: HTTP for webhook and Slack routes,
/// SMTP for mail routes.
pub fn alert_senders(routes: &[sundial_core::alert::Route]) -> sundial_scheduler::alerts::Senders {
    use sundial_core::alert::Target;
    let has = |f: fn(&Target) -> bool| routes.iter().any(|r| f(&r.target));
    sundial_scheduler::alerts::Senders {
        post: if has(|t| matches!(t, Target::Webhook { .. } | Target::Slack { .. })) {
            alert_post(routes)
        } else {
            None
        },
        mail: has(|t| matches!(t, Target::Mail(_))).then(|| {
            sundial_scheduler::alerts::SendMail(Arc::new(
                |m: sundial_core::alert::Mail, subject: String, body: String, id: String| {
                    Box::pin(async move { send_mail(&m, subject, body, id).await })
                },
            ))
        }),
        health: Default::default(),
    }
}

/// One alert mail: built, then handed to the route's server (a connection
/// per message: alerts are few).
async fn send_mail(
    m: &sundial_core::alert::Mail,
    subject: String,
    body: String,
    alert_id: String,
) -> Result<(), String> {
    use lettre::{
        message::header::{ContentType, HeaderName, HeaderValue},
        transport::smtp::{
            authentication::Credentials,
            client::{Certificate, Tls, TlsParameters},
        },
        AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    };
    use sundial_core::alert::MailTls;
    let parse = |a: &str| {
        a.parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("address {a:?}: {e}"))
    };
    let mut msg = Message::builder()
        .from(parse(&m.from)?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Sundial-Alert-Id"),
            alert_id,
        ));
    for to in &m.to {
        msg = msg.to(parse(to)?);
    }
    let msg = msg.body(body).map_err(|e| format!("message: {e}"))?;
    let tls = if m.tls == MailTls::None {
        Tls::None
    } else {
        let mut params = TlsParameters::builder(m.host.clone());
        if let Some(path) = &m.ca_file {
            // A small local file, read once per alert.
            let pem =
                std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            let ca = Certificate::from_pem(&pem)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            params = params.add_root_certificate(ca);
        }
        let params = params.build_rustls().map_err(|e| format!("TLS: {e}"))?;
        match m.tls {
            MailTls::Tls => Tls::Wrapper(params),
            _ => Tls::Required(params),
        }
    };
    let mut smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(m.host.as_str())
        .port(m.port)
        .tls(tls)
        .timeout(Some(sundial_scheduler::alerts::SEND_TIMEOUT));
    if let (Some(u), Some(p)) = (&m.username, &m.password) {
        smtp = smtp.credentials(Credentials::new(u.clone(), p.clone()));
    }
    smtp.build()
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP {}:{}: {e}", m.host, m.port))
}
