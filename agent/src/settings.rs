//! The policy in the agent's terms, built once: [`AgentSettings::from_policy`] turns a [`Policy`]
//! into what oplog capture, scheduled snapshots (with retention), Kafka capture and scheduled
//! drills run with. `mc-agent run` calls it; tests and benchmarks call it or the constructors it
//! is made of ([`CaptureSettings::new`], [`KafkaCaptureSettings::new`]), then override only what
//! they size for a test (a short seal interval, small segments), so a test runs what the binary
//! runs.
//!
//! Settings a policy does not expose are fixed here, once: upload concurrency and the spool
//! threshold of capture, its tick, Kafka's request timeout and segment span.

use std::path::PathBuf;
use std::time::Duration;

use mc_core::format::WriterInfo;
use mc_core::policy::{KafkaCluster, Policy, PolicyError};
use mc_restore::drill::{DrillOptions, DrillPolicyError};
use mc_restore::namespaces::NamespaceMap;

use crate::capture::batcher::CutRules;
use crate::capture::upload::UploadSettings;
use crate::capture::CaptureSettings;
use crate::drills::DrillPlan;
use crate::kafka::KafkaCaptureSettings;
use crate::snapshot::{SnapshotPlan, SnapshotSettings};

/// Everything `mc-agent run` derives from its policy.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Oplog capture (`capture:`, `repository.spool_dir`).
    pub capture: CaptureSettings,
    /// Scheduled snapshots (`snapshots:`) and the retention applied after each (`retention:`).
    pub snapshots: SnapshotPlan,
    /// Kafka consumer-group offset capture (`kafka:`); `None` when the policy has none.
    pub kafka: Option<KafkaCaptureSettings>,
    /// Scheduled drills (`drills:`); `None` when the policy has none.
    pub drills: Option<DrillPlan>,
}

/// Why a policy's settings cannot be built (a secret that does not resolve, mostly).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Drill(#[from] DrillPolicyError),
}

impl AgentSettings {
    /// The settings of `policy` for an agent named `holder` (its name in the lease and in
    /// segment headers). Resolves the secrets Kafka and drills need (the Kafka cluster once, for
    /// capture and the drills' reset plan both); capture and snapshots need none.
    pub fn from_policy(policy: &Policy, holder: &str) -> Result<Self, SettingsError> {
        let cluster = policy.kafka_cluster()?;
        Ok(Self {
            capture: CaptureSettings::from_policy(policy, holder),
            snapshots: SnapshotPlan::from_policy(policy, holder),
            kafka: match (&policy.kafka, &cluster) {
                (Some(k), Some(c)) => Some(KafkaCaptureSettings::new(
                    c.clone(),
                    k.interval,
                    policy.objectives.rpo,
                    policy.capture.zstd_level,
                    &policy.source.id,
                    holder,
                )),
                _ => None,
            },
            drills: DrillPlan::from_policy(policy, cluster)?,
        })
    }
}

fn writer(holder: &str) -> WriterInfo {
    WriterInfo {
        id: holder.to_owned(),
        fence: 0,
    }
}

impl CaptureSettings {
    /// Oplog capture as `mc-agent run` does it: the policy's `capture:` section and spool
    /// directory.
    pub fn from_policy(policy: &Policy, holder: &str) -> Self {
        Self::new(
            &policy.capture,
            &policy.source.id,
            holder,
            policy.spool_dir(),
        )
    }

    /// Oplog capture from a `capture:` section (`Default::default()` for the policy's defaults)
    /// of source `source`, by `holder`, spooling under `spool_dir`: 4 uploads at once, spooling
    /// to disk over 4 MiB waiting, the majority polled every 100 ms.
    pub fn new(
        capture: &mc_core::policy::CaptureSettings,
        source: &str,
        holder: &str,
        spool_dir: PathBuf,
    ) -> Self {
        Self {
            rules: CutRules {
                max_bytes: capture.max_segment_bytes,
                seal_interval: capture.seal_interval,
            },
            upload: UploadSettings {
                source: source.to_owned(),
                writer: writer(holder),
                zstd_level: capture.zstd_level,
                concurrency: 4,
                spool_over: 4 << 20,
                spool_dir,
            },
            tick: Duration::from_millis(100),
        }
    }
}

