//! `sundial-web`: the web application of a Sundial process. Every process
//! serves the operations endpoint (`/metrics`, `/healthz`, `/readyz`); a
//! scheduler and `sundial run` also serve the HTTP API (`/api/v1`,
//! docs/api.md) and the dashboard. It reads jobs through a [`api::JobsSource`]
//! the binary wires to the scheduler's registry (this crate never imports
//! the scheduler), runs from the history store, and writes through the
//! control queue like any other client.
//!
//! # Layout
//!
//! | module        | responsibility |
//! |---------------|----------------|
//! | [`ops`]       | the listener (`serve`, `Listen`), connection limits, the Prometheus recorder, `/metrics /healthz /readyz` |
//! | [`api`]       | `/api/v1` on axum: one `Router`, auth middleware (tokens, Host/Origin rules), job reads and writes, runs, status, dead letters, the generated OpenAPI document, the dashboard's embedded assets |
//! | [`error`]     | this crate's error type |

pub mod api;
pub mod error;
pub mod ops;

pub use error::Error;
