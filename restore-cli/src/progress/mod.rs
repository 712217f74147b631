//! Progress a person can read during hours-long phases, and the same numbers as JSON events for
//! scripts (docs/restore.md, "Progress").
//!
//! The phases count what they do into counters ([`Meter`], and the restore's own
//! `restore::Progress`); a [`Gauge`] turns those counters into a [`Reading`] of one phase (how
//! far, of how much, in which unit, what it is doing now); a [`Monitor`] samples the gauge a few
//! times a second, estimates the rate and ETA over a sliding window ([`estimate`]) and shows
//! them: a redrawn line on a terminal, a plain log line every interval without one (a
//! Kubernetes Job's log stays readable), or one JSON object per line on stderr with `--json`.
//!
//! The parts: `estimate` (rates and ETAs, pure), `format` (human units), `render` (the human
//! line and the JSON event), `monitor` (sampling and output), `indexes` (index builds' progress
//! as the server reports it in `$currentOp`).

pub mod estimate;
pub mod format;
pub mod indexes;
pub mod monitor;
pub mod render;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

pub use monitor::{Mode, Monitor};

/// One phase's position, as a display reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Units done so far.
    pub done: u64,
    /// Units the phase has in all, when known.
    pub total: Option<u64>,
    /// `total` is an upper bound the phase may end below (replay: every entry of the chosen
    /// segments, including those outside the window it applies).
    pub at_most: bool,
    /// What is counted: `docs`, `entries`, `indexes`, `namespaces`.
    pub unit: &'static str,
    /// Bytes done and in all, where the phase counts them.
    pub bytes: Option<u64>,
    pub bytes_total: Option<u64>,
    /// The piece of work running now, with its own position (an index build's scan).
    pub step: Option<Step>,
}

/// The piece of work a phase is doing now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// What it is: `app.users (email_1, name_1)`.
    pub what: String,
    /// Its stage, when the server says (`scanning collection`).
    pub stage: Option<String>,
    pub done: u64,
    pub total: Option<u64>,
}

/// Turns a phase's counters into a reading; `None` for a phase that counts nothing.
pub trait Gauge: Send + Sync {
    fn reading(&self, phase: &str) -> Option<Reading>;
}

/// Counters of a phase measured in one unit, with an optional total and the step running now.
#[derive(Debug, Default)]
pub struct Meter {
    pub done: AtomicU64,
    total: Mutex<Option<u64>>,
    step: Mutex<Option<Step>>,
}

impl Meter {
    /// Sets the phase's total (and starts `done` again from 0).
    pub fn plan(&self, total: u64) {
        self.done.store(0, Relaxed);
        *lock(&self.total) = Some(total);
        *lock(&self.step) = None;
    }

    /// Adds `n` units done.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Relaxed);
    }

    /// Sets (or, with `None`, ends) the step running now.
    pub fn set_step(&self, step: Option<Step>) {
        *lock(&self.step) = step;
    }

    /// Adds `n` to the running step's position (without one, nothing happens).
    pub fn step_add(&self, n: u64) {
        if let Some(step) = lock(&self.step).as_mut() {
            step.done += n;
        }
    }

    /// The position in `unit`.
    pub fn reading(&self, unit: &'static str) -> Reading {
        Reading {
            done: self.done.load(Relaxed),
            total: *lock(&self.total),
            unit,
            step: lock(&self.step).clone(),
            ..Reading::default()
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A background task of the progress display (sampling, polling the server), stopped when
/// dropped.
pub struct Ticker(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}
