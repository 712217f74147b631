//! The agent's metrics, one part per concern, each holding its own counters and gauges
//! (prometheus-client types) and registering them: capture ([`capture`]), the lease
//! ([`lease`]), base snapshots ([`snapshots`]), retention ([`retention`]), scheduled drills
//! ([`drills`]), Kafka offset capture ([`kafka`]) and the repository's store ([`store`]).
//! [`Metrics::registry`] gathers them, labelled with the source id, for `/metrics` (encoded by
//! prometheus-client in the Prometheus text format, [`encode`]); [`Metrics::status`] reads the
//! same values for `/status`.
//!
//! The names, types and labels users see are pinned by `exposed.txt` beside this file (a test
//! compares a scrape with it).

pub mod capture;
mod computed;
pub mod drills;
pub mod kafka;
pub mod lease;
pub mod retention;
pub mod snapshots;
pub mod store;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use mc_core::storage::health::HealthSnapshot;
use mc_core::storage::StoreHealth;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use serde::Serialize;

use self::capture::unpack;
pub use self::capture::CaptureMetrics;
pub use self::drills::DrillMetrics;
pub use self::kafka::{KafkaMetrics, KafkaStatus};
pub use self::lease::LeaseMetrics;
pub use self::retention::RetentionMetrics;
pub use self::snapshots::SnapshotMetrics;

/// Everything the agent reports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Oplog capture.
    pub capture: Arc<CaptureMetrics>,
    /// The capture lease.
    pub lease: LeaseMetrics,
    /// Base snapshots.
    pub snapshots: SnapshotMetrics,
    /// Retention as the snapshot schedule runs it.
    pub retention: RetentionMetrics,
    /// Scheduled recovery drills.
    pub drills: DrillMetrics,
    /// Kafka consumer-group offset capture.
    pub kafka: Arc<KafkaMetrics>,
    /// The repository's store as its logging layer sees it (`mc_repository_up`,
    /// `mc_store_errors_total`, `/status`'s `store`).
    pub store: Arc<StoreHealth>,
    /// Why the agent is not ready yet (`/readyz`), while it waits for something.
    pub waiting_for: Mutex<Option<String>>,
}

/// The `Content-Type` of [`encode`]'s output (the Prometheus text format, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The Prometheus text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail, and no metric of ours returns an error.
    let _ = prometheus_text::encode(&mut out, registry);
    out
}

// Unix ms as RFC 3339 with ms; 0 (never) as `None`.
use mc_core::time::format_ms_if_set as rfc3339_ms;

/// A point-in-time copy for `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    pub capturing: bool,
    pub ops_captured: u64,
    pub segments_uploaded: u64,
    pub bytes_uploaded: u64,
    pub upload_errors: u64,
    pub source_errors: u64,
    pub gaps: u64,
    pub lease_held: bool,
    pub lease_fence: u64,
    pub newest_durable_ts: Option<String>,
    pub newest_durable_wall: Option<String>,
    /// Seconds between now and the newest durable entry's wall time.
    pub rpo_seconds: Option<f64>,
    /// Kafka offset capture; `None` when the policy has no `kafka:` section.
    pub kafka: Option<KafkaStatus>,
    /// Bytes of oplog handed to the upload and not yet stored.
    pub upload_waiting_bytes: u64,
}

impl Metrics {
    /// Every part's metrics in one registry, each series labelled `source="<source>"`.
    pub fn registry(&self, source: &str) -> Registry {
        let mut registry =
            Registry::with_labels(std::iter::once(("source".into(), source.to_owned().into())));
        self.capture.register(&mut registry);
        self.lease.register(&mut registry);
        self.snapshots.register(&mut registry);
        self.drills.register(&mut registry);
        self.retention.register(&mut registry);
        store::register(&self.store, &mut registry);
        self.kafka.register(&mut registry);
        registry
    }

    /// Says why the agent is not ready (`None`: nothing awaited).
    pub fn set_waiting_for(&self, what: Option<String>) {
        if let Ok(mut w) = self.waiting_for.lock() {
            *w = what;
        }
    }

    /// The store's health for `/status`.
    pub fn store_status(&self) -> HealthSnapshot {
        self.store.snapshot()
    }

