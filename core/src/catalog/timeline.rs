//! The `Timeline` of a source: its oplog segments chained into continuous runs, and the gaps
//! between them (`docs/format.md` §5).
//!
//! Continuity is proven, not inferred: a segment extends a run only when its `prev` names the
//! `last` of a segment already in that run. Two segments that merely look adjacent in time but
//! are not chained leave a gap, because the oplog entries between them may have been lost.

use serde::Serialize;

use super::index::SegmentEntry;
use crate::format::OplogTs;

/// A continuous stretch of oplog: every entry with `start <= ts <= end` is in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub start: OplogTs,
    pub end: OplogTs,
    /// Keys of the segments in chain order.
    pub segments: Vec<String>,
    /// Oplog entries in the run's segments (entries of racing copies that overlap count twice).
    pub ops: u64,
}

/// Where the chain breaks: entries after `after` and before `before` may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub after: OplogTs,
    pub before: OplogTs,
}

/// The runs and gaps of one source's oplog, in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timeline {
    pub runs: Vec<Run>,
    pub gaps: Vec<Gap>,
    /// Segments wholly inside a run already (a second writer's copy); harmless, listed for audit.
    pub redundant: Vec<String>,
    /// Oplog entries in the catalog whose range could not be read.
    pub unreadable: Vec<String>,
}

impl Timeline {
    /// Builds the timeline from a stream's catalog entries (any order).
    pub fn build(entries: &[SegmentEntry]) -> Self {
        let mut tl = Timeline::default();
        let mut segs: Vec<(&SegmentEntry, crate::format::OplogRange)> = Vec::new();
        for e in entries {
            match e.oplog_range() {
                Some(r) if r.first <= r.last => segs.push((e, r)),
                _ => tl.unreadable.push(e.key.clone()),
            }
        }
        // Longest first among segments starting together, so a shorter racing copy is the redundant one.
        segs.sort_by(|a, b| a.1.first.cmp(&b.1.first).then(b.1.last.cmp(&a.1.last)));

        // Ends of segments in the current run: a chained segment's `prev` must be one of them.
        let mut ends: Vec<OplogTs> = Vec::new();
        for (entry, range) in segs {
            // Chained: it continues from an end in the run. Or it starts inside the run: the run
            // holds every entry up to its end and the segment every entry from its first on, so
            // nothing is missing between them (another writer's copy whose predecessor never
            // landed, e.g. an agent's uploads still in flight when it died, stored after the
            // next agent resumed).
            let chained = match (tl.runs.last(), range.prev) {
                (Some(run), _) if run.start <= range.first && range.first <= run.end => true,
                (Some(_), Some(prev)) => ends.contains(&prev),
                _ => false,
            };
            if chained {
                let run = tl.runs.last_mut().expect("chained implies a run");
                if range.last <= run.end {
                    // Its end is still a point a later segment may continue from.
                    tl.redundant.push(entry.key.clone());
                    ends.push(range.last);
                    continue;
                }
                run.end = range.last;
                run.segments.push(entry.key.clone());
                run.ops += range.count;
                ends.push(range.last);
            } else {
                if let Some(prev_run) = tl.runs.last() {
                    if range.last <= prev_run.end && range.first >= prev_run.start {
                        tl.redundant.push(entry.key.clone());
                        continue;
                    }
                    tl.gaps.push(Gap {
                        after: prev_run.end,
                        before: range.first,
                    });
                }
                tl.runs.push(Run {
                    start: range.first,
                    end: range.last,
                    segments: vec![entry.key.clone()],
                    ops: range.count,
                });
                ends.clear();
                ends.push(range.last);
            }
        }
        tl
    }

    /// The run containing `ts`, if any.
    pub fn run_containing(&self, ts: OplogTs) -> Option<&Run> {
        self.runs.iter().find(|r| r.start <= ts && ts <= r.end)
    }

