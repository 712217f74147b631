//! `--kafka-security-protocol`, `--kafka-sasl-*`, `--kafka-ca-file`, `--kafka-cert-file`,
//! `--kafka-key-file`: TLS and SASL for the Kafka cluster `mc-restore` resets, given on the
//! command line (shared by `kafka-offsets` and `--at … --kafka-groups`). For a cluster whose
//! settings are not the policy's (a DR cluster with its own credentials) or without a policy.
//!
//! Precedence: any of these flags describes the cluster's security completely and replaces the
//! policy's `kafka.security` as a whole (a DR cluster's settings are its own, not a mix); without
//! them the policy's applies, and without a policy plaintext. The combination rules are the
//! policy's own (`mc_core::kafka::KafkaSecurity::new`), worded here in flags. The password is
//! never a flag value: `--kafka-sasl-password-env VAR` or `--kafka-sasl-password-file PATH`.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use mc_core::kafka::{
    KafkaSecurity, PemFile, SaslCredentials, SaslMechanism, SecurityError, SecurityProtocol,
    SecurityRule,
};
use mc_core::policy::{PolicyError, SecretRef};
use mc_core::secret::Secret;

const SASL_FLAGS: &str = "--kafka-sasl-mechanism, --kafka-sasl-username and --kafka-sasl-password-env VAR (or --kafka-sasl-password-file PATH)";

#[derive(Debug, Clone, Default, Args)]
pub struct KafkaSecurityArgs {
    /// Kafka security protocol; any --kafka-security/--kafka-sasl/--kafka-*-file flag replaces
    /// the policy's kafka.security as a whole (default with such flags: plaintext).
    #[arg(long, value_name = "PROTOCOL", value_enum)]
    pub kafka_security_protocol: Option<SecurityProtocol>,

    /// SASL mechanism (with --kafka-sasl-username and a password flag).
    #[arg(long, value_name = "MECHANISM", value_enum, ignore_case = true)]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,

    /// SASL user name.
    #[arg(long, value_name = "NAME")]
    pub kafka_sasl_username: Option<String>,

    /// Environment variable holding the SASL password (never the password itself).
    #[arg(long, value_name = "VAR", conflicts_with = "kafka_sasl_password_file")]
    pub kafka_sasl_password_env: Option<String>,

    /// File holding the SASL password (one trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    pub kafka_sasl_password_file: Option<PathBuf>,

    /// PEM file of the CA(s) that signed the brokers' certificates (default: the system's).
    #[arg(long, value_name = "PATH")]
    pub kafka_ca_file: Option<PathBuf>,

    /// PEM client certificate, for brokers that authenticate clients by certificate.
    #[arg(long, value_name = "PATH")]
    pub kafka_cert_file: Option<PathBuf>,

    /// PEM private key of --kafka-cert-file.
    #[arg(long, value_name = "PATH")]
    pub kafka_key_file: Option<PathBuf>,
}

impl KafkaSecurityArgs {
    /// The flags given, as they are written (for messages and the retry command line; the
    /// password only by reference).
    pub fn given(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        [
            (
                "--kafka-security-protocol",
                self.kafka_security_protocol
                    .map(|p| p.as_librdkafka().to_owned()),
            ),
            (
                "--kafka-sasl-mechanism",
                self.kafka_sasl_mechanism
                    .map(|m| m.as_str().to_ascii_lowercase()),
            ),
            ("--kafka-sasl-username", self.kafka_sasl_username.clone()),
            (
                "--kafka-sasl-password-env",
                self.kafka_sasl_password_env.clone(),
            ),
            (
                "--kafka-sasl-password-file",
                path(&self.kafka_sasl_password_file),
            ),
            ("--kafka-ca-file", path(&self.kafka_ca_file)),
            ("--kafka-cert-file", path(&self.kafka_cert_file)),
            ("--kafka-key-file", path(&self.kafka_key_file)),
        ]
        .into_iter()
        .filter_map(|(flag, value)| value.map(|v| (flag, v)))
        .collect()
    }

