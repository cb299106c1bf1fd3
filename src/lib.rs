//! Herald: a Pusher-compatible realtime pub/sub WebSocket server.
//!
//! # Layout
//! Bottom to top (a module uses only those above it; `docs/architecture.md` has the flows):
//! - [`config`]: the `config.json` schema (Sockudo-compatible; soketi's options and variables
//!   translated onto it), defaults, env overrides, validation.
//! - [`protocol`]: wire types, error codes, channel-name rules and HMAC signing. No I/O.
//! - [`journal`]: the console's per-app ring of recent events and their live feed.
//! - [`metrics`]: Prometheus counters, gauges and histograms (and each app's journal handle).
//! - [`app_store`]: apps kept in a database table (PostgreSQL, MySQL/MariaDB), read and written.
//! - [`apps`]: configured applications and their limits, looked up by id and key.
//! - [`engine`]: channels, subscriptions, presence and cache; returns transitions. No I/O.
//! - [`outbound`]: a socket's write side: frames written straight to it, a bounded queue for
//!   what it cannot take at once.
//! - [`webhooks`]: per-endpoint filter, byte budgets, batches and signed delivery with retries.
//! - [`cluster`]: the stage every channel operation goes through; it turns transitions into
//!   replies, notices, counts and webhook events, in one ordered line per channel (`local` for
//!   a single node).
//! - [`limits`]: admission limits: connections, REST bodies being read, and per client address a
//!   share of a cap and a throttle on failures.
//! - [`hooks`]: decision hooks: the app's backend asked, and waited for, before a connection,
//!   a subscription or a client event takes effect.
//! - [`state`]: the shared state handed to every connection and request.
//! - [`transport`]: one task per WebSocket connection: the read loop and the event handlers.
//! - [`http`]: the axum router: WebSocket upgrade, REST API, health and metrics.
//! - `fuzz_targets`: entry points for the fuzzer in `fuzz/` (hidden; not a server API).
//! - [`server`]: the [`Server`] facade and the accept loop: binds, runs and shuts down all of the above.
//!
//! Data flows one way: socket or REST request → cluster stage → engine (under the channel lock)
//! → cluster stage (after it: fan-out, notices, webhook events).

pub mod app_store;
pub mod apps;
pub mod cluster;
pub mod config;
pub mod engine;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod hooks;
pub mod http;
pub mod journal;
pub mod limits;
pub mod metrics;
pub mod outbound;
pub mod protocol;
pub mod server;
pub mod state;
pub mod transport;
pub mod webhooks;

pub use server::{RunningServer, Server};
