//! The batcher: holds oplog entries read from the source until they are majority-committed, and
//! cuts them into segment-sized batches. Pure logic, no I/O, so the cutting rules are tested
//! exactly.
//!
//! An entry is released into a batch only when the replica set's majority commit point has
//! reached it: an entry the majority has not acknowledged can still be rolled back by a
//! failover, and a backup must never contain a write the cluster lost.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mc_core::format::OplogTs;

/// One oplog entry as read: raw BSON, untouched, and its timestamp (the only field every
/// entry needs parsed; see [`OplogEntry::wall_ms`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OplogEntry {
    pub ts: OplogTs,
    /// The entry's bytes: a slice of the server reply it came in (see `oplog::OplogCursor`).
    pub raw: Bytes,
}

impl OplogEntry {
    /// The entry's `wall` clock time in Unix milliseconds (0 when absent or unreadable).
    /// Read on demand: only the last entry of a segment needs it (for the RPO metric), and
    /// `wall` is the last field of an entry, so parsing it for every entry of a backlog cost
    /// more than any other step of reading.
    pub fn wall_ms(&self) -> i64 {
        mongodb::bson::RawDocument::from_bytes(&self.raw)
            .and_then(|d| d.get_datetime("wall"))
            .map_or(0, |d| d.timestamp_millis())
    }
}

/// A run of entries ready to be sealed into one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The `last` of the batch before this one; `None` starts a new run (after a gap).
    pub prev: Option<OplogTs>,
    pub entries: Vec<OplogEntry>,
}

impl Batch {
    pub fn first(&self) -> OplogTs {
        self.entries
            .first()
            .map(|e| e.ts)
            .unwrap_or(OplogTs::new(0, 0))
    }
    pub fn last(&self) -> OplogTs {
        self.entries
            .last()
            .map(|e| e.ts)
            .unwrap_or(OplogTs::new(0, 0))
    }
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.raw.len() as u64).sum()
    }
}

/// When to cut.
#[derive(Debug, Clone, Copy)]
pub struct CutRules {
    /// Cut when the committed entries waiting reach this many bytes.
    pub max_bytes: u64,
    /// Cut at most this long after the oldest committed entry arrived.
    pub seal_interval: Duration,
}

/// Entries waiting for the majority and for a cut.
#[derive(Debug)]
pub struct Batcher {
    rules: CutRules,
    pending: VecDeque<(OplogEntry, Instant)>,
    pending_bytes: u64,
    /// How many of the oldest pending entries the majority has reached, and their bytes.
    committed: usize,
    committed_bytes: u64,
    majority: Option<OplogTs>,
    /// `last` of the previous batch handed out (the chain link for the next one).
    prev: Option<OplogTs>,
    /// The newest entry the source had when last asked (see [`Batcher::set_source_end`]).
    source_end: Option<OplogTs>,
    /// The last cut was by size: the reader is behind the source (catching up a backlog).
    behind: bool,
}

impl Batcher {
    /// `prev` is the end of the durable timeline this capture continues, or `None` for a new run.
    pub fn new(rules: CutRules, prev: Option<OplogTs>) -> Self {
        Self {
            rules,
            pending: VecDeque::new(),
            pending_bytes: 0,
            committed: 0,
            committed_bytes: 0,
            majority: None,
            prev,
            source_end: None,
            behind: false,
        }
    }

    /// Adds an entry read from the oplog (in oplog order).
    pub fn push(&mut self, entry: OplogEntry, now: Instant) {
        let size = entry.raw.len() as u64;
        self.pending_bytes += size;
        if self.committed == self.pending.len() && self.majority.is_some_and(|m| entry.ts <= m) {
            self.committed += 1;
            self.committed_bytes += size;
        }
        self.pending.push_back((entry, now));
    }

    /// Records the replica set's majority commit point (it only moves forward).
    pub fn set_majority(&mut self, ts: OplogTs) {
        if self.majority.is_none_or(|m| ts > m) {
            self.majority = Some(ts);
            while let Some((e, _)) = self.pending.get(self.committed) {
                if e.ts > ts {
                    break;
                }
                self.committed += 1;
                self.committed_bytes += e.raw.len() as u64;
            }
        }
    }

    /// Records the newest entry the source holds (the member's last write). Once the reader has
    /// read up to it after cutting by size (a backlog), the rest is cut at once rather than
    /// after the seal interval: the backlog's tail becomes durable as soon as it is read.
    pub fn set_source_end(&mut self, ts: OplogTs) {
        if self.source_end.is_none_or(|m| ts > m) {
            self.source_end = Some(ts);
        }
    }