    /// The security these flags describe, checked; `None` when none is given (the policy's, or
    /// plaintext, applies).
    pub fn security(&self) -> anyhow::Result<Option<KafkaSecurity>> {
        if self.given().is_empty() {
            return Ok(None);
        }
        let protocol = self.kafka_security_protocol.unwrap_or_default();
        let password = match (
            &self.kafka_sasl_password_env,
            &self.kafka_sasl_password_file,
        ) {
            (Some(var), _) => Some(("--kafka-sasl-password-env", SecretRef::Env(var.clone()))),
            (None, Some(path)) => {
                Some(("--kafka-sasl-password-file", SecretRef::File(path.clone())))
            }
            (None, None) => None,
        };
        let sasl_parts = [
            (
                "--kafka-sasl-mechanism",
                self.kafka_sasl_mechanism.is_some(),
            ),
            ("--kafka-sasl-username", self.kafka_sasl_username.is_some()),
            (
                password.as_ref().map_or(
                    "--kafka-sasl-password-env (or --kafka-sasl-password-file)",
                    |(flag, _)| *flag,
                ),
                password.is_some(),
            ),
        ];
        let sasl = match (
            self.kafka_sasl_mechanism,
            &self.kafka_sasl_username,
            password,
        ) {
            (Some(mechanism), Some(username), Some((flag, reference))) => Some(SaslCredentials {
                mechanism,
                username: Secret::new(username.clone()),
                password: resolve_password(flag, &reference)?,
            }),
            (None, None, None) => None,
            _ => {
                let given: Vec<&str> = sasl_parts
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(flag, _)| *flag)
                    .collect();
                let missing: Vec<&str> = sasl_parts
                    .iter()
                    .filter(|(_, on)| !*on)
                    .map(|(flag, _)| *flag)
                    .collect();
                bail!(
                    "{} given without {}: SASL needs all of {SASL_FLAGS}",
                    given.join(" and "),
                    missing.join(" and ")
                );
            }
        };
        KafkaSecurity::new(
            protocol,
            sasl,
            self.kafka_ca_file.clone(),
            self.kafka_cert_file.clone(),
            self.kafka_key_file.clone(),
        )
        .map(Some)
        .map_err(|e| self.in_flag_terms(e, protocol))
    }

    /// A refusal of [`KafkaSecurity::new`], naming the flags.
    fn in_flag_terms(&self, e: SecurityError, protocol: SecurityProtocol) -> anyhow::Error {
        let name = protocol.as_librdkafka();
        let chosen = if self.kafka_security_protocol.is_some() {
            format!("--kafka-security-protocol {name}")
        } else {
            format!("the protocol ({name}: no --kafka-security-protocol given)")
        };
        let given = |prefixes: &[&str]| -> String {
            self.given()
                .iter()
                .map(|(flag, _)| *flag)
                .filter(|flag| prefixes.iter().any(|p| flag.starts_with(p)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match e {
            SecurityError::Rules(rules) => {
                let lines: Vec<String> = rules
                    .iter()
                    .map(|rule| match rule {
                        SecurityRule::SaslMissing => format!(
                            "{chosen} needs SASL credentials: pass {SASL_FLAGS}, or use --kafka-security-protocol ssl or plaintext"
                        ),
                        SecurityRule::SaslUnused => format!(
                            "{} given but {chosen} does not use SASL: pass --kafka-security-protocol sasl_ssl (or sasl_plaintext on a trusted network)",
                            given(&["--kafka-sasl-"])
                        ),
                        SecurityRule::TlsUnused => format!(
                            "{} given but {chosen} does not use TLS: pass --kafka-security-protocol ssl or sasl_ssl",
                            given(&["--kafka-ca-file", "--kafka-cert-file", "--kafka-key-file"])
                        ),
                        SecurityRule::CertKeyUnpaired => "--kafka-cert-file and --kafka-key-file go together: pass both (the client certificate and its private key), or neither".into(),
                    })
                    .collect();
                anyhow::anyhow!("{}", lines.join("; "))
            }
            SecurityError::Unreadable { file, path, source } => {
                let flag = match file {
                    PemFile::Ca => "--kafka-ca-file",
                    PemFile::Cert => "--kafka-cert-file",
                    PemFile::Key => "--kafka-key-file",
                };
                anyhow::anyhow!(
                    "{flag} {}: cannot read it: {source}; give the path of a readable PEM file",
                    path.display()
                )
            }
        }
    }
}

/// Reads the password the flag refers to; errors name the flag, never the value.
fn resolve_password(flag: &str, reference: &SecretRef) -> anyhow::Result<Secret> {
    reference.resolve().map_err(|e| match e {
        PolicyError::EnvMissing { var, state, .. } => anyhow::anyhow!(
            "{flag} {var}: the environment variable is {state}; export {var}=… or pass --kafka-sasl-password-file PATH"
        ),
        PolicyError::SecretFile { path, source, .. } => anyhow::anyhow!(
            "{flag} {}: cannot read it: {source}",
            path.display()
        ),
        PolicyError::SecretFileEmpty { path, .. } => anyhow::anyhow!(
            "{flag} {}: the file is empty; put the password in it",
            path.display()
        ),
        other => anyhow::anyhow!("{flag}: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        security: KafkaSecurityArgs,
    }

    fn parse(args: &[&str]) -> KafkaSecurityArgs {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .security
    }

    fn refused(args: &[&str]) -> String {
        parse(args).security().unwrap_err().to_string()
    }

    #[test]
    fn no_flag_leaves_the_choice_to_the_policy() {
        assert!(parse(&[]).security().unwrap().is_none());
    }

    #[test]
    fn complete_sasl_settings_are_built_and_described_without_the_password() {
        let file = std::env::temp_dir().join(format!("mc-kafka-pw-{}", std::process::id()));
        std::fs::write(&file, "s3cret-pw\n").unwrap();
        let path = file.display().to_string();
        let args = parse(&[
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-sasl-username",
            "dr",
            "--kafka-sasl-password-file",
            &path,
        ]);
        let security = args.security().unwrap().unwrap();
        let _ = std::fs::remove_file(&file);
        assert_eq!(security.describe(), "sasl_plaintext, SCRAM-SHA-512 as dr");
        assert!(!format!("{security:?}").contains("s3cret-pw"));
        let shown = format!("{:?}", args.given());
        assert!(shown.contains(&path) && !shown.contains("s3cret-pw"));
    }

    #[test]
    fn bad_combinations_name_the_flags() {
        let e = refused(&["--kafka-sasl-mechanism", "plain"]);
        assert!(
            e.contains("--kafka-sasl-mechanism given without --kafka-sasl-username and --kafka-sasl-password-env (or --kafka-sasl-password-file)"),
            "{e}"
        );
        let e = refused(&[
            "--kafka-sasl-username",
            "u",
            "--kafka-sasl-password-file",
            "/p",
        ]);
        assert!(
            e.starts_with("--kafka-sasl-username and --kafka-sasl-password-file given without --kafka-sasl-mechanism"),
            "{e}"
        );
        let e = refused(&[
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-sasl-mechanism",
            "plain",
            "--kafka-sasl-username",
            "u",
            "--kafka-sasl-password-env",
            "MC_TEST_SURELY_UNSET_KAFKA_PW",
        ]);
        assert!(
            e.starts_with("--kafka-sasl-password-env MC_TEST_SURELY_UNSET_KAFKA_PW: the environment variable is not set"),
            "{e}"
        );
        let e = refused(&["--kafka-security-protocol", "sasl_ssl"]);
        assert!(
            e.contains("--kafka-security-protocol sasl_ssl needs SASL credentials"),
            "{e}"
        );
        let e = refused(&["--kafka-ca-file", "/etc/ssl/ca.pem"]);
        assert!(
            e.contains("--kafka-ca-file given but the protocol (plaintext")
                && e.contains("ssl or sasl_ssl"),
            "{e}"
        );
        let e = refused(&[
            "--kafka-security-protocol",
            "ssl",
            "--kafka-cert-file",
            "/c.pem",
        ]);
        assert!(
            e.contains("--kafka-cert-file and --kafka-key-file go together"),
            "{e}"
        );
        let e = refused(&[
            "--kafka-security-protocol",
            "ssl",
            "--kafka-ca-file",
            "/no/such/ca.pem",
        ]);
        assert!(
            e.starts_with("--kafka-ca-file /no/such/ca.pem: cannot read it"),
            "{e}"
        );
    }
}
