//! A phase's position as text: the human line (with or without a bar) and the JSON event, from
//! the same [`Reading`] and [`Estimate`], so the two never disagree.

use serde::Serialize;

use super::estimate::Estimate;
use super::format::{self, count, duration};
use super::{Reading, Step};

/// Width of the bar on a terminal, in characters.
const BAR_WIDTH: usize = 24;

/// What the monitor knows of a phase at one moment.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub phase: &'a str,
    /// Seconds since the phase started.
    pub elapsed: f64,
    pub reading: Option<&'a Reading>,
    pub estimate: Estimate,
    /// The running step's estimate (its own rate and ETA).
    pub step: Estimate,
}

/// The human line: `load     [######------]  61%  1.2 M / 2.0 M docs  68.7 k docs/s  45.3 MB/s
/// ETA 3m 20s`, then what runs now. `bar` draws the bar (a terminal).
pub fn line(v: &View, bar: bool) -> String {
    let mut parts: Vec<String> = vec![format!("{:8}", v.phase)];
    let Some(r) = v.reading else {
        parts.push(format!("running for {}", duration(v.elapsed)));
        return parts.join(" ");
    };
    let e = &v.estimate;
    if bar {
        parts.push(draw(e.fraction));
    }
    if let Some(f) = e.fraction {
        parts.push(format!("{:.0}%", (f * 100.0).floor()));
    }
    parts.push(match r.total {
        Some(t) if r.at_most => {
            format!("{} / at most {} {}", count_of(r.done), count_of(t), r.unit)
        }
        Some(t) => format!("{} / {} {}", count_of(r.done), count_of(t), r.unit),
        None => format!("{} {}", count_of(r.done), r.unit),
    });
    if let Some(rate) = e.rate {
        parts.push(format::rate(rate, r.unit));
    }
    if let (Some(_), Some(rate)) = (r.bytes, e.byte_rate) {
        parts.push(format::rate(rate, "bytes"));
    }
    if r.total.is_some() {
        let bound = if r.at_most && e.eta_seconds.is_some_and(|s| s > 0.0) {
            "at most "
        } else {
            ""
        };
        parts.push(format!("ETA {bound}{}", format::eta(e.eta_seconds)));
    }
    parts.push(format!("(elapsed {})", duration(v.elapsed)));
    let mut out = parts.join("  ");
    if let Some(step) = &r.step {
        out.push_str(" · ");
        out.push_str(&step_text(step, &v.step));
    }
    out
}

/// `app.users (email_1): scanning collection 1.2 M / 2.0 M  61%  40.1 k/s  ETA 20s`.
fn step_text(s: &Step, e: &Estimate) -> String {
    let mut out = s.what.clone();
    if let Some(stage) = &s.stage {
        out.push_str(": ");
        out.push_str(stage);
    }
    if s.done > 0 || s.total.is_some() {
        out.push(' ');
        out.push_str(&match s.total {
            Some(t) => format!("{} / {}", count_of(s.done), count_of(t)),
            None => count_of(s.done),
        });
        if let Some(f) = e.fraction {
            out.push_str(&format!("  {:.0}%", (f * 100.0).floor()));
        }
        if let Some(rate) = e.rate {
            out.push_str(&format!("  {}/s", count(rate)));
        }
        if s.total.is_some() {
            out.push_str(&format!("  ETA {}", format::eta(e.eta_seconds)));
        }
    }
    out
}

fn count_of(n: u64) -> String {
    count(n as f64)
}

fn draw(fraction: Option<f64>) -> String {
    let filled = fraction.map_or(0, |f| (f * BAR_WIDTH as f64).floor() as usize);
    let filled = filled.min(BAR_WIDTH);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(BAR_WIDTH - filled))
}

/// Which moment of a phase an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    PhaseStarted,
    Progress,
    PhaseDone,
}

/// One `--json` progress event: one JSON object per line on stderr. Every key is always
/// present; `null` where the phase does not know the figure.
#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    pub event: EventKind,
    pub phase: &'a str,
    /// Seconds since the phase started (on `phase_done`, the phase's duration).
    pub elapsed: f64,
    pub done: Option<u64>,
    pub total: Option<u64>,
    /// `total` is an upper bound the phase may end below.
    pub at_most: bool,
    pub unit: Option<&'a str>,
    /// Units per second over the last seconds.
    pub rate: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub bytes_done: Option<u64>,
    pub bytes_total: Option<u64>,
    pub bytes_rate: Option<f64>,
    /// The piece of work running now (an index build), with its own position.
    pub step: Option<StepEvent<'a>>,
}

/// The running step in an event.
#[derive(Debug, Clone, Serialize)]
pub struct StepEvent<'a> {
    pub what: &'a str,
    pub stage: Option<&'a str>,
    pub done: u64,
    pub total: Option<u64>,
    pub rate: Option<f64>,
    pub eta_seconds: Option<f64>,
}

