//! Retention decisions pinned by snapshot tests (insta): which snapshots keep-daily, -weekly,
//! -monthly and the point-in-time window keep, and which oplog segments may go. A change in any
//! decision shows up as a reviewed diff of these tables.

use chrono::{DateTime, TimeZone, Utc};
use mc_core::catalog::names::oplog_key;
use mc_core::catalog::retention::{plan, KeepRules, RetentionPlan};
use mc_core::catalog::{SegmentEntry, SnapshotManifest};
use mc_core::format::{OplogRange, OplogTs, StreamKind};

fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, 0, 0)
        .single()
        .expect("valid date")
}

fn ts(t: DateTime<Utc>) -> OplogTs {
    OplogTs::new(t.timestamp() as u32, 1)
}

/// A snapshot that started at `t` and ended 10 minutes later.
fn snapshot(t: DateTime<Utc>) -> SnapshotManifest {
    SnapshotManifest {
        id: t.format("%Y%m%dT%H%M%SZ-000000").to_string(),
        source: "rs0".into(),
        start: ts(t),
        end: ts(t + chrono::Duration::minutes(10)),
        started: t.to_rfc3339(),
        finished: (t + chrono::Duration::minutes(10)).to_rfc3339(),
        collections: Vec::new(),
        reason: "schedule".into(),
    }
}