    pub fn status(&self) -> StatusSnapshot {
        let c = &self.capture;
        let durable = c.durable_ts.load(Relaxed);
        StatusSnapshot {
            capturing: c.is_capturing(),
            ops_captured: c.ops_captured.get(),
            segments_uploaded: c.segments_uploaded.get(),
            bytes_uploaded: c.bytes_uploaded.get(),
            upload_errors: c.upload_errors.get(),
            source_errors: c.source_errors.get(),
            gaps: c.gaps.get(),
            lease_held: self.lease.is_held(),
            lease_fence: self.lease.fence.get(),
            newest_durable_ts: (durable > 0).then(|| unpack(durable).to_string()),
            newest_durable_wall: rfc3339_ms(c.durable_wall_ms.load(Relaxed)),
            rpo_seconds: c.rpo_seconds(),
            kafka: self.kafka.is_enabled().then(|| self.kafka.status()),
            upload_waiting_bytes: c.backlog().waiting_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc_core::format::OplogTs;

    fn render(m: &Metrics) -> String {
        encode(&m.registry("rs0"))
    }

    /// `name type label,label` for every series family in `text`, in order: each `# TYPE` line
    /// with the labels of its first sample (or `source` alone when it has none).
    fn exposed(text: &str) -> Vec<String> {
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                i > 0 && lines[i - 1].starts_with(&format!("# HELP {name} ")),
                "{name} has no # HELP line just before its # TYPE"
            );
            let labels = lines[i + 1..]
                .iter()
                .take_while(|l| !l.starts_with('#'))
                .find_map(|l| l.strip_prefix(&format!("{name}{{")))
                .map(|l| {
                    let set = &l[..l.find('}').expect("closing brace")];
                    set.split("\",")
                        .map(|kv| kv.split('=').next().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_else(|| "source".into());
            out.push(format!("{name} {kind} {labels}"));
        }
        out
    }

    /// Every metric the agent can expose, with its type and labels, is the checked-in list
    /// (`exposed.txt`): renaming, retyping or relabelling one breaks dashboards and alert rules
    /// (deploy/), so it must show up here first.
    #[test]
    fn exposed_metrics_are_the_pinned_list() {
        let m = Metrics::default();
        m.kafka.enable();
        m.kafka.record_cycle(
            [("orders".to_owned(), 7)].into(),
            1_700_000_000_000,
            std::time::Duration::from_millis(3),
        );
        m.store.record_failure(
            "put",
            mc_core::storage::ErrorKind::Timeout,
            "slow".into(),
            std::time::Duration::from_secs(60),
        );
        let text = render(&m);
        let pinned: Vec<String> = include_str!("exposed.txt")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(str::to_owned)
            .collect();
        assert_eq!(exposed(&text), pinned, "{text}");
        // Every sample carries the source label first; no OpenMetrics-only lines.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.contains("{source=\"rs0\""), "{line}");
        }
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(text.contains("mc_kafka_group_lag{source=\"rs0\",group=\"orders\"} 7\n"));
        assert!(
            text.contains("mc_store_errors_total{source=\"rs0\",op=\"put\",kind=\"timeout\"} 1\n")
        );
    }

    /// Families without series yet (no Kafka group, no store error) still say what they are;
    /// Kafka's metrics appear only once Kafka capture runs.
    #[test]
    fn kafka_metrics_only_once_enabled_and_empty_families_keep_their_type() {
        let m = Metrics::default();
        let text = render(&m);
        assert!(!text.contains("mc_kafka_"), "{text}");
        assert!(
            text.contains("# TYPE mc_store_errors_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("mc_store_errors_total{"), "{text}");
        m.kafka.enable();
        let text = render(&m);
        assert!(text.contains("# TYPE mc_kafka_group_lag gauge\n"), "{text}");
        assert!(
            text.contains("mc_kafka_cycle_seconds{source=\"rs0\"} -1"),
            "{text}"
        );
        assert!(
            text.contains("mc_kafka_rpo_seconds{source=\"rs0\"} -1"),
            "{text}"
        );
    }

    #[test]
    fn renders_prometheus_text_with_source_label() {
        let m = Metrics::default();
        m.capture.ops_captured.inc_by(42);
        m.capture.set_durable(
            OplogTs::new(1_700_000_000, 3),
            chrono::Utc::now().timestamp_millis() - 2000,
        );
        let text = render(&m);
        assert!(
            text.contains("mc_oplog_ops_captured_total{source=\"rs0\"} 42\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE mc_rpo_seconds gauge"));
        assert!(text.contains(
            "# HELP mc_oplog_ops_captured_total Oplog entries made durable in the repository.\n"
        ));
        assert!(
            text.contains("mc_newest_durable_op_timestamp_seconds{source=\"rs0\"} 1700000000\n")
        );
        let rpo = m.capture.rpo_seconds().unwrap();
        assert!((1.5..10.0).contains(&rpo), "{rpo}");
        assert_eq!(
            m.status().newest_durable_ts.as_deref(),
            Some("1700000000.0000000003")
        );
        // A label value is escaped as the text format requires.
        let text = encode(&m.registry("a\"b\\c"));
        assert!(
            text.contains("mc_capturing{source=\"a\\\"b\\\\c\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn incomplete_snapshots_are_unknown_until_a_retention_run_and_after_the_lease_goes() {
        use mc_core::catalog::retention::{IncompleteSnapshot, Pruned, RetentionPlan};
        let m = Metrics::default();
        let line = |m: &Metrics, name: &str| {
            render(m)
                .lines()
                .find(|l| l.starts_with(&format!("{name}{{")))
                .map(str::to_owned)
        };
        assert_eq!(
            line(&m, "mc_incomplete_snapshots").as_deref(),
            Some("mc_incomplete_snapshots{source=\"rs0\"} -1")
        );
        let incomplete = |id: &str| IncompleteSnapshot {
            id: id.into(),
            objects: vec![format!("sources/rs0/snapshots/{id}/data/a.seg")],
            bytes: 10,
            last_written: None,
        };
        let plan = RetentionPlan {
            incomplete: vec![incomplete("a"), incomplete("b")],
            incomplete_kept: vec![incomplete("c")],
            ..RetentionPlan::default()
        };
        let done = Pruned {
            incomplete_deleted: 2,
            ..Pruned::default()
        };
        m.retention.record(&plan, Some(&done));
        m.retention.record(&RetentionPlan::default(), None);
        assert_eq!(
            line(&m, "mc_incomplete_snapshots").as_deref(),
            Some("mc_incomplete_snapshots{source=\"rs0\"} 0")
        );
        m.retention.record(&plan, Some(&done));
        assert_eq!(
            line(&m, "mc_incomplete_snapshots").as_deref(),
            Some("mc_incomplete_snapshots{source=\"rs0\"} 1")
        );
        assert_eq!(
            line(&m, "mc_incomplete_snapshots_deleted_total").as_deref(),
            Some("mc_incomplete_snapshots_deleted_total{source=\"rs0\"} 4")
        );
        m.retention.forget_incomplete();
        assert_eq!(
            line(&m, "mc_incomplete_snapshots").as_deref(),
            Some("mc_incomplete_snapshots{source=\"rs0\"} -1")
        );
    }
}
