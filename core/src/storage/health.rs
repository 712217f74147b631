//! What the [`logging`](super::logging) layer knows of a store's health: answering or not, since
//! when, the newest failure, and failures counted by operation and kind. Shared (an `Arc`) with
//! whoever reports it: the agent's `/metrics` (`mc_repository_up`, `mc_store_errors_total`) and
//! `/status`.
//!
//! A capture that knows what waits for the store registers a [`BacklogProbe`]; the WARN lines
//! then say how many bytes wait and how old the oldest entry not yet stored is.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::ErrorKind;

/// What waits for the store, as the capture knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Bytes handed to the store's writer and not yet stored.
    pub waiting_bytes: u64,
    /// Age of the oldest entry not yet stored, when there is one.
    pub oldest_age: Option<Duration>,
}

/// Reports the current [`Backlog`].
pub type BacklogProbe = Arc<dyn Fn() -> Backlog + Send + Sync>;

/// The store's state as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreState {
    /// No operation has finished yet.
    Unknown,
    /// The newest attempt got an answer.
    Up,
    /// The newest attempt failed or timed out.
    Down,
}

/// The newest failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    pub op: &'static str,
    pub kind: &'static str,
    /// The error's message (never contains credentials).
    pub message: String,
    /// Unix ms.
    #[serde(skip)]
    pub at_ms: i64,
}

/// The health of one store (see the module comment).
#[derive(Default)]
pub struct StoreHealth {
    /// 0 unknown, 1 up, 2 down.
    state: AtomicU8,
    /// Unix ms of the newest state change (0: never).
    since_ms: AtomicI64,
    errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    last_error: Mutex<Option<LastError>>,
    /// Unix ms of the newest WARN (0: none during this outage).
    last_warn_ms: AtomicI64,
    backlog: Mutex<Option<BacklogProbe>>,
    describe: Mutex<String>,
}

impl std::fmt::Debug for StoreHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHealth")
            .field("state", &self.state())
            .field("since_ms", &self.since_ms.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// A copy of the health for `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    /// Where the store is (never contains credentials); empty until it is opened.
    pub store: String,
    pub state: StoreState,
    /// When the state last changed (RFC 3339), if it did.
    pub since: Option<String>,
    /// Seconds in this state.
    pub for_seconds: Option<f64>,
    pub last_error: Option<LastError>,
    /// Failed attempts so far, all operations and kinds.
    pub errors: u64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl StoreHealth {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Names the store in messages and status.
    pub fn set_describe(&self, describe: String) {
        if let Ok(mut d) = self.describe.lock() {
            *d = describe;
        }
    }

    pub fn describe(&self) -> String {
        self.describe.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn state(&self) -> StoreState {
        match self.state.load(Relaxed) {
            1 => StoreState::Up,
            2 => StoreState::Down,
            _ => StoreState::Unknown,
        }
    }

    /// Unix ms of the newest state change, 0 if none.
    pub fn since_ms(&self) -> i64 {
        self.since_ms.load(Relaxed)
    }

    /// Registers what the capture knows of the backlog (replacing an earlier probe).
    pub fn set_backlog_probe(&self, probe: BacklogProbe) {
        if let Ok(mut b) = self.backlog.lock() {
            *b = Some(probe);
        }
    }

    /// The backlog, when a probe is registered.
    pub fn backlog(&self) -> Option<Backlog> {
        let probe = self.backlog.lock().ok()?.clone()?;
        Some(probe())
    }

    /// Failed attempts by (operation, kind).
    pub fn errors(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().ok()?.clone()
    }

    /// An attempt got an answer. Returns how long the store had been down, if it was.
    pub fn record_success(&self) -> Option<Duration> {
        let before = self.state.swap(1, Relaxed);
        if before == 1 {
            return None;
        }
        let now = now_ms();
        let since = self.since_ms.swap(now, Relaxed);
        self.last_warn_ms.store(0, Relaxed);
        (before == 2).then(|| Duration::from_millis((now - since).max(0) as u64))
    }

    /// An attempt failed. Returns `Some(down_for)` when a WARN is due: on the first failure of
    /// an outage, then at most every `warn_every`.
    pub fn record_failure(
        &self,
        op: &'static str,
        kind: ErrorKind,
        message: String,
        warn_every: Duration,
    ) -> Option<Duration> {
        let now = now_ms();
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry((op, kind.as_str())).or_default() += 1;
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(LastError {
                op,
                kind: kind.as_str(),
                message,
                at_ms: now,
            });
        }
        if self.state.swap(2, Relaxed) != 2 {
            self.since_ms.store(now, Relaxed);
        }
        let since = self.since_ms.load(Relaxed);
        let last_warn = self.last_warn_ms.load(Relaxed);
        let due = last_warn == 0 || now - last_warn >= warn_every.as_millis() as i64;
        if due
            && self
                .last_warn_ms
                .compare_exchange(last_warn, now, Relaxed, Relaxed)
                .is_ok()
        {
            Some(Duration::from_millis((now - since).max(0) as u64))
        } else {
            None
        }
    }

    /// A copy for `/status`.
    pub fn snapshot(&self) -> HealthSnapshot {
        let since = self.since_ms();
        HealthSnapshot {
            store: self.describe(),
            state: self.state(),
            since: crate::time::format_ms_if_set(since),
            for_seconds: (since > 0).then(|| ((now_ms() - since).max(0)) as f64 / 1000.0),
            last_error: self.last_error(),
            errors: self.errors().values().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_on_the_first_failure_then_at_most_every_period() {
        let h = StoreHealth::new();
        assert_eq!(h.state(), StoreState::Unknown);
        assert_eq!(h.record_success(), None);
        assert_eq!(h.state(), StoreState::Up);
        let every = Duration::from_secs(30);
        assert!(h
            .record_failure("put", ErrorKind::Timeout, "x".into(), every)
            .is_some());
        assert!(h
            .record_failure("put", ErrorKind::Timeout, "x".into(), every)
            .is_none());
        assert!(h
            .record_failure("head", ErrorKind::Unreachable, "y".into(), Duration::ZERO)
            .is_some());
        assert_eq!(h.state(), StoreState::Down);
        assert_eq!(h.errors()[&("put", "timeout")], 2);
        assert!(h.record_success().is_some(), "down, then up again");
        assert_eq!(h.snapshot().errors, 3);
    }
}
