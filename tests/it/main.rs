//! Integration tests: a real Herald on ephemeral ports driven by real WebSocket and HTTP clients.
//! One binary with modules, because each `tests/*.rs` file links separately.

mod hook_server;
mod probe_support;
mod receiver;
mod redis_server;
mod support;

mod architecture;
mod client_events;
mod cluster_channels;
mod cluster_console;
mod cluster_counts;
mod cluster_fanout;
mod cluster_hooks;
mod cluster_members;
mod cluster_mode;
mod cluster_node;
mod cluster_nodes;
mod cluster_outage;
mod cluster_rolling;
mod cluster_webhook_delivery;
mod cluster_webhook_stream;
mod connection;
mod console;
mod cors;
mod decision_hooks;
mod drain;
mod fuzz_corpus;
mod hardening;
mod metrics;
mod operability;
mod presence;
mod probes_memory;
mod probes_secrets;
mod probes_throttle;
mod rest_auth;
mod rest_channels;
mod rest_events;
mod signin;
mod sockudo_config;
mod subscriptions;
mod transport;
mod webhook_burst;
mod webhook_jwt;
mod webhooks;
