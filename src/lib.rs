//! Herald: a Pusher-compatible realtime pub/sub WebSocket server.
//!
//! # Layout
//! - [`config`]: the `config.json` schema (Sockudo-compatible), defaults, env overrides, validation.
//! - [`apps`]: configured applications and their limits, looked up by id and key.
//! - [`protocol`]: wire types, error codes, channel-name rules and HMAC signing. No I/O.
//! - [`engine`]: channels, subscriptions, presence and cache; returns transitions. No I/O.
//! - [`cluster`]: the adapter between the engine and the rest (`local` for a single node).
//! - [`transport`]: one task per WebSocket connection; frames written straight to the socket,
//!   with a bounded queue for what the socket cannot take at once.
//! - [`http`]: the axum router: WebSocket upgrade, REST API, health and metrics.
//! - [`webhooks`]: grace period, per-endpoint filter, batcher and signed delivery with retries.
//! - [`metrics`]: Prometheus counters and gauges.
//! - `fuzz_targets`: entry points for the fuzzer in `fuzz/` (hidden; not a server API).
//! - [`server`]: the [`Server`] facade and the accept loop: binds, runs and shuts down all of the above.
//!
//! Data flows one way: socket → engine → (fan-out, transitions for webhooks).

pub mod apps;
pub mod cluster;
pub mod config;
pub mod engine;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod transport;
pub mod webhooks;

pub use server::{RunningServer, Server};