/// Oplog segments of 6 hours each from `from` to `to`, chained.
fn oplog(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<SegmentEntry> {
    let mut out = Vec::new();
    let mut t = from;
    let mut prev = None;
    while t < to {
        let first = ts(t);
        let last = ts(t + chrono::Duration::hours(6) - chrono::Duration::seconds(1));
        let range = OplogRange {
            first,
            last,
            prev,
            count: 100,
        };
        out.push(SegmentEntry {
            key: oplog_key("rs0", first, last),
            kind: StreamKind::Oplog,
            size: 1000,
            sha256: None,
            range: serde_json::to_value(range).unwrap(),
            created: String::new(),
            fence: 0,
            key_id: String::new(),
        });
        prev = Some(last);
        t += chrono::Duration::hours(6);
    }
    out
}

/// The plan as a table a person can review.
fn render(p: &RetentionPlan, snapshots: &[SnapshotManifest]) -> String {
    let mut out = String::new();
    for s in snapshots {
        let line = match p.keep.iter().find(|k| k.id == s.id) {
            Some(k) => format!("keep    {}  ({})", s.id, k.reasons.join(", ")),
            None => format!("forget  {}", s.id),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let from = p.oplog_kept_from.map(|t| {
        DateTime::from_timestamp(i64::from(t.t), 0)
            .unwrap()
            .to_rfc3339()
    });
    out.push_str(&format!(
        "oplog kept from: {}\n",
        from.unwrap_or_else(|| "(everything)".into())
    ));
    out.push_str(&format!(
        "oplog segments deleted: {}\n",
        p.delete_segments.len()
    ));
    out
}

/// One snapshot a day at 02:00 for 100 days, ending 2026-11-25.
fn daily_history() -> (Vec<SnapshotManifest>, Vec<SegmentEntry>, DateTime<Utc>) {
    let last = at(2026, 11, 25, 2);
    let snaps: Vec<SnapshotManifest> = (0..100)
        .rev()
        .map(|d| snapshot(last - chrono::Duration::days(d)))
        .collect();
    let log = oplog(
        last - chrono::Duration::days(100),
        last + chrono::Duration::hours(12),
    );
    (snaps, log, last + chrono::Duration::hours(10))
}

#[test]
fn keep_7_daily_4_weekly_6_monthly() {
    let (snaps, log, now) = daily_history();
    let rules = KeepRules {
        daily: 7,
        weekly: 4,
        monthly: 6,
        pitr_window: None,
        ..KeepRules::default()
    };
    let p = plan(&snaps, &log, rules, now);
    insta::assert_snapshot!(render(&p, &snaps));
}

#[test]
fn keep_3_daily_with_a_7_day_pitr_window() {
    let (snaps, log, now) = daily_history();
    let rules = KeepRules {
        daily: 3,
        weekly: 0,
        monthly: 0,
        pitr_window: Some(std::time::Duration::from_secs(7 * 86400)),
        ..KeepRules::default()
    };
    let p = plan(&snaps[80..], &log, rules, now);
    insta::assert_snapshot!(render(&p, &snaps[80..]));
}

#[test]
fn several_snapshots_a_day_keep_the_newest_of_each_day() {
    let base = at(2026, 11, 20, 0);
    let snaps: Vec<SnapshotManifest> = (0..12)
        .map(|i| snapshot(base + chrono::Duration::hours(8 * i)))
        .collect();
    let log = oplog(base, base + chrono::Duration::days(5));
    let rules = KeepRules {
        daily: 2,
        weekly: 0,
        monthly: 0,
        pitr_window: None,
        ..KeepRules::default()
    };
    let p = plan(&snaps, &log, rules, at(2026, 11, 24, 12));
    insta::assert_snapshot!(render(&p, &snaps));
}

#[test]
fn no_snapshots_deletes_nothing_and_newest_is_always_kept() {
    let log = oplog(at(2026, 1, 1, 0), at(2026, 1, 3, 0));
    let p = plan(&[], &log, KeepRules::default(), at(2026, 1, 3, 0));
    assert!(p.is_empty(), "{p:?}");
    let snaps = vec![snapshot(at(2026, 1, 1, 0)), snapshot(at(2026, 1, 2, 0))];
    let p = plan(&snaps, &log, KeepRules::default(), at(2026, 1, 3, 0));
    assert_eq!(p.keep.len(), 1);
    assert_eq!(p.keep[0].id, snaps[1].id);
    assert_eq!(p.forget, vec![snaps[0].id.clone()]);
}

/// The safety property, over many histories: every kept snapshot's start is still covered by
/// an oplog segment that is kept, and so is everything after it.
#[test]
fn kept_snapshots_stay_fully_covered() {
    let (snaps, log, now) = daily_history();
    for daily in [0, 1, 3, 7] {
        for weekly in [0, 2, 5] {
            for monthly in [0, 1, 4] {
                for window in [None, Some(3), Some(30)] {
                    let rules = KeepRules {
                        daily,
                        weekly,
                        monthly,
                        pitr_window: window.map(|d| std::time::Duration::from_secs(d * 86400)),
                        ..KeepRules::default()
                    };
                    let p = plan(&snaps, &log, rules, now);
                    let kept_log: Vec<OplogRange> = log
                        .iter()
                        .filter(|s| !p.delete_segments.contains(&s.key))
                        .map(|s| s.oplog_range().unwrap())
                        .collect();
                    for k in &p.keep {
                        let s = snaps.iter().find(|s| s.id == k.id).unwrap();
                        assert!(
                            kept_log
                                .iter()
                                .any(|r| r.first <= s.start && s.start <= r.last),
                            "{rules:?}: kept snapshot {} lost the oplog at its start",
                            s.id
                        );
                        let later = log
                            .iter()
                            .filter(|l| l.oplog_range().unwrap().first > s.start);
                        for l in later {
                            assert!(
                                !p.delete_segments.contains(&l.key),
                                "{rules:?}: deleted {} needed by {}",
                                l.key,
                                s.id
                            );
                        }
                    }
                    if let Some(days) = window {
                        // Every point of the window has a kept snapshot ending at or before it.
                        let from = now - chrono::Duration::days(days as i64);
                        let anchor = p
                            .keep
                            .iter()
                            .filter_map(|k| snaps.iter().find(|s| s.id == k.id))
                            .any(|s| {
                                DateTime::from_timestamp(i64::from(s.end.t), 0).unwrap() <= from
                            });
                        assert!(anchor, "{rules:?}: no snapshot anchors the window");
                    }
                }
            }
        }
    }
}