    /// Whether the reader is catching up a backlog (the last cut was by size).
    pub fn behind(&self) -> bool {
        self.behind
    }

    pub fn majority(&self) -> Option<OplogTs> {
        self.majority
    }

    /// Bytes of entries waiting (committed or not).
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The `last` of the most recent batch handed out.
    pub fn prev(&self) -> Option<OplogTs> {
        self.prev
    }

    /// Forgets entries not yet handed out (after losing the source: they will be read again).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
        self.committed = 0;
        self.committed_bytes = 0;
    }

    /// Marks a gap: the next batch starts a new run.
    pub fn break_chain(&mut self) {
        self.prev = None;
    }

    /// A batch, if the rules say cut now: the committed entries reached `max_bytes`, or the
    /// oldest committed entry has waited `seal_interval`, or the reader caught up a backlog (see
    /// [`Batcher::set_source_end`]), or `flush` (shutdown) asks for whatever is committed.
    pub fn next_batch(&mut self, now: Instant, flush: bool) -> Option<Batch> {
        let (n, bytes) = (self.committed, self.committed_bytes);
        if n == 0 {
            return None;
        }
        let oldest = self.pending.front().map(|(_, at)| *at)?;
        let by_size = bytes >= self.rules.max_bytes;
        let caught_up = self.behind
            && n == self.pending.len()
            && self
                .source_end
                .is_some_and(|end| self.pending.back().is_some_and(|(e, _)| e.ts >= end));
        let due = flush
            || by_size
            || caught_up
            || now.saturating_duration_since(oldest) >= self.rules.seal_interval;
        if !due {
            return None;
        }
        self.behind = by_size;
        // Take whole entries up to max_bytes (at least one, however large).
        let mut entries = Vec::new();
        let mut taken = 0u64;
        while entries.len() < n {
            let size = self
                .pending
                .front()
                .map(|(e, _)| e.raw.len() as u64)
                .unwrap_or(0);
            if !entries.is_empty() && taken + size > self.rules.max_bytes {
                break;
            }
            let Some((e, _)) = self.pending.pop_front() else {
                break;
            };
            taken += size;
            entries.push(e);
        }
        self.pending_bytes -= taken;
        self.committed -= entries.len();
        self.committed_bytes -= taken;
        let batch = Batch {
            prev: self.prev,
            entries,
        };
        self.prev = Some(batch.last());
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: u32, size: usize) -> OplogEntry {
        OplogEntry {
            ts: OplogTs::new(t, 1),
            raw: Bytes::from(vec![0; size]),
        }
    }

    fn rules() -> CutRules {
        CutRules {
            max_bytes: 100,
            seal_interval: Duration::from_secs(2),
        }
    }

    #[test]
    fn nothing_is_released_before_the_majority_reaches_it() {
        let t0 = Instant::now();
        let mut b = Batcher::new(rules(), None);
        b.push(e(1, 10), t0);
        b.push(e(2, 10), t0);
        assert_eq!(
            b.next_batch(t0 + Duration::from_secs(60), true),
            None,
            "no majority yet"
        );
        b.set_majority(OplogTs::new(1, 1));
        let batch = b.next_batch(t0, true).unwrap();
        assert_eq!(batch.entries, vec![e(1, 10)]);
        assert_eq!(batch.prev, None);
        assert_eq!(b.next_batch(t0, true), None, "entry 2 is not committed");
        b.set_majority(OplogTs::new(0, 0));
        assert_eq!(
            b.majority(),
            Some(OplogTs::new(1, 1)),
            "the majority never goes back"
        );
    }

    #[test]
    fn cuts_by_interval_and_by_size_and_chains_batches() {
        let t0 = Instant::now();
        let mut b = Batcher::new(rules(), Some(OplogTs::new(0, 5)));
        b.push(e(1, 10), t0);
        b.set_majority(OplogTs::new(9, 9));
        assert_eq!(
            b.next_batch(t0 + Duration::from_secs(1), false),
            None,
            "not due yet"
        );
        let first = b.next_batch(t0 + Duration::from_secs(2), false).unwrap();
        assert_eq!(first.prev, Some(OplogTs::new(0, 5)));
        for t in 2..=9 {
            b.push(e(t, 30), t0);
        }
        // 8 × 30 bytes committed: due by size at once; batches hold at most 100 bytes.
        let second = b.next_batch(t0, false).unwrap();
        assert_eq!(second.entries.len(), 3);
        assert_eq!(second.prev, Some(OplogTs::new(1, 1)));
        let third = b.next_batch(t0, false).unwrap();
        assert_eq!(third.prev, Some(second.last()));
        assert_eq!(b.pending_bytes(), 60);
    }

    #[test]
    fn an_entry_larger_than_the_limit_still_goes_alone() {
        let t0 = Instant::now();
        let mut b = Batcher::new(rules(), None);
        b.push(e(1, 500), t0);
        b.push(e(2, 1), t0);
        b.set_majority(OplogTs::new(2, 1));
        assert_eq!(b.next_batch(t0, false).unwrap().entries.len(), 1);
        assert_eq!(b.next_batch(t0, true).unwrap().entries.len(), 1);
    }

    #[test]
    fn discarding_keeps_the_chain_and_break_chain_starts_a_run() {
        let t0 = Instant::now();
        let mut b = Batcher::new(rules(), None);
        b.push(e(1, 1), t0);
        b.set_majority(OplogTs::new(1, 1));
        let first = b.next_batch(t0, true).unwrap();
        b.push(e(2, 1), t0);
        b.discard_pending();
        assert_eq!(b.pending_len(), 0);
        assert_eq!(b.prev(), Some(first.last()));
        b.break_chain();
        b.push(e(3, 1), t0);
        b.set_majority(OplogTs::new(3, 1));
        assert_eq!(b.next_batch(t0, true).unwrap().prev, None);
    }

    #[test]
    fn committed_counts_follow_pushes_and_the_majority() {
        let t0 = Instant::now();
        let mut b = Batcher::new(rules(), None);
        b.set_majority(OplogTs::new(2, 1));
        for t in 1..=4 {
            b.push(e(t, 10), t0);
        }
        assert_eq!((b.committed, b.committed_bytes), (2, 20));
        b.set_majority(OplogTs::new(3, 1));
        assert_eq!((b.committed, b.committed_bytes), (3, 30));
        assert_eq!(b.next_batch(t0, true).unwrap().entries.len(), 3);
        assert_eq!(
            (b.committed, b.committed_bytes, b.pending_bytes()),
            (0, 0, 10)
        );
        b.set_majority(OplogTs::new(9, 1));
        b.push(e(5, 10), t0);
        assert_eq!((b.committed, b.committed_bytes), (2, 20));
    }

    #[test]
    fn the_tail_of_a_backlog_is_cut_as_soon_as_it_is_read() {
        let t0 = Instant::now();
        let mut b = Batcher::new(rules(), None);
        b.set_majority(OplogTs::new(99, 1));
        b.set_source_end(OplogTs::new(6, 1));
        // Not behind: reaching the source's end alone does not cut (steady tailing).
        b.push(e(1, 10), t0);
        assert_eq!(b.next_batch(t0, false), None);
        for t in 2..=5 {
            b.push(e(t, 30), t0);
        }
        // 130 bytes: cut by size; the reader is now behind.
        assert_eq!(b.next_batch(t0, false).unwrap().entries.len(), 4);
        assert!(b.behind());
        assert_eq!(
            b.next_batch(t0, false),
            None,
            "30 bytes, not at the end yet"
        );
        b.push(e(6, 10), t0);
        let tail = b.next_batch(t0, false).expect("the backlog's end was read");
        assert_eq!(tail.entries.len(), 2);
        assert!(!b.behind());
        b.push(e(7, 10), t0);
        b.set_source_end(OplogTs::new(7, 1));
        assert_eq!(
            b.next_batch(t0, false),
            None,
            "caught up: back to the seal interval"
        );
    }

    #[test]
    fn caught_up_waits_for_the_majority() {
        let t0 = Instant::now();
        let mut b = Batcher::new(rules(), None);
        b.set_majority(OplogTs::new(5, 1));
        for t in 1..=5 {
            b.push(e(t, 30), t0);
        }
        assert!(b.next_batch(t0, false).is_some());
        b.set_source_end(OplogTs::new(6, 1));
        b.push(e(6, 10), t0);
        assert_eq!(b.next_batch(t0, false), None, "entry 6 is not committed");
        b.set_majority(OplogTs::new(6, 1));
        assert_eq!(b.next_batch(t0, false).unwrap().entries.len(), 3);
    }
}
