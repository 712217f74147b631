//! # mc-agent as a library
//!
//! The capture daemon's machinery, kept in a library so that tests and benchmarks drive exactly
//! what the binary runs:
//!
//! - [`capture`]: oplog source → batcher (majority-committed, cut by size and time) → sink
//!   (seal and store in order).
//! - [`kafka`]: Kafka consumer-group offsets: observation → checkpoint/changes → sink.
//! - [`metrics`]: counters and gauges, Prometheus text and `/status` JSON.
//! - [`settings`]: the policy turned into all of the above's settings, once
//!   ([`settings::AgentSettings::from_policy`]), for `mc-agent run` and the tests alike.

pub mod capture;
pub mod drills;
pub mod http;
pub mod kafka;
pub mod lease;
pub mod metrics;
pub mod retention;
pub mod settings;
pub mod snapshot;
pub mod supervisor;
