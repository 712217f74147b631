//! Rates and ETAs from a phase's recent positions: pure arithmetic, so every case (no progress
//! yet, an unknown total, a total passed) is a unit test.
//!
//! The rate is measured over a sliding window of recent samples rather than since the phase
//! began, so an ETA follows the current speed (a load slows down when it reaches a collection of
//! large documents; replay speeds up after the snapshot's window).

use std::collections::VecDeque;

/// Seconds of samples a rate is measured over.
pub const WINDOW_SECONDS: f64 = 20.0;

/// Shortest span a rate is computed from: below it, one batch landing makes the rate jump.
const MIN_SPAN_SECONDS: f64 = 0.5;

/// One observation of a phase's position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the phase started.
    pub at: f64,
    pub done: u64,
    pub bytes: u64,
}

/// How fast a phase goes and when it should end.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimate {
    /// Units per second over the window (`None` before there is a span to measure).
    pub rate: Option<f64>,
    /// Bytes per second over the window.
    pub byte_rate: Option<f64>,
    /// Seconds left at `rate`: `None` when the total is unknown or nothing moves; 0 once `done`
    /// reaches the total.
    pub eta_seconds: Option<f64>,
    /// `done / total`, at most 1 (`None` when the total is unknown or 0).
    pub fraction: Option<f64>,
}

/// The estimate for a phase at `done` of `total`, from its recent `samples` (oldest first; the
/// newest is the current position).
pub fn estimate(done: u64, total: Option<u64>, samples: &[Sample]) -> Estimate {
    let (rate, byte_rate) = match (samples.first(), samples.last()) {
        (Some(old), Some(new)) if new.at - old.at >= MIN_SPAN_SECONDS => {
            let span = new.at - old.at;
            (
                Some(new.done.saturating_sub(old.done) as f64 / span),
                Some(new.bytes.saturating_sub(old.bytes) as f64 / span),
            )
        }
        _ => (None, None),
    };
    let eta_seconds = match (total, rate) {
        (Some(total), _) if done >= total => Some(0.0),
        (Some(total), Some(rate)) if rate > 0.0 => Some((total - done) as f64 / rate),
        _ => None,
    };
    let fraction = match total {
        Some(total) if total > 0 => Some((done as f64 / total as f64).min(1.0)),
        _ => None,
    };
    Estimate {
        rate,
        byte_rate,
        eta_seconds,
        fraction,
    }
}

/// The recent samples of one phase: appended at each tick, trimmed to [`WINDOW_SECONDS`].
#[derive(Debug, Default)]
pub struct Window {
    samples: VecDeque<Sample>,
}

impl Window {
    /// Adds the current position and drops samples older than the window (keeping one at or
    /// before its start, so the span covers the whole window). A position lower than the last
    /// (a counter restarted) starts the window again.
    pub fn push(&mut self, sample: Sample) {
        if self
            .samples
            .back()
            .is_some_and(|last| sample.done < last.done || sample.at < last.at)
        {
            self.samples.clear();
        }
        self.samples.push_back(sample);
        while self.samples.len() > 2 && sample.at - self.samples[1].at >= WINDOW_SECONDS {
            self.samples.pop_front();
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: f64, done: u64) -> Sample {
        Sample {
            at,
            done,
            bytes: done * 100,
        }
    }

    #[test]
    fn rate_and_eta_over_the_window() {
        let e = estimate(3000, Some(10_000), &[s(0.0, 1000), s(2.0, 3000)]);
        assert_eq!(e.rate, Some(1000.0));
        assert_eq!(e.byte_rate, Some(100_000.0));
        assert_eq!(e.eta_seconds, Some(7.0));
        assert_eq!(e.fraction, Some(0.3));
    }

    #[test]
    fn no_rate_before_a_span_to_measure() {
        assert_eq!(estimate(10, Some(100), &[]).rate, None);
        assert_eq!(estimate(10, Some(100), &[s(1.0, 10)]).rate, None);
        let e = estimate(10, Some(100), &[s(1.0, 0), s(1.2, 10)]);
        assert_eq!((e.rate, e.eta_seconds), (None, None));
    }

    #[test]
    fn zero_rate_has_no_eta() {
        let e = estimate(50, Some(100), &[s(0.0, 50), s(10.0, 50)]);
        assert_eq!(e.rate, Some(0.0));
        assert_eq!(e.eta_seconds, None);
        assert_eq!(e.fraction, Some(0.5));
    }

    #[test]
    fn unknown_total_has_a_rate_but_no_eta_or_fraction() {
        let e = estimate(500, None, &[s(0.0, 0), s(5.0, 500)]);
        assert_eq!(e.rate, Some(100.0));
        assert_eq!((e.eta_seconds, e.fraction), (None, None));
        // A total of zero is no fraction either (nothing to divide by).
        let e = estimate(0, Some(0), &[]);
        assert_eq!((e.eta_seconds, e.fraction), (Some(0.0), None));
    }

    #[test]
    fn done_past_the_total_is_finished_not_negative() {
        let e = estimate(120, Some(100), &[s(0.0, 0), s(1.0, 120)]);
        assert_eq!(e.eta_seconds, Some(0.0));
        assert_eq!(e.fraction, Some(1.0));
    }

    #[test]
    fn a_counter_going_back_gives_no_negative_rate() {
        let e = estimate(10, None, &[s(0.0, 100), s(1.0, 10)]);
        assert_eq!(e.rate, Some(0.0));
    }

    #[test]
    fn window_keeps_about_its_length_and_restarts_on_a_reset() {
        let mut w = Window::default();
        for t in 0..100u32 {
            w.push(s(f64::from(t), u64::from(t) * 10));
        }
        let samples = w.samples();
        let span = samples.last().unwrap().at - samples[0].at;
        assert!(
            (WINDOW_SECONDS..WINDOW_SECONDS + 1.0).contains(&span),
            "{span}"
        );
        w.push(s(100.0, 5));
        assert_eq!(w.samples(), vec![s(100.0, 5)]);
    }
}
