//! How a client authenticates to and encrypts its traffic with the brokers: TLS (server
//! verification against a CA, optional client certificate) and SASL (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512). Built from the policy's `kafka.security:` after its secrets are read, and
//! turned into librdkafka settings here, in one place. Passwords live in [`Secret`]s and are
//! never printed.

use std::path::PathBuf;
use std::sync::Arc;

use rdkafka::config::ClientConfig;
use serde::Deserialize;

use crate::policy::Secret;

/// `security.protocol`: what runs under the Kafka protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no authentication (the default).
    #[default]
    Plaintext,
    /// TLS, no SASL (a client certificate may authenticate).
    Ssl,
    /// SASL without TLS: only on trusted networks, the password crosses in clear with PLAIN.
    SaslPlaintext,
    /// SASL over TLS.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
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

impl KafkaSecurity {
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
}
