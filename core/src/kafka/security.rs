//! How a client authenticates to and encrypts its traffic with the brokers: TLS (server
//! verification against a CA, optional client certificate) and SASL (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512). Built from the policy's `kafka.security:` after its secrets are read, and
//! turned into librdkafka settings here, in one place. Passwords live in [`Secret`]s and are
//! never printed.
//!
//! The rules a combination must follow ([`SecurityShape::broken_rules`]) and the checked
//! constructor ([`KafkaSecurity::new`]) live here too, once: the policy (`kafka.security`) and
//! `mc-restore`'s `--kafka-*` flags both use them and only word the result in their own names.

use std::path::PathBuf;
use std::sync::Arc;

use rdkafka::config::ClientConfig;
use serde::Deserialize;

use crate::secret::Secret;

/// `security.protocol`: what runs under the Kafka protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no authentication (the default).
    #[default]
    #[value(name = "plaintext")]
    Plaintext,
    /// TLS, no SASL (a client certificate may authenticate).
    #[value(name = "ssl")]
    Ssl,
    /// SASL without TLS: only on trusted networks, the password crosses in clear with PLAIN.
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    /// SASL over TLS.
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's name.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the protocol authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Whether the protocol runs over TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    #[value(name = "plain")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    #[value(name = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's (and Kafka's) name.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials, read from the policy's references.
#[derive(Debug)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: Secret,
    pub password: Secret,
}

/// Everything a client needs to reach secured brokers. `Default` is plaintext.
#[derive(Debug, Clone, Default)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    /// Shared, not copied: the password is held once.
    pub sasl: Option<Arc<SaslCredentials>>,
    /// PEM file of the CA(s) that signed the brokers' certificates; `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that authenticate clients by certificate.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// What a set of security settings holds, without any value: enough to judge the combination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityShape {
    pub protocol: SecurityProtocol,
    /// SASL credentials are given.
    pub sasl: bool,
    /// TLS settings are given (a CA, a client certificate or key).
    pub tls: bool,
    pub cert: bool,
    pub key: bool,
}

/// A combination of security settings that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityRule {
    /// A `sasl_*` protocol without SASL credentials.
    SaslMissing,
    /// SASL credentials with a protocol that does not use SASL: they would silently go unused.
    SaslUnused,
    /// TLS settings with a protocol that does not use TLS: they would silently go unused.
    TlsUnused,
    /// A client certificate without its key, or a key without its certificate.
    CertKeyUnpaired,
}

impl SecurityShape {
    /// Every rule the combination breaks, in the order above.
    pub fn broken_rules(&self) -> Vec<SecurityRule> {
        let mut broken = Vec::new();
        match (self.sasl, self.protocol.uses_sasl()) {
            (false, true) => broken.push(SecurityRule::SaslMissing),
            (true, false) => broken.push(SecurityRule::SaslUnused),
            _ => {}
        }
        if self.tls && !self.protocol.uses_tls() {
            broken.push(SecurityRule::TlsUnused);
        }
        if self.cert != self.key {
            broken.push(SecurityRule::CertKeyUnpaired);
        }
        broken
    }
}

/// One of the PEM files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemFile {
    Ca,
    Cert,
    Key,
}