impl SnapshotSettings {
    /// A snapshot of every database as the policy says (`snapshots:`, segment size and
    /// compression of `capture:`), by `holder`, for `reason` (`schedule`, `on-demand`, `gap`).
    pub fn from_policy(policy: &Policy, holder: &str, reason: &str) -> Self {
        Self {
            source: policy.source.id.clone(),
            parallelism: policy.snapshots.parallelism as usize,
            max_segment_bytes: policy.capture.max_segment_bytes,
            zstd_level: policy.capture.zstd_level,
            writer: writer(holder),
            reason: reason.to_owned(),
            databases: None,
            users_and_roles: policy.snapshots.include_users_and_roles,
        }
    }
}

impl SnapshotPlan {
    /// Snapshots on the policy's schedule, each followed by its retention.
    pub fn from_policy(policy: &Policy, holder: &str) -> Self {
        Self {
            settings: SnapshotSettings::from_policy(policy, holder, "schedule"),
            schedule: Some(policy.snapshots.schedule.clone()),
            retention: Some(policy.keep_rules()),
        }
    }
}

impl KafkaCaptureSettings {
    /// Kafka capture of `cluster` (the policy's: [`Policy::kafka_cluster`]) every `interval`
    /// (`kafka.interval`) for source `source`, by `holder`: segments spanning
    /// [`KafkaCaptureSettings::default_span`] of `interval` and `rpo`, 10 s per request.
    pub fn new(
        cluster: KafkaCluster,
        interval: Duration,
        rpo: Duration,
        zstd_level: i32,
        source: &str,
        holder: &str,
    ) -> Self {
        Self {
            bootstrap: cluster.bootstrap,
            groups: cluster.groups,
            interval,
            segment_span: Self::default_span(interval, rpo),
            request_timeout: Duration::from_secs(10),
            security: cluster.security,
            source: source.to_owned(),
            writer: writer(holder),
            zstd_level,
        }
    }
}

