//! The [`Monitor`]: told when phases start and end, it samples a [`Gauge`] a few times a second
//! and shows the running phase: a redrawn line on a terminal ([`Mode::Bar`]), a log line every
//! interval ([`Mode::Lines`]), or JSON events on stderr ([`Mode::Json`]). Phase starts and ends
//! are always shown (in `Lines` and `Json` at once, not at the next interval).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::estimate::{estimate, Estimate, Sample, Window};
use super::format::duration;
use super::render::{event, line, EventKind, View};
use super::{lock, Gauge, Reading, Ticker};

/// How often the monitor samples the gauge (and redraws a terminal's line).
pub const TICK: Duration = Duration::from_millis(250);

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A line redrawn in place on stderr (a terminal).
    Bar,
    /// A log line (`tracing`, INFO) at each phase's start and end and every interval between.
    Lines,
    /// One JSON object per line on stderr at each phase's start and end and every interval.
    Json,
    /// Nothing.
    Off,
}

impl Mode {
    /// The mode for a command: JSON events with `--json`, a bar on a terminal, log lines
    /// otherwise.
    pub fn pick(json: bool) -> Mode {
        use std::io::IsTerminal;
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// Shows the progress of the running phase.
pub struct Monitor {
    mode: Mode,
    every: Duration,
    gauge: Arc<dyn Gauge>,
    bar: ProgressBar,
    running: Mutex<Option<Running>>,
}

/// The phase running now.
struct Running {
    phase: &'static str,
    started: Instant,
    window: Window,
    step_window: Window,
    step_what: String,
    shown: Instant,
}

impl Monitor {
    /// A monitor showing `gauge`'s readings in `mode`, every `every` in `Lines` and `Json`.
    pub fn new(mode: Mode, every: Duration, gauge: Arc<dyn Gauge>) -> Arc<Self> {
        let bar = if mode == Mode::Bar {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            if let Ok(style) = ProgressStyle::with_template("{msg}") {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Arc::new(Self {
            mode,
            every,
            gauge,
            bar,
            running: Mutex::new(None),
        })
    }

    /// Samples and shows every [`TICK`] until the returned ticker is dropped (needs a Tokio
    /// runtime).
    pub fn spawn(self: &Arc<Self>) -> Ticker {
        let me = self.clone();
        Ticker(tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                me.tick();
            }
        }))
    }

    /// A phase starts.
    pub fn started(&self, phase: &'static str) {
        let now = Instant::now();
        let running = Running {
            phase,
            started: now,
            window: Window::default(),
            step_window: Window::default(),
            step_what: String::new(),
            shown: now,
        };
        let reading = self.gauge.reading(phase);
        let view = running.view(reading.as_ref());
        match self.mode {
            Mode::Json => emit(&event(EventKind::PhaseStarted, &view)),
            Mode::Lines => tracing::info!(phase, "{phase} started{}", planned(reading.as_ref())),
            Mode::Bar => self.bar.set_message(line(&view, true)),
            Mode::Off => {}
        }
        *lock(&self.running) = Some(running);
    }

    /// A phase ends after `seconds`.
    pub fn done(&self, phase: &'static str, seconds: f64) {
        let taken = lock(&self.running).take();
        let reading = self.gauge.reading(phase);
        let (estimate, step) = match taken {
            Some(mut r) if r.phase == phase => r.sample(reading.as_ref()),
            _ => Default::default(),
        };
        // The phase's average, not the last seconds', is what its end reports.
        let average = reading.as_ref().map(|r| Estimate {
            rate: (seconds > 0.0).then(|| r.done as f64 / seconds),
            byte_rate: r
                .bytes
                .filter(|_| seconds > 0.0)
                .map(|b| b as f64 / seconds),
            eta_seconds: Some(0.0),
            fraction: estimate.fraction,
        });
        let view = View {
            phase,
            elapsed: seconds,
            reading: reading.as_ref(),
            estimate: average.unwrap_or_default(),
            step,
        };
        let summary = || match &reading {
            Some(r) => {
                let mut r = r.clone();
                r.step = None;
                let mut v = view;
                v.reading = Some(&r);
                let text = line(&v, false);
                // Drop the phase name, the ETA and the elapsed time: "done in" says it.
                let figures: Vec<&str> = text
                    .split("  ")
                    .skip(1)
                    .filter(|p| !p.starts_with("ETA") && !p.starts_with("(elapsed"))
                    .collect();
                format!(": {}", figures.join(", "))
            }
            None => String::new(),
        };
        match self.mode {
            Mode::Json => emit(&event(EventKind::PhaseDone, &view)),
            Mode::Lines => {
                tracing::info!(
                    phase,
                    seconds,
                    "{phase} done in {}{}",
                    duration(seconds),
                    summary()
                )
            }
            Mode::Bar => {
                self.bar.set_message("");
                self.bar.println(format!(
                    "{phase:8} done in {}{}",
                    duration(seconds),
                    summary()
                ));
            }
            Mode::Off => {}
        }
    }

    /// Samples the running phase and shows it when due.
    pub fn tick(&self) {
        let mut guard = lock(&self.running);
        let Some(running) = guard.as_mut() else {
            return;
        };
        let reading = self.gauge.reading(running.phase);
        let (estimate, step) = running.sample(reading.as_ref());
        let view = View {
            phase: running.phase,
            elapsed: running.started.elapsed().as_secs_f64(),
            reading: reading.as_ref(),
            estimate,
            step,
        };
        match self.mode {
            Mode::Bar => self.bar.set_message(line(&view, true)),
            Mode::Lines | Mode::Json if running.shown.elapsed() >= self.every => {
                running.shown = Instant::now();
                if self.mode == Mode::Json {
                    emit(&event(EventKind::Progress, &view));
                } else {
                    tracing::info!(phase = running.phase, "{}", line(&view, false).trim_end());
                }
            }
            _ => {}
        }
    }

    /// Clears a terminal's line (before the command prints its summary).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Running {
    /// Adds the current position to the windows; the phase's and the step's estimates.
    fn sample(&mut self, reading: Option<&Reading>) -> (Estimate, Estimate) {
        let at = self.started.elapsed().as_secs_f64();
        let Some(r) = reading else {
            return Default::default();
        };
        self.window.push(Sample {
            at,
            done: r.done,
            bytes: r.bytes.unwrap_or(0),
        });
        let phase = estimate(r.done, r.total, &self.window.samples());
        let step = match &r.step {
            Some(s) => {
                if s.what != self.step_what {
                    self.step_what = s.what.clone();
                    self.step_window = Window::default();
                }
                self.step_window.push(Sample {
                    at,
                    done: s.done,
                    bytes: 0,
                });
                estimate(s.done, s.total, &self.step_window.samples())
            }
            None => Estimate::default(),
        };
        (phase, step)
    }

    /// The view at the phase's start (nothing measured yet).
    fn view<'a>(&self, reading: Option<&'a Reading>) -> View<'a> {
        View {
            phase: self.phase,
            elapsed: 0.0,
            reading,
            estimate: estimate(
                reading.map_or(0, |r| r.done),
                reading.and_then(|r| r.total),
                &[],
            ),
            step: Estimate::default(),
        }
    }
}

/// What a phase has to do, for its start line: ` (2.0 M docs, 2.2 GB)`.
fn planned(reading: Option<&Reading>) -> String {
    use super::format::{bytes, count};
    let Some(Reading {
        total: Some(total),
        unit,
        at_most,
        bytes_total,
        ..
    }) = reading
    else {
        return String::new();
    };
    let bound = if *at_most { "at most " } else { "" };
    match bytes_total {
        Some(b) => format!(
            " ({bound}{} {unit}, {})",
            count(*total as f64),
            bytes(*b as f64)
        ),
        None => format!(" ({bound}{} {unit})", count(*total as f64)),
    }
}

/// Writes one event as a line on stderr (one write, so lines of other writers do not cut it).
fn emit(event: &impl serde::Serialize) {
    if let Ok(mut text) = serde_json::to_string(event) {
        text.push('\n');
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}
