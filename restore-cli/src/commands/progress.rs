//! The progress display of the long-running commands (`--at`, `drill`, `verify-data`): a line
//! redrawn on a terminal, a log line every `--progress-interval` without one, JSON events on
//! stderr with `--json` (`mc_restore::progress`; docs/restore.md, "Progress").

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use mc_restore::progress::{Gauge, Mode, Monitor, Ticker};

/// How often progress is printed when it is not redrawn on a terminal.
#[derive(Debug, Clone, Args)]
pub struct ProgressArgs {
    /// How often a long phase's progress is printed without a terminal (a log line) or with
    /// --json (an event on stderr); phase starts and ends are printed at once.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = super::kafka_args::parse_wait)]
    pub progress_interval: Duration,
}

impl ProgressArgs {
    /// A monitor of `gauge` for a command printing `--json` or not, sampling until the ticker
    /// is dropped.
    pub fn start(&self, json: bool, gauge: Arc<dyn Gauge>) -> (Arc<Monitor>, Ticker) {
        let monitor = Monitor::new(Mode::pick(json), self.progress_interval, gauge);
        let ticker = monitor.spawn();
        (monitor, ticker)
    }
}
