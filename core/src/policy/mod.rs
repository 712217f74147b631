//! Backup policies: the YAML file that describes one protected system — its MongoDB source, the
//! repository, the recovery objectives, capture, snapshots, retention, lease, metrics endpoint,
//! Kafka and drills (`docs/policies.md` documents every field; `policies/` has examples).
//!
//! Two steps, so a policy can be checked where its secrets are not available:
//!
//! - [`Policy::load`] parses and checks the file: the schema is strict (unknown keys are
//!   errors), values are checked as they are read, then the rules between fields. No secret is
//!   read, nothing is contacted.
//! - [`Policy::check_environment`] resolves every [`SecretRef`] (environment variables, mounted
//!   files), loads the keyring and parses the resolved repository URL. Still no network.
//!
//! Every error names the file, the line (and column when known), the field and the fix; none
//! contains a secret's value. Relative paths in a policy are relative to the working directory
//! of the process, not to the policy file.

mod duration;
mod error;
mod load;
mod locations;
mod schema;
mod secret;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::secret::Secret;

pub use duration::{
    format_duration, format_size, parse_duration, parse_size, DURATION_FORMS, SIZE_FORMS,
};
pub use error::{Place, PolicyError};
pub use schema::{
    BootstrapServers, CaptureSettings, CronSchedule, DrillSettings, HttpSettings,
    KafkaSaslSettings, KafkaSecuritySettings, KafkaSettings, KafkaTlsSettings, LeaseSettings,
    MongoSettings, Objectives, Policy, RepoUrlSource, RepositorySettings, RetentionSettings,
    SnapshotSettings, SourceSettings, CRON_FORMS, POLICY_VERSION,
};
pub use secret::SecretRef;

use crate::crypto::{KeyError, Keyring};
use crate::storage::RepoUrl;