/// Why [`KafkaSecurity::new`] refused its settings. Callers name the settings in their own terms.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("the Kafka security settings cannot work together: {0:?}")]
    Rules(Vec<SecurityRule>),
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable {
        file: PemFile,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl KafkaSecurity {
    /// Checked settings: the combination follows [`SecurityShape::broken_rules`] and every PEM
    /// file given can be read (librdkafka would otherwise fail later, less clearly).
    pub fn new(
        protocol: SecurityProtocol,
        sasl: Option<SaslCredentials>,
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    ) -> Result<Self, SecurityError> {
        let shape = SecurityShape {
            protocol,
            sasl: sasl.is_some(),
            tls: ca_file.is_some() || cert_file.is_some() || key_file.is_some(),
            cert: cert_file.is_some(),
            key: key_file.is_some(),
        };
        let broken = shape.broken_rules();
        if !broken.is_empty() {
            return Err(SecurityError::Rules(broken));
        }
        for (file, path) in [
            (PemFile::Ca, &ca_file),
            (PemFile::Cert, &cert_file),
            (PemFile::Key, &key_file),
        ] {
            if let Some(path) = path {
                if let Err(source) = std::fs::metadata(path) {
                    return Err(SecurityError::Unreadable {
                        file,
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        Ok(Self {
            protocol,
            sasl: sasl.map(Arc::new),
            ca_file,
            cert_file,
            key_file,
        })
    }

    /// Adds the settings to a librdkafka configuration.
    pub(super) fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.as_librdkafka());
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", sasl.username.expose())
                .set("sasl.password", sasl.password.expose());
        }
        if let Some(ca) = &self.ca_file {
            config.set("ssl.ca.location", ca.display().to_string());
        }
        if let Some(cert) = &self.cert_file {
            config.set("ssl.certificate.location", cert.display().to_string());
        }
        if let Some(key) = &self.key_file {
            config.set("ssl.key.location", key.display().to_string());
        }
    }

    /// A short description for logs and errors (`sasl_ssl, SCRAM-SHA-512 as user`); never the
    /// password.
    pub fn describe(&self) -> String {
        match &self.sasl {
            Some(s) => format!(
                "{}, {} as {}",
                self.protocol.as_librdkafka(),
                s.mechanism.as_str(),
                s.username.expose()
            ),
            None => self.protocol.as_librdkafka().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_descriptions_never_show_the_password() {
        let security = KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            sasl: Some(Arc::new(SaslCredentials {
                mechanism: SaslMechanism::ScramSha512,
                username: Secret::new("mc-backup".to_owned()),
                password: Secret::new("hunter2-very-secret".to_owned()),
            })),
            ca_file: Some("/etc/kafka/ca.pem".into()),
            cert_file: None,
            key_file: None,
        };
        let mut config = ClientConfig::new();
        security.apply(&mut config);
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.password"), Some("hunter2-very-secret"));
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        assert_eq!(security.describe(), "sasl_ssl, SCRAM-SHA-512 as mc-backup");
        assert!(!format!("{security:?}").contains("hunter2"));
    }

    #[test]
    fn combinations_that_cannot_work_are_refused() {
        use SecurityProtocol::*;
        use SecurityRule::*;
        let shape = |protocol, sasl, ca, cert, key| SecurityShape {
            protocol,
            sasl,
            tls: ca || cert || key,
            cert,
            key,
        };
        assert!(shape(Plaintext, false, false, false, false)
            .broken_rules()
            .is_empty());
        assert!(shape(SaslSsl, true, true, true, true)
            .broken_rules()
            .is_empty());
        assert_eq!(
            shape(SaslSsl, false, false, false, false).broken_rules(),
            [SaslMissing]
        );
        assert_eq!(
            shape(Plaintext, true, true, false, false).broken_rules(),
            [SaslUnused, TlsUnused]
        );
        assert_eq!(
            shape(Ssl, false, false, true, false).broken_rules(),
            [CertKeyUnpaired]
        );
        let credentials = || SaslCredentials {
            mechanism: SaslMechanism::Plain,
            username: Secret::new("u".into()),
            password: Secret::new("p".into()),
        };
        assert!(matches!(
            KafkaSecurity::new(Ssl, Some(credentials()), None, None, None),
            Err(SecurityError::Rules(r)) if r == [SaslUnused]
        ));
        assert!(matches!(
            KafkaSecurity::new(Ssl, None, Some("/no/such/ca.pem".into()), None, None),
            Err(SecurityError::Unreadable {
                file: PemFile::Ca,
                ..
            })
        ));
        let ok = KafkaSecurity::new(SaslPlaintext, Some(credentials()), None, None, None).unwrap();
        assert_eq!(ok.describe(), "sasl_plaintext, PLAIN as u");
    }
}