impl DrillPlan {
    /// The policy's scheduled drills (`drills:`): the drill [`DrillOptions::from_policy`] builds,
    /// the same as `mc-restore drill --policy`, into `drills.scratch_uri`, verified against the
    /// policy's source, Kafka's reset planned (not applied) on `kafka` (the policy's cluster).
    /// `None` when the policy has no `drills:` section.
    pub fn from_policy(
        policy: &Policy,
        kafka: Option<KafkaCluster>,
    ) -> Result<Option<Self>, SettingsError> {
        let (Some(d), Some(scratch)) = (&policy.drills, policy.drill_scratch_uri()?) else {
            return Ok(None);
        };
        Ok(Some(DrillPlan {
            schedule: d.schedule.clone(),
            options: DrillOptions::from_policy(
                policy,
                scratch.expose().to_owned(),
                Some(policy.mongodb_uri()?.expose().to_owned()),
                NamespaceMap::default(),
                kafka,
            )?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "\
version: 1
name: shop
source:
  id: rs0
  mongodb:
    uri: { env: MC_SETTINGS_TEST_UNSET_URI }
repository:
  url: /var/lib/mc-backup/repo
  keyring: { file: /etc/mc-backup/keyring }
  spool_dir: /var/spool/mc
objectives:
  rpo: 90s
  rto: 1h
capture:
  seal_interval: 3s
  max_segment_bytes: 8MiB
  zstd_level: 5
snapshots:
  schedule: \"0 0 2 * * *\"
  parallelism: 6
  include_users_and_roles: true
retention:
  keep_daily: 7
  keep_weekly: 2
  pitr_window: 3d
";

    fn policy(extra: &str) -> Policy {
        Policy::from_yaml(&format!("{POLICY}{extra}"), "inline.yaml").unwrap()
    }

    #[test]
    fn capture_and_snapshots_come_from_the_policy() {
        let s = AgentSettings::from_policy(&policy(""), "agent-1").unwrap();
        assert_eq!(s.capture.rules.seal_interval, Duration::from_secs(3));
        assert_eq!(s.capture.rules.max_bytes, 8 << 20);
        assert_eq!(s.capture.upload.zstd_level, 5);
        assert_eq!(s.capture.upload.source, "rs0");
        assert_eq!(s.capture.upload.writer.id, "agent-1");
        assert_eq!(s.capture.upload.writer.fence, 0);
        assert_eq!(s.capture.upload.spool_dir, PathBuf::from("/var/spool/mc"));
        assert_eq!(
            (s.capture.upload.concurrency, s.capture.upload.spool_over),
            (4, 4 << 20)
        );
        assert_eq!(s.capture.tick, Duration::from_millis(100));

        let snap = &s.snapshots.settings;
        assert_eq!(
            (snap.parallelism, snap.max_segment_bytes, snap.zstd_level),
            (6, 8 << 20, 5)
        );
        assert_eq!(
            (snap.source.as_str(), snap.reason.as_str()),
            ("rs0", "schedule")
        );
        assert_eq!(snap.writer.id, "agent-1");
        assert!(snap.users_and_roles && snap.databases.is_none());
        assert_eq!(
            s.snapshots.schedule.as_ref().map(|c| c.expression()),
            Some("0 0 2 * * *")
        );
        let keep = s.snapshots.retention.unwrap();
        assert_eq!((keep.daily, keep.weekly, keep.monthly), (7, 2, 0));
        assert_eq!(keep.pitr_window, Some(Duration::from_secs(3 * 86400)));
        // No `kafka:` or `drills:`: nothing resolved, nothing planned.
        assert!(s.kafka.is_none() && s.drills.is_none());
    }

    #[test]
    fn the_policy_defaults_are_the_constructors_defaults() {
        let p = Policy::from_yaml(
            "version: 1\nname: n\nsource:\n  id: rs0\n  mongodb:\n    uri: { env: X }\n\
repository:\n  url: /r\n  keyring: { file: /k }\nobjectives:\n  rpo: 15m\n  rto: 4h\n\
snapshots:\n  schedule: \"0 0 2 * * *\"\nretention:\n  keep_daily: 1\n",
            "defaults.yaml",
        )
        .unwrap();
        let from_policy = CaptureSettings::from_policy(&p, "h");
        let by_hand = CaptureSettings::new(&Default::default(), "rs0", "h", p.spool_dir());
        assert_eq!(format!("{from_policy:?}"), format!("{by_hand:?}"));
    }

    #[test]
    fn kafka_capture_and_the_drill_plan_share_the_policy_cluster() {
        std::env::set_var("MC_SETTINGS_TEST_SOURCE", "mongodb://source:27017");
        std::env::set_var("MC_SETTINGS_TEST_SCRATCH", "mongodb://scratch:27017");
        let p = Policy::from_yaml(
            &format!(
                "{}\nkafka:\n  bootstrap_servers: [\"k0:9092\", \"k1:9092\"]\n  groups: [\"orders-*\"]\n  interval: 10s\n\
drills:\n  schedule: \"0 0 3 * * *\"\n  scratch_uri: {{ env: MC_SETTINGS_TEST_SCRATCH }}\n  restore_users_and_roles: true\n",
                POLICY.replace("MC_SETTINGS_TEST_UNSET_URI", "MC_SETTINGS_TEST_SOURCE")
            ),
            "kafka.yaml",
        )
        .unwrap();
        let s = AgentSettings::from_policy(&p, "agent-2").unwrap();

        let k = s.kafka.expect("kafka capture");
        assert_eq!(k.bootstrap, "k0:9092,k1:9092");
        assert_eq!(k.groups, ["orders-*"]);
        assert_eq!(k.interval, Duration::from_secs(10));
        // A minute, but at most half the 90 s RPO.
        assert_eq!(k.segment_span, Duration::from_secs(45));
        assert_eq!(k.request_timeout, Duration::from_secs(10));
        assert_eq!(
            (k.source.as_str(), k.writer.id.as_str()),
            ("rs0", "agent-2")
        );
        assert_eq!(k.zstd_level, 5);

        let d = s.drills.expect("drills");
        assert_eq!(d.schedule.expression(), "0 0 3 * * *");
        let o = &d.options;
        assert_eq!((o.system.as_str(), o.source_id.as_str()), ("shop", "rs0"));
        assert_eq!(o.scratch_uri, "mongodb://scratch:27017");
        assert_eq!(o.source_uri.as_deref(), Some("mongodb://source:27017"));
        assert_eq!((o.rto_seconds, o.rpo_seconds), (3600.0, 90.0));
        assert!(o.map.users_and_roles());
        assert_eq!(
            o.command,
            "mc-restore drill --policy kafka.yaml --scratch <drills.scratch_uri>"
        );
        let plan = o.kafka.as_ref().expect("the drill plans Kafka's reset");
        assert_eq!(plan.bootstrap, k.bootstrap);
        assert_eq!(plan.groups, k.groups);
        assert!(plan.dry_run);
    }

    #[test]
    fn an_unresolved_secret_names_its_field() {
        let p = policy(
            "drills:\n  schedule: \"0 0 3 * * *\"\n  scratch_uri: { env: MC_SETTINGS_TEST_UNSET_SCRATCH }\n",
        );
        let err = AgentSettings::from_policy(&p, "h").unwrap_err().to_string();
        assert!(err.contains("drills.scratch_uri"), "{err}");
    }
}
