//! The policy schema: one struct per YAML section, every field documented, unknown keys refused.
//! Values that can be checked on their own (durations, sizes, ids, URLs, cron expressions) are
//! checked while parsing, so their errors point at the value's line and column; rules between
//! fields live in `load.rs`.
//!
//! `docs/policies.md` describes the same schema for operators; keep the two in step.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::duration::{parse_duration, parse_size, DURATION_FORMS, SIZE_FORMS};
use super::error::invalid;
use super::locations::FieldLocations;
use super::secret::{secret_from_map, SecretRef};
use crate::crypto::KeyringSource;
use crate::storage::RepoUrl;

/// The only policy format version this build reads.
pub const POLICY_VERSION: u32 = 1;

/// A backup policy: everything `mc-agent` needs to protect one system. Load it with
/// [`Policy::load`](super::Policy::load).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version of the policy file; must be `1`.
    #[serde(deserialize_with = "de_version")]
    pub version: u32,
    /// Name of the protected system (`[a-z0-9-]+`, at most 63 characters), used in logs,
    /// metrics labels and drill reports.
    #[serde(deserialize_with = "de_name")]
    pub name: String,
    /// The MongoDB replica set to protect.
    pub source: SourceSettings,
    /// Where backups are written and how they are encrypted.
    pub repository: RepositorySettings,
    /// The recovery objectives the rest of the policy must meet.
    pub objectives: Objectives,
    /// Oplog capture: how often and how large segments are sealed. Optional; defaults apply.
    #[serde(default)]
    pub capture: CaptureSettings,
    /// Base snapshots: when they are taken and how.
    pub snapshots: SnapshotSettings,
    /// How long backups are kept.
    pub retention: RetentionSettings,
    /// Leader election through a Redis lease. Absent: a single agent, no lease.
    #[serde(default)]
    pub lease: Option<LeaseSettings>,
    /// The metrics and health endpoint. Optional; defaults apply.
    #[serde(default)]
    pub http: HttpSettings,
    /// Kafka consumer-group offset capture. Absent: Kafka is not captured.
    #[serde(default)]
    pub kafka: Option<KafkaSettings>,
    /// Scheduled recovery drills. Absent: drills run only by hand.
    #[serde(default)]
    pub drills: Option<DrillSettings>,

    /// The file the policy was read from, as named (for messages).
    #[serde(skip)]
    pub(super) file: PathBuf,
    /// Line and column of every key in the file, for errors found after parsing.
    #[serde(skip)]
    pub(super) locations: FieldLocations,
}

/// `source:` — the system being protected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Source id used in repository object names (`sources/<id>/…`):
    /// `[a-z0-9][a-z0-9_-]{0,62}`. Changing it starts a new, separate history.
    #[serde(deserialize_with = "de_source_id")]
    pub id: String,
    /// How to reach MongoDB.
    pub mongodb: MongoSettings,
}

/// `source.mongodb:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    /// The connection string (`mongodb://…` or `mongodb+srv://…`), by reference only: it usually
    /// carries a password, so an inline string is refused.
    pub uri: SecretRef,
}

/// `repository:` — where segments go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySettings {
    /// The repository location: a plain path, `file:///…` or `s3://bucket/prefix?…` (see
    /// [`RepoUrl`]), written inline or read from `{ env: VAR }` / `{ file: PATH }`.
    pub url: RepoUrlSource,
    /// Where the keyring (key-encryption keys) is: `{ file: PATH }` or `{ env: VAR }`. Keys are
    /// never written in the policy.
    #[serde(deserialize_with = "de_keyring")]
    pub keyring: KeyringSource,
    /// Directory for segments being sealed before upload. Default: `mc-backup/<name>/spool`
    /// under the system temporary directory (see [`super::Policy::spool_dir`]).
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
}

/// `objectives:` — the recovery point and time objectives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    /// Recovery point objective: the most data (as time) a restore may lose. Must exceed
    /// `capture.seal_interval`.
    #[serde(deserialize_with = "de_positive_duration")]
    pub rpo: Duration,
    /// Recovery time objective: how long a restore may take; drills are judged against it.
    #[serde(deserialize_with = "de_positive_duration")]
    pub rto: Duration,
}

