//! `sundial-testkit`: what every test binary and the benchmark share (not
//! published): a private vhost per test on the system broker or on a test
//! cluster's node, the binary under test and its daemons, fire and HTTP
//! taps, and one way to wait with a bound that fails loudly.
//!
//! # Layout
//!
//! | item | what |
//! |------|------|
//! | [`Broker`], [`Vhost`], [`rabbitmqctl`], [`AppGuard`] | a vhost per test (deleted on drop), on the system broker or a cluster node |
//! | [`sundial`], [`Daemon`], [`topology_apply`], [`job_apply`], [`job_get`] | the binary under test, one-shot and long-running |
//! | [`bounded`], [`wait_until`], [`poll_until`] | waits with a bound: a future, a condition signalled by a `Notify`, a polled condition |
//! | [`http_get`], [`http_call`], [`http_exchange`], [`wait_status`], [`raw_http`] | HTTP with reqwest; `raw_http` only for what a client library would not send |
//! | [`FireTap`], [`HttpSink`], [`drain`] | fires off the work queues, a webhook target, a queue emptied |

mod broker;
mod http;
mod process;
mod taps;
mod wait;

pub use broker::*;
pub use http::*;
pub use process::*;
pub use taps::*;
pub use wait::*;