impl Policy {
    /// Reads, parses and checks the policy at `path`. Does not read secrets or connect anywhere.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        load::load(path.as_ref())
    }

    /// Parses and checks policy text; `file` names it in messages.
    pub fn from_yaml(text: &str, file: impl Into<PathBuf>) -> Result<Policy, PolicyError> {
        load::from_yaml(text, file.into())
    }

    /// The file the policy was read from, as it was named.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The place of a field (dotted path, e.g. `capture.seal_interval`) in the policy file, with
    /// its line and column when the field is written there.
    pub fn place_of(&self, field: &str) -> Place {
        let (line, column) = match self.locations.get(field) {
            Some((line, column)) => (Some(line), Some(column)),
            None => (None, None),
        };
        Place {
            file: Some(self.file.clone()),
            line,
            column,
            field: Some(field.to_owned()),
        }
    }

    /// Where segments are staged before upload: `repository.spool_dir`, or
    /// `<temp dir>/mc-backup/<name>/spool`.
    pub fn spool_dir(&self) -> PathBuf {
        match &self.repository.spool_dir {
            Some(dir) => dir.clone(),
            None => std::env::temp_dir()
                .join("mc-backup")
                .join(&self.name)
                .join("spool"),
        }
    }

    /// Resolves `secret`, the value of the policy field `field`; errors name the field.
    pub fn resolve_secret(&self, field: &str, secret: &SecretRef) -> Result<Secret, PolicyError> {
        secret::resolve_at(secret, self.place_of(field))
    }

    /// The MongoDB connection string (`source.mongodb.uri`), checked to be one.
    pub fn mongodb_uri(&self) -> Result<Secret, PolicyError> {
        let field = "source.mongodb.uri";
        let uri = self.resolve_secret(field, &self.source.mongodb.uri)?;
        self.check_scheme(field, &self.source.mongodb.uri, &uri, MONGODB_SCHEMES)?;
        Ok(uri)
    }

    /// The repository location (`repository.url`), resolved and parsed.
    pub fn repository_url(&self) -> Result<RepoUrl, PolicyError> {
        let field = "repository.url";
        match &self.repository.url {
            RepoUrlSource::Inline(url) => Ok(url.clone()),
            RepoUrlSource::Reference(reference) => {
                let text = self.resolve_secret(field, reference)?;
                // Storage errors redact credentials, so the message is safe to show.
                RepoUrl::parse(text.expose()).map_err(|e| PolicyError::Invalid {
                    place: self.place_of(field),
                    message: format!("the URL in {reference}: {e}"),
                    hint: "put a path, file:///absolute/path or s3://bucket/prefix?region=… there"
                        .into(),
                })
            }
        }
    }

    /// Loads the keyring `repository.keyring` names.
    pub fn keyring(&self) -> Result<Keyring, PolicyError> {
        Keyring::load(&self.repository.keyring).map_err(|source| {
            let hint = match &source {
                KeyError::Read { .. } => "; create it with `mc-agent key generate --keyring FILE` or point repository.keyring at the right file",
                _ => "",
            };
            PolicyError::Keyring {
                place: self.place_of("repository.keyring"),
                source: Box::new(source),
                hint,
            }
        })
    }

    /// The Redis URL of the lease (`lease.redis_url`), if the policy has a lease.
    pub fn lease_redis_url(&self) -> Result<Option<Secret>, PolicyError> {
        let Some(lease) = &self.lease else {
            return Ok(None);
        };
        let field = "lease.redis_url";
        let url = self.resolve_secret(field, &lease.redis_url)?;
        self.check_scheme(field, &lease.redis_url, &url, REDIS_SCHEMES)?;
        Ok(Some(url))
    }

    /// The Kafka brokers (`kafka.bootstrap_servers`), if Kafka is captured.
    pub fn kafka_bootstrap_servers(&self) -> Result<Option<Vec<String>>, PolicyError> {
        let Some(kafka) = &self.kafka else {
            return Ok(None);
        };
        match &kafka.bootstrap_servers {
            BootstrapServers::List(servers) => Ok(Some(servers.clone())),
            BootstrapServers::Reference(reference) => {
                let field = "kafka.bootstrap_servers";
                let text = self.resolve_secret(field, reference)?;
                let servers: Vec<String> = text
                    .expose()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = servers.iter().find(|s| schema::check_broker(s).is_err()) {
                    // Broker addresses are not secret; showing the bad one is the useful fix.
                    return Err(PolicyError::Invalid {
                        place: self.place_of(field),
                        message: format!("{reference} holds `{bad}`, which is not host:port"),
                        hint: "set it to a comma-separated list like kafka-0:9092,kafka-1:9092"
                            .into(),
                    });
                }
                Ok(Some(servers))
            }
        }
    }

    /// The Kafka client's TLS and SASL settings (`kafka.security`), with the password read;
    /// plaintext when the section (or `kafka:`) is absent. Also checks that the TLS files exist.
    pub fn kafka_security(&self) -> Result<crate::kafka::KafkaSecurity, PolicyError> {
        let Some(settings) = self.kafka.as_ref().and_then(|k| k.security.as_ref()) else {
            return Ok(crate::kafka::KafkaSecurity::default());
        };
        let sasl = match &settings.sasl {
            Some(sasl) => Some(crate::kafka::SaslCredentials {
                mechanism: sasl.mechanism,
                username: Secret::new(sasl.username.clone()),
                password: self.resolve_secret("kafka.security.sasl.password", &sasl.password)?,
            }),
            None => None,
        };
        let tls = settings.tls.clone().unwrap_or_default();
        crate::kafka::KafkaSecurity::new(
            settings.protocol,
            sasl,
            tls.ca_file,
            tls.cert_file,
            tls.key_file,
        )
        .map_err(|e| match e {
            crate::kafka::SecurityError::Unreadable { file, path, source } => {
                let field = match file {
                    crate::kafka::PemFile::Ca => "kafka.security.tls.ca_file",
                    crate::kafka::PemFile::Cert => "kafka.security.tls.cert_file",
                    crate::kafka::PemFile::Key => "kafka.security.tls.key_file",
                };
                PolicyError::Invalid {
                    place: self.place_of(field),
                    message: format!("cannot read {}: {source}", path.display()),
                    hint: "mount the PEM file at that path (a Kubernetes Secret volume), or fix the path".into(),
                }
            }
            // Loading checked the rules already; kept for a policy built another way.
            crate::kafka::SecurityError::Rules(rules) => {
                let rule = rules
                    .first()
                    .copied()
                    .unwrap_or(crate::kafka::SecurityRule::SaslMissing);
                let (field, message, hint) =
                    load::kafka_rule_in_policy_terms(rule, settings.protocol);
                PolicyError::Invalid {
                    place: self.place_of(field),
                    message,
                    hint,
                }
            }
        })
    }

    /// The scratch MongoDB of drills (`drills.scratch_uri`), if drills are scheduled.
    pub fn drill_scratch_uri(&self) -> Result<Option<Secret>, PolicyError> {
        let Some(drills) = &self.drills else {
            return Ok(None);
        };
        let field = "drills.scratch_uri";
        let uri = self.resolve_secret(field, &drills.scratch_uri)?;
        self.check_scheme(field, &drills.scratch_uri, &uri, MONGODB_SCHEMES)?;
        Ok(Some(uri))
    }

    /// Checks that everything the policy refers to is there: every secret resolves (and looks
    /// like what it should be), the keyring loads, the repository URL parses. Contacts no
    /// server. Returns every problem found, not only the first.
    pub fn check_environment(&self) -> Result<(), Vec<PolicyError>> {
        let errors: Vec<PolicyError> = [
            self.mongodb_uri().err(),
            self.repository_url().err(),
            self.keyring().err(),
            self.lease_redis_url().err(),
            self.kafka_bootstrap_servers().err(),
            self.kafka_security().err(),
            self.drill_scratch_uri().err(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Fails unless `value` starts with one of `schemes`; never shows the value (only its
    /// source), since it may hold a password.
    fn check_scheme(
        &self,
        field: &str,
        reference: &SecretRef,
        value: &Secret,
        schemes: &[&str],
    ) -> Result<(), PolicyError> {
        if schemes.iter().any(|s| value.expose().starts_with(s)) {
            return Ok(());
        }
        Err(PolicyError::Invalid {
            place: self.place_of(field),
            message: format!("the value of {reference} is not a {} URL", schemes[0]),
            hint: format!(
                "it must start with {} (the value is not shown: it may hold a password)",
                schemes.join(" or ")
            ),
        })
    }
}

/// The Kafka cluster a policy names (`kafka:`), resolved once: the brokers, the consumer-group
/// patterns and the client's TLS/SASL settings with the password read. The agent's Kafka capture
/// and a drill's Kafka reset plan both take it from [`Policy::kafka_cluster`].
#[derive(Debug, Clone)]
pub struct KafkaCluster {
    /// `host:port,host:port` (`kafka.bootstrap_servers`, resolved).
    pub bootstrap: String,
    /// Consumer-group patterns (`*`, `?`): `kafka.groups`.
    pub groups: Vec<String>,
    /// TLS and SASL (`kafka.security`); plaintext when absent.
    pub security: crate::kafka::KafkaSecurity,
}

impl Policy {
    /// The Kafka cluster of `kafka:` with its brokers and security resolved (the password read,
    /// the TLS files checked); `None` when the policy has no `kafka:` section.
    pub fn kafka_cluster(&self) -> Result<Option<KafkaCluster>, PolicyError> {
        let (Some(kafka), Some(servers)) = (&self.kafka, self.kafka_bootstrap_servers()?) else {
            return Ok(None);
        };
        Ok(Some(KafkaCluster {
            bootstrap: servers.join(","),
            groups: kafka.groups.clone(),
            security: self.kafka_security()?,
        }))
    }

    /// The retention rules of `retention:` in the catalog's terms (what `mc-agent prune` and the
    /// agent's pruning after each snapshot apply).
    pub fn keep_rules(&self) -> crate::catalog::retention::KeepRules {
        let r = &self.retention;
        crate::catalog::retention::KeepRules {
            daily: r.keep_daily,
            weekly: r.keep_weekly,
            monthly: r.keep_monthly,
            pitr_window: r.pitr_window,
            incomplete_grace: r.incomplete_snapshot_grace,
        }
    }
}

const MONGODB_SCHEMES: &[&str] = &["mongodb://", "mongodb+srv://"];
const REDIS_SCHEMES: &[&str] = &["redis://", "rediss://", "redis+unix://", "unix://"];