    /// The newest point the repository holds.
    pub fn newest(&self) -> Option<OplogTs> {
        self.runs.last().map(|r| r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::names::oplog_key;
    use crate::format::{OplogRange, StreamKind};

    fn seg(
        first: (u32, u32),
        last: (u32, u32),
        prev: Option<(u32, u32)>,
        count: u64,
    ) -> SegmentEntry {
        let first = OplogTs::new(first.0, first.1);
        let last = OplogTs::new(last.0, last.1);
        let range = OplogRange {
            first,
            last,
            prev: prev.map(|p| OplogTs::new(p.0, p.1)),
            count,
        };
        SegmentEntry {
            key: oplog_key("rs0", first, last),
            kind: StreamKind::Oplog,
            size: 1,
            sha256: None,
            range: serde_json::to_value(range).unwrap(),
            created: String::new(),
            fence: 0,
            key_id: String::new(),
        }
    }

    #[test]
    fn chained_segments_make_one_run() {
        let tl = Timeline::build(&[
            seg((10, 1), (20, 0), None, 5),
            seg((21, 0), (30, 2), Some((20, 0)), 7),
            seg((31, 0), (40, 0), Some((30, 2)), 1),
        ]);
        assert_eq!(tl.runs.len(), 1);
        assert_eq!(tl.runs[0].start, OplogTs::new(10, 1));
        assert_eq!(tl.runs[0].end, OplogTs::new(40, 0));
        assert_eq!(tl.runs[0].ops, 13);
        assert!(tl.gaps.is_empty());
        assert_eq!(tl.newest(), Some(OplogTs::new(40, 0)));
        assert!(
            tl.run_containing(OplogTs::new(20, 5)).is_some(),
            "between segments is covered"
        );
        assert!(tl.run_containing(OplogTs::new(40, 1)).is_none());
    }

    #[test]
    fn unchained_neighbours_leave_a_gap_even_when_adjacent() {
        // The second segment claims to start a new run (prev null): the agent recorded a gap.
        let tl = Timeline::build(&[
            seg((10, 1), (20, 0), None, 5),
            seg((21, 0), (30, 0), None, 1),
        ]);
        assert_eq!(tl.runs.len(), 2);
        assert_eq!(
            tl.gaps,
            vec![Gap {
                after: OplogTs::new(20, 0),
                before: OplogTs::new(21, 0)
            }]
        );
        // A missing middle segment: the third one's prev names an end nobody has.
        let tl = Timeline::build(&[
            seg((10, 1), (20, 0), None, 5),
            seg((31, 0), (40, 0), Some((30, 0)), 1),
        ]);
        assert_eq!(tl.runs.len(), 2);
        assert_eq!(
            tl.gaps[0],
            Gap {
                after: OplogTs::new(20, 0),
                before: OplogTs::new(31, 0)
            }
        );
    }

    #[test]
    fn racing_writers_overlap_without_breaking_the_run() {
        // Writer A sealed at 30, writer B (deposed, late) continued from 20 and sealed at 25.
        let tl = Timeline::build(&[
            seg((10, 0), (20, 0), None, 1),
            seg((21, 0), (30, 0), Some((20, 0)), 1),
            seg((21, 0), (25, 0), Some((20, 0)), 1),
            seg((31, 0), (35, 0), Some((30, 0)), 1),
        ]);
        assert_eq!(tl.runs.len(), 1, "{tl:?}");
        assert_eq!(tl.runs[0].end, OplogTs::new(35, 0));
        assert_eq!(tl.redundant.len(), 1);
        // And a chain continuing from the shorter copy still joins the run.
        let tl = Timeline::build(&[
            seg((10, 0), (20, 0), None, 1),
            seg((21, 0), (25, 0), Some((20, 0)), 1),
            seg((21, 0), (30, 0), Some((20, 0)), 1),
            seg((26, 0), (40, 0), Some((25, 0)), 1),
        ]);
        assert_eq!(tl.runs.len(), 1, "{tl:?}");
        assert_eq!(tl.runs[0].end, OplogTs::new(40, 0));
    }

    #[test]
    fn a_copy_whose_predecessor_is_missing_stays_inside_the_run() {
        // A writer resumed after (20, 0); a dead writer's late segment starts at (26, 0), its
        // predecessor (21..25) never stored: it is inside the run, not a second run.
        let tl = Timeline::build(&[
            seg((10, 0), (20, 0), None, 1),
            seg((21, 0), (30, 0), Some((20, 0)), 1),
            seg((26, 0), (28, 0), Some((25, 0)), 1),
            seg((31, 0), (40, 0), Some((30, 0)), 1),
        ]);
        assert_eq!(tl.runs.len(), 1, "{tl:?}");
        assert!(tl.gaps.is_empty(), "{tl:?}");
        assert_eq!(tl.runs[0].end, OplogTs::new(40, 0));
        assert_eq!(tl.redundant.len(), 1);
        // Its end reached past the run's end so far: it extends the run, and the live writer's
        // next segment still chains.
        let tl = Timeline::build(&[
            seg((10, 0), (20, 0), None, 1),
            seg((21, 0), (30, 0), Some((20, 0)), 1),
            seg((26, 0), (33, 0), Some((25, 0)), 1),
            seg((31, 0), (40, 0), Some((30, 0)), 1),
        ]);
        assert_eq!(tl.runs.len(), 1, "{tl:?}");
        assert_eq!(tl.runs[0].end, OplogTs::new(40, 0));
        // Starting after the run's end without a chain is still a gap.
        let tl = Timeline::build(&[
            seg((10, 0), (20, 0), None, 1),
            seg((22, 0), (30, 0), Some((21, 0)), 1),
        ]);
        assert_eq!(tl.runs.len(), 2, "{tl:?}");
    }

    #[test]
    fn unreadable_ranges_are_reported_not_ignored() {
        let mut bad = seg((1, 0), (2, 0), None, 1);
        bad.range = serde_json::json!({"nonsense": true});
        let tl = Timeline::build(&[bad]);
        assert!(tl.runs.is_empty());
        assert_eq!(tl.unreadable.len(), 1);
    }
}
