//! Logging set-up shared by both binaries: `tracing` to stderr, human-readable by default or one
//! JSON object per line (`--log-format json`) for Loki and friends.
//!
//! Secrets never reach this layer: key material and credentials are wrapped in types whose `Debug`
//! and `Display` print a redaction (see `crypto::keys`), so a stray `?value` field cannot leak them.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

/// How log lines are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. The level comes from `RUST_LOG` when set (e.g.
/// `RUST_LOG=mc_core=debug`), otherwise from `default_level` (`info`, `debug`, …).
///
/// Calling it twice is harmless: the second call keeps the first subscriber.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