/// `capture:` — sealing oplog segments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSettings {
    /// Longest time captured entries wait before being sealed into a segment. Must be above zero
    /// and below `objectives.rpo`. Default `2s`.
    #[serde(
        default = "default_seal_interval",
        deserialize_with = "de_positive_duration"
    )]
    pub seal_interval: Duration,
    /// Segment size (uncompressed records) at which a segment is sealed early. 64KiB to 1GiB.
    /// Default `16MiB`.
    #[serde(
        default = "default_max_segment_bytes",
        deserialize_with = "de_segment_bytes"
    )]
    pub max_segment_bytes: u64,
    /// zstd compression level, 1 (fast) to 19 (small). Default `3`.
    #[serde(default = "default_zstd_level", deserialize_with = "de_zstd_level")]
    pub zstd_level: i32,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        Self {
            seal_interval: default_seal_interval(),
            max_segment_bytes: default_max_segment_bytes(),
            zstd_level: default_zstd_level(),
        }
    }
}

/// `snapshots:` — base snapshots that oplog replay starts from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSettings {
    /// When to take a snapshot (UTC), as a `cron` expression with seconds.
    pub schedule: CronSchedule,
    /// Sealing threads of a snapshot at once (and, from 8 up, cursors per large collection),
    /// 1 to 64. Default `4`.
    #[serde(default = "default_parallelism", deserialize_with = "de_parallelism")]
    pub parallelism: u32,
    /// Also copy the users and roles (`admin.system.users`, `admin.system.roles`, with their
    /// hashed credentials), so `mc-restore --restore-users-and-roles` can recreate them. Default
    /// `false`: credentials stay out of the repository unless asked for.
    #[serde(default)]
    pub include_users_and_roles: bool,
}

/// `retention:` — what pruning keeps. At least one `keep_*` above zero, or a `pitr_window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Keep the newest snapshot of each of the last N days. Default `0`.
    #[serde(default)]
    pub keep_daily: u32,
    /// Keep the newest snapshot of each of the last N ISO weeks. Default `0`.
    #[serde(default)]
    pub keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months. Default `0`.
    #[serde(default)]
    pub keep_monthly: u32,
    /// Keep everything needed to restore to any moment of this window before now (snapshots and
    /// oplog). Absent: only the `keep_*` snapshots are restorable.
    #[serde(default, deserialize_with = "de_optional_positive_duration")]
    pub pitr_window: Option<Duration>,
    /// How long the data of a snapshot without a manifest (one interrupted by a crash) stays
    /// after its last object was written before pruning deletes it; a snapshot still being taken
    /// writes parts every few seconds, so it is never that old. Default `24h`
    /// ([`crate::catalog::retention::DEFAULT_INCOMPLETE_SNAPSHOT_GRACE`]).
    #[serde(
        default = "default_incomplete_snapshot_grace",
        deserialize_with = "de_positive_duration"
    )]
    pub incomplete_snapshot_grace: Duration,
}

/// `lease:` — one active agent among several, through a Redis lease.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseSettings {
    /// Redis URL (`redis://…` or `rediss://…`), by reference only (it may carry a password).
    pub redis_url: SecretRef,
    /// How long a lease lasts without renewal; a standby takes over after it. Default `10s`.
    #[serde(
        default = "default_lease_ttl",
        deserialize_with = "de_positive_duration"
    )]
    pub ttl: Duration,
}

/// `http:` — metrics and health.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address and port to serve `/metrics` and `/health` on. Default `127.0.0.1:9187`.
    #[serde(default = "default_listen", deserialize_with = "de_listen")]
    pub listen: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
        }
    }
}

/// `kafka:` — consumer-group offset capture.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Brokers to bootstrap from: a list of `host:port`, or `{ env: VAR }` / `{ file: PATH }`
    /// holding a comma-separated list.
    pub bootstrap_servers: BootstrapServers,
    /// Consumer groups to capture, as glob patterns (`*`, `?`). Default `["*"]`.
    #[serde(default = "default_groups", deserialize_with = "de_groups")]
    pub groups: Vec<String>,
    /// How often offsets are read. Default `5s`.
    #[serde(
        default = "default_kafka_interval",
        deserialize_with = "de_positive_duration"
    )]
    pub interval: Duration,
    /// TLS and SASL. Absent: plaintext, no authentication.
    #[serde(default)]
    pub security: Option<KafkaSecuritySettings>,
}

