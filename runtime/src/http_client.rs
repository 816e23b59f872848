//! The HTTP client builder (http jobs, webhooks, the CLI's history
//! commands).

/// A builder for an HTTP client: rustls with ring as its provider, as lapin
/// uses (reqwest is built without one), and Sundial's user agent.
pub fn builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().user_agent(concat!("sundial/", env!("CARGO_PKG_VERSION")))
}
