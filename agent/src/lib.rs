//! # mc-agent as a library
//!
//! The capture daemon's machinery, kept in a library so that tests and benchmarks drive exactly
//! what the binary runs:
//!
//! - [`capture`]: oplog source → batcher (majority-committed, cut by size and time) → sink
//!   (seal and store in order).
//! - [`kafka`]: Kafka consumer-group offsets: observation → checkpoint/changes → sink.
//! - [`metrics`]: counters and gauges, Prometheus text and `/status` JSON.

pub mod capture;
pub mod drills;
pub mod http;
pub mod kafka;
pub mod lease;
pub mod metrics;
pub mod retention;
pub mod snapshot;
pub mod supervisor;