/// `kafka.security:` — how the agent and `mc-restore` authenticate to and encrypt traffic with
/// the brokers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecuritySettings {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: crate::kafka::SecurityProtocol,
    /// Required with the `sasl_*` protocols.
    #[serde(default)]
    pub sasl: Option<KafkaSaslSettings>,
    /// With the `ssl` protocols: the CA to verify brokers with, a client certificate.
    #[serde(default)]
    pub tls: Option<KafkaTlsSettings>,
}

/// `kafka.security.sasl:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSaslSettings {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: crate::kafka::SaslMechanism,
    /// The user name (not secret, so it may be written here).
    pub username: String,
    /// The password, by reference only: `{ env: VAR }` or `{ file: /path }`.
    pub password: SecretRef,
}

/// `kafka.security.tls:` — PEM files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTlsSettings {
    /// The CA(s) that signed the brokers' certificates. Absent: the system's CAs.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for brokers that authenticate clients by certificate (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `drills:` — scheduled, verified restores into a scratch MongoDB.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillSettings {
    /// When to run a drill (UTC), as a `cron` expression with seconds.
    pub schedule: CronSchedule,
    /// Connection string of the scratch MongoDB restored into, by reference only. Everything in
    /// it may be dropped.
    pub scratch_uri: SecretRef,
    /// Keep the restored data after the drill (for inspection). Default `false`.
    #[serde(default)]
    pub keep: bool,
    /// Also restore users and roles as at the drill's point onto the scratch target and verify
    /// them (`mc-restore drill --restore-users-and-roles`); needs snapshots that captured them
    /// (`snapshots.include_users_and_roles`). Default `false`.
    #[serde(default)]
    pub restore_users_and_roles: bool,
}

/// Where the repository URL comes from.
#[allow(clippy::large_enum_variant)] // parsed once per process
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoUrlSource {
    /// Written in the policy (already parsed and checked).
    Inline(RepoUrl),
    /// Read at run time; checked by [`super::Policy::check_environment`].
    Reference(SecretRef),
}

pub(super) const REPO_URL_FORMS: &str = "write a path, file:///absolute/path or s3://bucket/prefix?region=…, or `{ env: VARIABLE }` / `{ file: /path }` holding one";

impl<'de> Deserialize<'de> for RepoUrlSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UrlVisitor;
        impl<'de> Visitor<'de> for UrlVisitor {
            type Value = RepoUrlSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a repository URL or `{ env: VARIABLE }` / `{ file: /path }`")
            }
            fn visit_str<E: de::Error>(self, url: &str) -> Result<RepoUrlSource, E> {
                // StorageError messages redact credentials, so echoing them is safe.
                RepoUrl::parse(url)
                    .map(RepoUrlSource::Inline)
                    .map_err(|e| invalid(e, REPO_URL_FORMS))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RepoUrlSource, A::Error> {
                secret_from_map(map).map(RepoUrlSource::Reference)
            }
        }
        deserializer.deserialize_any(UrlVisitor)
    }
}

/// Kafka brokers: listed, or read at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapServers {
    /// `host:port` entries written in the policy.
    List(Vec<String>),
    /// A comma-separated list in an environment variable or file.
    Reference(SecretRef),
}

pub(super) const BOOTSTRAP_FORMS: &str = "write a list like [\"kafka-0:9092\", \"kafka-1:9092\"] or `{ env: VARIABLE }` holding \"host:port,host:port\"";

impl<'de> Deserialize<'de> for BootstrapServers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ServersVisitor;
        impl<'de> Visitor<'de> for ServersVisitor {
            type Value = BootstrapServers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of host:port or `{ env: VARIABLE }`")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<BootstrapServers, E> {
                Err(invalid(
                    "a single string is not a broker list",
                    BOOTSTRAP_FORMS,
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<BootstrapServers, A::Error> {
                let mut servers = Vec::new();
                while let Some(server) = seq.next_element::<String>()? {
                    check_broker(&server).map_err(|reason| invalid(reason, BOOTSTRAP_FORMS))?;
                    servers.push(server);
                }
                if servers.is_empty() {
                    return Err(invalid("the broker list is empty", BOOTSTRAP_FORMS));
                }
                Ok(BootstrapServers::List(servers))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BootstrapServers, A::Error> {
                secret_from_map(map).map(BootstrapServers::Reference)
            }
        }
        deserializer.deserialize_any(ServersVisitor)
    }
}

/// A broker address is `host:port` with a numeric port.
pub(super) fn check_broker(server: &str) -> Result<(), String> {
    match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("`{server}` is not host:port")),
    }
}