/// The event for `v`.
pub fn event<'a>(kind: EventKind, v: &View<'a>) -> Event<'a> {
    let r = v.reading;
    Event {
        event: kind,
        phase: v.phase,
        elapsed: tenths(v.elapsed),
        done: r.map(|r| r.done),
        total: r.and_then(|r| r.total),
        at_most: r.is_some_and(|r| r.at_most),
        unit: r.map(|r| r.unit),
        rate: v.estimate.rate.map(tenths),
        eta_seconds: v.estimate.eta_seconds.map(tenths),
        bytes_done: r.and_then(|r| r.bytes),
        bytes_total: r.and_then(|r| r.bytes_total),
        bytes_rate: r
            .and_then(|r| r.bytes)
            .and(v.estimate.byte_rate)
            .map(tenths),
        step: r.and_then(|r| r.step.as_ref()).map(|s| StepEvent {
            what: &s.what,
            stage: s.stage.as_deref(),
            done: s.done,
            total: s.total,
            rate: v.step.rate.map(tenths),
            eta_seconds: v.step.eta_seconds.map(tenths),
        }),
    }
}

/// Rounded to a tenth: scripts need no more, people reading the JSON less.
fn tenths(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(done: u64) -> Reading {
        Reading {
            done,
            total: Some(2_000_000),
            unit: "docs",
            bytes: Some(done * 1100),
            bytes_total: Some(2_200_000_000),
            ..Reading::default()
        }
    }

    #[test]
    fn the_load_line_in_human_units() {
        let r = load(1_234_567);
        let v = View {
            phase: "load",
            elapsed: 18.0,
            reading: Some(&r),
            estimate: Estimate {
                rate: Some(68_721.914_1),
                byte_rate: Some(75_594_105.5),
                eta_seconds: Some(200.0),
                fraction: Some(0.617),
            },
            step: Estimate::default(),
        };
        assert_eq!(
            line(&v, false),
            "load      61%  1.2 M / 2.0 M docs  68.7 k docs/s  75.6 MB/s  ETA 3m 20s  (elapsed 18s)"
        );
        assert!(line(&v, true).starts_with("load      [##############----------]  61%"));
        let json = serde_json::to_value(event(EventKind::Progress, &v)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"event": "progress", "phase": "load", "elapsed": 18.0,
                "done": 1_234_567, "total": 2_000_000, "at_most": false, "unit": "docs",
                "rate": 68_721.9, "eta_seconds": 200.0, "bytes_done": 1_358_023_700u64,
                "bytes_total": 2_200_000_000u64, "bytes_rate": 75_594_105.5, "step": null})
        );
    }

    #[test]
    fn unknown_rate_total_and_bounds() {
        let r = Reading {
            done: 300_000,
            total: Some(1_000_000),
            at_most: true,
            unit: "entries",
            ..Reading::default()
        };
        let v = View {
            phase: "replay",
            elapsed: 0.3,
            reading: Some(&r),
            estimate: Estimate {
                fraction: Some(0.3),
                ..Estimate::default()
            },
            step: Estimate::default(),
        };
        assert_eq!(
            line(&v, false),
            "replay    30%  300.0 k / at most 1.0 M entries  ETA ?  (elapsed 0s)"
        );
        let none = View {
            phase: "users",
            elapsed: 12.0,
            reading: None,
            estimate: Estimate::default(),
            step: Estimate::default(),
        };
        assert_eq!(line(&none, true), "users    running for 12s");
        let json = serde_json::to_value(event(EventKind::PhaseStarted, &none)).unwrap();
        assert_eq!(json["event"], "phase_started");
        assert!(json["done"].is_null() && json["total"].is_null() && json["rate"].is_null());
    }

    #[test]
    fn an_index_build_step() {
        let r = Reading {
            done: 1,
            total: Some(3),
            unit: "indexes",
            step: Some(Step {
                what: "app.users (email_1)".into(),
                stage: Some("scanning collection".into()),
                done: 1_200_000,
                total: Some(2_000_000),
            }),
            ..Reading::default()
        };
        let v = View {
            phase: "indexes",
            elapsed: 75.0,
            reading: Some(&r),
            estimate: Estimate {
                rate: Some(0.0),
                fraction: Some(1.0 / 3.0),
                ..Estimate::default()
            },
            step: Estimate {
                rate: Some(40_100.0),
                eta_seconds: Some(20.0),
                fraction: Some(0.6),
                ..Estimate::default()
            },
        };
        assert_eq!(
            line(&v, false),
            "indexes   33%  1 / 3 indexes  0 indexes/s  ETA ?  (elapsed 1m 15s) · app.users (email_1): scanning collection 1.2 M / 2.0 M  60%  40.1 k/s  ETA 20s"
        );
        let json = serde_json::to_value(event(EventKind::Progress, &v)).unwrap();
        assert_eq!(json["step"]["stage"], "scanning collection");
        assert_eq!(json["step"]["eta_seconds"], 20.0);
        assert_eq!(json["total"], 3);
    }

    #[test]
    fn a_bar_never_overflows() {
        assert_eq!(draw(Some(1.5)).len(), BAR_WIDTH + 2);
        assert_eq!(draw(None), format!("[{}]", "-".repeat(BAR_WIDTH)));
    }
}