/// A parsed cron schedule and the expression it came from. Times are UTC.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    schedule: cron::Schedule,
}

/// How cron expressions are written, quoted in every cron error.
pub const CRON_FORMS: &str = "write six fields `sec min hour day-of-month month day-of-week` (an optional seventh is the year), times in UTC, e.g. \"0 0 2 * * *\" for 02:00 daily, \"0 */5 * * * *\" for every 5 minutes, \"0 0 3 * * Sun\" for Sundays at 03:00";

impl CronSchedule {
    /// Parses an expression in the `cron` crate's syntax (seconds first).
    pub fn parse(expression: &str) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(format!(
                "`{expression}` has {fields} fields, not 6 or 7 (the first is seconds; a 5-field crontab line needs a leading `0 `)"
            ));
        }
        let schedule = cron::Schedule::from_str(expression).map_err(|e| {
            // The crate's message repeats the expression and a caret line; keep the reason.
            let reason = e
                .to_string()
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty() && *l != expression.trim() && *l != "^")
                .unwrap_or("invalid expression")
                .to_owned();
            format!("`{expression}` is not a valid schedule: {reason}")
        })?;
        Ok(Self {
            expression: expression.to_owned(),
            schedule,
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The parsed schedule.
    pub fn schedule(&self) -> &cron::Schedule {
        &self.schedule
    }

    /// The first time the schedule fires strictly after `after`.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.schedule.after(&after).next()
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expression = String::deserialize(deserializer)?;
        CronSchedule::parse(&expression).map_err(|reason| invalid(reason, CRON_FORMS))
    }
}

/// A duration as written (`15m`), parsed with the policy's own rules.
struct DurationText(Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 15m")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationText, E> {
                parse_duration(text)
                    .map(DurationText)
                    .map_err(|reason| invalid(reason, DURATION_FORMS))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<DurationText, E> {
                Err(invalid(
                    format!("`{n}` has no unit (is it seconds, minutes, hours?)"),
                    DURATION_FORMS,
                ))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<DurationText, E> {
                Err(invalid(format!("`{n}` is not a duration"), DURATION_FORMS))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<DurationText, E> {
                Err(invalid(format!("`{n}` is not a duration"), DURATION_FORMS))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

fn de_positive_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let DurationText(duration) = DurationText::deserialize(deserializer)?;
    if duration.is_zero() {
        return Err(invalid("the duration must be above zero", DURATION_FORMS));
    }
    Ok(duration)
}

fn de_optional_positive_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    match Option::<DurationText>::deserialize(deserializer)? {
        Some(DurationText(duration)) if duration.is_zero() => Err(invalid(
            "the duration must be above zero",
            "remove the field to keep no point-in-time window, or write a duration like 7d",
        )),
        other => Ok(other.map(|DurationText(d)| d)),
    }
}

/// A size as written (`16MiB` or a bare number of bytes).
struct SizeText(u64);

impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like 16MiB")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<SizeText, E> {
                parse_size(text)
                    .map(SizeText)
                    .map_err(|reason| invalid(reason, SIZE_FORMS))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<SizeText, E> {
                Ok(SizeText(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<SizeText, E> {
                Err(invalid(format!("`{n}` is not a size"), SIZE_FORMS))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<SizeText, E> {
                Err(invalid(format!("`{n}` is not a size"), SIZE_FORMS))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Smallest and largest `capture.max_segment_bytes`: below one 64 KiB frame a segment is mostly
/// overhead; above 1 GiB a failed upload costs too much to redo.
pub const SEGMENT_BYTES_RANGE: (u64, u64) = (64 << 10, 1 << 30);

fn de_segment_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let SizeText(bytes) = SizeText::deserialize(deserializer)?;
    let (min, max) = SEGMENT_BYTES_RANGE;
    if !(min..=max).contains(&bytes) {
        return Err(invalid(
            format!("{bytes} bytes is outside 64KiB..=1GiB"),
            "segments of a few MiB work well; the default is 16MiB",
        ));
    }
    Ok(bytes)
}

fn de_zstd_level<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    let level = i64::deserialize(deserializer)?;
    if !(1..=19).contains(&level) {
        return Err(invalid(
            format!("level {level} is outside 1..=19"),
            "use 1 (fastest) to 19 (smallest); 3 is the default and a good trade-off",
        ));
    }
    // In range, so the conversion cannot fail.
    Ok(i32::try_from(level).unwrap_or(3))
}

fn de_parallelism<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let parallelism = i64::deserialize(deserializer)?;
    if !(1..=64).contains(&parallelism) {
        return Err(invalid(
            format!("{parallelism} is outside 1..=64"),
            "use a small number of parallel collection copies; the default is 4",
        ));
    }
    Ok(u32::try_from(parallelism).unwrap_or(4))
}

fn de_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let version = i64::deserialize(deserializer)?;
    if version != i64::from(POLICY_VERSION) {
        return Err(invalid(
            format!("policy version {version} is not supported"),
            format!("this build of mc-backup reads `version: {POLICY_VERSION}`"),
        ));
    }
    Ok(POLICY_VERSION)
}

fn de_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = String::deserialize(deserializer)?;
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(invalid(
            format!("`{name}` is not a valid policy name"),
            "use 1 to 63 lower-case letters, digits and `-`, e.g. mindcompute-dev",
        ));
    }
    Ok(name)
}

fn de_source_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let id = String::deserialize(deserializer)?;
    if !crate::catalog::names::valid_source_id(&id) {
        return Err(invalid(
            format!("`{id}` is not a valid source id"),
            "use 1 to 63 characters from a-z, 0-9, `_` and `-`, starting with a letter or digit, e.g. rs0",
        ));
    }
    Ok(id)
}

/// How the keyring is given, quoted in keyring errors.
pub(super) const KEYRING_FORMS: &str = "write `{ file: /etc/mc-backup/keyring }` (e.g. a mounted Kubernetes Secret) or `{ env: MC_KEYRING }`; create a keyring with `mc-agent key generate --keyring FILE`";

fn de_keyring<'de, D: Deserializer<'de>>(deserializer: D) -> Result<KeyringSource, D::Error> {
    struct KeyringVisitor;
    impl<'de> Visitor<'de> for KeyringVisitor {
        type Value = KeyringSource;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`{ file: /path/to/keyring }` or `{ env: VARIABLE }`")
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<KeyringSource, E> {
            Err(invalid(
                "the keyring is given by reference, never inline",
                KEYRING_FORMS,
            ))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KeyringSource, A::Error> {
            Ok(match secret_from_map(map)? {
                SecretRef::Env(var) => KeyringSource::Env(var),
                SecretRef::File(path) => KeyringSource::File(path),
            })
        }
    }
    deserializer.deserialize_any(KeyringVisitor)
}

fn de_listen<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        invalid(
            format!("`{text}` is not an address:port"),
            "write an IP address and a port, e.g. 127.0.0.1:9187 (local only) or 0.0.0.0:9187 (all interfaces)",
        )
    })
}

/// How consumer groups are given, quoted in group errors.
pub(super) const GROUP_FORMS: &str =
    "list consumer-group names or glob patterns, e.g. [\"orders-*\", \"interviews-*\"], or [\"*\"] for all";

fn de_groups<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let groups = Vec::<String>::deserialize(deserializer)?;
    if groups.is_empty() {
        return Err(invalid("the group list is empty", GROUP_FORMS));
    }
    if groups.iter().any(|g| g.trim().is_empty()) {
        return Err(invalid("a group pattern is empty", GROUP_FORMS));
    }
    Ok(groups)
}

fn default_seal_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_max_segment_bytes() -> u64 {
    16 << 20
}
fn default_zstd_level() -> i32 {
    3
}
fn default_parallelism() -> u32 {
    4
}
fn default_incomplete_snapshot_grace() -> Duration {
    crate::catalog::retention::DEFAULT_INCOMPLETE_SNAPSHOT_GRACE
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9187))
}
fn default_groups() -> Vec<String> {
    vec!["*".into()]
}
fn default_kafka_interval() -> Duration {
    Duration::from_secs(5)
}
