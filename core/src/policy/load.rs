//! Reading a policy: YAML → [`Policy`] with errors that say file:line:column, the field and the
//! fix, then the rules between fields.
//!
//! YAML crate: `serde-saphyr`. `serde_yaml` is archived and `serde_yml` has RUSTSEC-2025-0068;
//! of the maintained successors tried here (`serde_yaml_ng`, `serde_norway`, `serde-saphyr`) all
//! build, but only serde-saphyr points errors raised by our own value checks at the value itself
//! (`rpo: 15 minutes` → line 4 column 8, where the others give the key's column or, for duplicate
//! keys, line 1), refuses duplicate keys by default, and is pure Rust without `unsafe`. Field
//! paths come from `serde_path_to_error`, which works with any serde deserializer.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::MessageFormatter;

use super::duration::{format_duration, DURATION_FORMS, SIZE_FORMS};
use super::error::{Place, PolicyError, HINT_SEPARATOR};
use super::locations::{to_u32, FieldLocations};
use super::schema::{
    Policy, BOOTSTRAP_FORMS, CRON_FORMS, GROUP_FORMS, KEYRING_FORMS, REPO_URL_FORMS,
};
use super::secret::SECRET_FORMS;

/// Policy files are small; anything this large is the wrong file.
const MAX_POLICY_BYTES: u64 = 1 << 20;

/// Where the docs for every field are.
const SEE_DOCS: &str = "see docs/policies.md";

/// Reads and checks the policy file at `path` (no secret is resolved).
pub(super) fn load(path: &Path) -> Result<Policy, PolicyError> {
    let read_error = |source| PolicyError::Read {
        file: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_POLICY_BYTES {
        return Err(PolicyError::Invalid {
            place: Place {
                file: Some(path.to_owned()),
                ..Place::default()
            },
            message: format!("the file is {size} bytes, too large for a policy"),
            hint: "check the path given to --policy".into(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    from_yaml(&text, path.to_owned())
}

/// Parses and checks policy text; `file` is only used in messages.
pub(super) fn from_yaml(text: &str, file: PathBuf) -> Result<Policy, PolicyError> {
    let only_comments = text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---"
    });
    if only_comments {
        return Err(PolicyError::Invalid {
            place: Place {
                file: Some(file),
                ..Place::default()
            },
            message: "the policy file is empty".into(),
            hint: "start from policies/dev.yaml or policies/production.yaml (docs/policies.md describes every field)".into(),
        });
    }
    let options = serde_saphyr::options! {
        // We render errors ourselves, one line each.
        with_snippet: false,
        // `keep: yes` is a string in YAML 1.2 and a bool in 1.1; refuse the ambiguity.
        strict_booleans: true,
    };
    let mut segments: Vec<String> = Vec::new();
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        let mut track = serde_path_to_error::Track::new();
        let result = Policy::deserialize(serde_path_to_error::Deserializer::new(de, &mut track));
        if result.is_err() {
            segments = track
                .path()
                .iter()
                .filter_map(|segment| match segment {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                    serde_path_to_error::Segment::Seq { index } => Some(format!("[{index}]")),
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
        }
        result
    });
    let mut policy = parsed.map_err(|err| parse_error(&file, text, &err, &segments))?;
    policy.file = file;
    policy.locations = FieldLocations::index(text);
    if let Some(first) = check_rules(&policy).into_iter().next() {
        return Err(first);
    }
    Ok(policy)
}

/// Joins path segments as `a.b[2].c`.
fn join_path(segments: &[String]) -> String {
    let mut out = String::new();
    for segment in segments {
        if !out.is_empty() && !segment.starts_with('[') {
            out.push('.');
        }
        out.push_str(segment);
    }
    out
}

/// Turns a YAML/serde error into a located [`PolicyError`] with a fix.
fn parse_error(
    file: &Path,
    text: &str,
    err: &serde_saphyr::Error,
    segments: &[String],
) -> PolicyError {
    let bare = err.without_snippet();
    let (mut line, mut column) = match bare.location() {
        Some(at) if at.line() > 0 => (
            Some(to_u32(at.line())),
            Some(to_u32(at.column())).filter(|c| *c > 0),
        ),
        _ => (None, None),
    };
    let raw = match bare {
        serde_saphyr::Error::Message { msg, .. } => msg.clone(),
        other => serde_saphyr::UserMessageFormatter
            .format_message(other)
            .into_owned(),
    };
    // The parser's "invalid u32" / "invalid i64" speak Rust; say them in the policy's terms.
    let names_int_type = |prefix: &str| {
        raw.strip_prefix(prefix)
            .is_some_and(|bits| !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit()))
    };
    let (message, own_hint) = match raw.split_once(HINT_SEPARATOR) {
        Some((message, hint)) => (message.to_owned(), Some(hint.to_owned())),
        None if names_int_type("invalid u") => ("not a whole number of 0 or more".into(), None),
        None if names_int_type("invalid i") => ("not a whole number".into(), None),
        None => (raw.clone(), None),
    };
    let path = join_path(segments);
    let mut field = Some(path.clone()).filter(|p| !p.is_empty());
    let hint = if let Some(hint) = own_hint {
        hint
    } else if message.starts_with("unknown field") {
        // The path ends with the unknown key itself; the place is the map it sits in.
        field = Some(join_path(&segments[..segments.len().saturating_sub(1)]))
            .filter(|p| !p.is_empty());
        "check the spelling and the indentation; docs/policies.md lists every field".into()
    } else if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        match &field {
            Some(parent) => {
                // The parser points past the last key it read; the section's own key is where
                // the missing field belongs.
                if let Some((parent_line, parent_column)) = FieldLocations::index(text).get(parent)
                {
                    (line, column) = (Some(parent_line), Some(parent_column));
                }
                format!("add `{missing}:` under `{parent}` ({SEE_DOCS})")
            }
            None => format!("add `{missing}:` at the top level ({SEE_DOCS})"),
        }
    } else if message.contains("duplicate") {
        "remove one of the two; every key appears once per section".into()
    } else {
        hint_for_field(&path)
    };
    PolicyError::Invalid {
        place: Place {
            file: Some(file.to_owned()),
            line,
            column,
            field,
        },
        message,
        hint,
    }
}

/// The accepted form of a field, for type errors that come without a hint of their own.
fn hint_for_field(path: &str) -> String {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    match leaf {
        "rpo" | "rto" | "seal_interval" | "ttl" | "interval" | "pitr_window" => {
            DURATION_FORMS.into()
        }
        "max_segment_bytes" => SIZE_FORMS.into(),
        "zstd_level" => "write a whole number from 1 to 19 (default 3)".into(),
        "parallelism" => "write a whole number from 1 to 64 (default 4)".into(),
        "keep_daily" | "keep_weekly" | "keep_monthly" => {
            "write a whole number of snapshots, 0 or more".into()
        }
        "keep" => "write true or false".into(),
        "version" => "write `version: 1`".into(),
        "schedule" => CRON_FORMS.into(),
        "uri" | "redis_url" | "scratch_uri" => SECRET_FORMS.into(),
        "keyring" => KEYRING_FORMS.into(),
        "url" => REPO_URL_FORMS.into(),
        "bootstrap_servers" => BOOTSTRAP_FORMS.into(),
        "groups" => GROUP_FORMS.into(),
        "listen" => "write an IP address and a port, e.g. 127.0.0.1:9187".into(),
        "spool_dir" | "file" => "write a directory or file path".into(),
        "env" => "write an environment variable name, e.g. MC_MONGODB_URI".into(),
        "name" | "id" => "write a short lower-case name like rs0".into(),
        "" => format!("a policy is a YAML mapping of sections; {SEE_DOCS}"),
        section @ ("source" | "mongodb" | "repository" | "objectives" | "capture" | "snapshots"
        | "retention" | "lease" | "http" | "kafka" | "drills") => {
            format!("`{section}` is a section: a mapping of fields indented under it; {SEE_DOCS}")
        }
        _ => "docs/policies.md gives the form of every field".into(),
    }
}

/// The rules between fields. Every broken rule is returned, first found first.
fn check_rules(policy: &Policy) -> Vec<PolicyError> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: String, hint: String| {
        errors.push(PolicyError::Invalid {
            place: policy.place_of(field),
            message,
            hint,
        });
    };

    let rpo = policy.objectives.rpo;
    let seal = policy.capture.seal_interval;
    if seal >= rpo {
        // Point at whichever of the two the user wrote (seal_interval has a default).
        let field = if policy.locations.get("capture.seal_interval").is_some() {
            "capture.seal_interval"
        } else {
            "objectives.rpo"
        };
        fail(
            field,
            format!(
                "seal_interval {} is not below the rpo {}",
                format_duration(seal),
                format_duration(rpo)
            ),
            "entries wait up to seal_interval before they are stored, so it must be well below the rpo; the default 2s suits an rpo of minutes".into(),
        );
    }

    if let Some(kafka) = &policy.kafka {
        if kafka.interval >= rpo {
            fail(
                "kafka.interval",
                format!(
                    "kafka interval {} is not below the rpo {}",
                    format_duration(kafka.interval),
                    format_duration(rpo)
                ),
                "offsets read less often than the rpo could not be restored to within it; the default is 5s".into(),
            );
        }
        if let Some(security) = &kafka.security {
            check_kafka_security(security, &mut fail);
        }
    }

    if policy
        .drills
        .as_ref()
        .is_some_and(|d| d.restore_users_and_roles)
        && !policy.snapshots.include_users_and_roles
    {
        fail(
            "drills.restore_users_and_roles",
            "drills restore users and roles, but snapshots do not capture them".into(),
            "set `include_users_and_roles: true` under `snapshots` (snapshots then copy admin.system.users and admin.system.roles with their hashed credentials), or drop restore_users_and_roles".into(),
        );
    }

    let retention = &policy.retention;
    if retention.keep_daily == 0
        && retention.keep_weekly == 0
        && retention.keep_monthly == 0
        && retention.pitr_window.is_none()
    {
        fail(
            "retention",
            "keeps nothing: every keep_* is 0 and there is no pitr_window".into(),
            "set keep_daily, keep_weekly or keep_monthly above 0, or a pitr_window such as 7d"
                .into(),
        );
    }

    errors
}

/// The rules of `kafka.security` a schema cannot say (`mc_core::kafka::SecurityShape`, shared
/// with `mc-restore`'s flags): SASL settings exactly with the `sasl_*` protocols, TLS files only
/// with the `ssl` ones, a client certificate with its key.
fn check_kafka_security(
    security: &super::schema::KafkaSecuritySettings,
    fail: &mut impl FnMut(&str, String, String),
) {
    let tls = security.tls.as_ref();
    let shape = crate::kafka::SecurityShape {
        protocol: security.protocol,
        sasl: security.sasl.is_some(),
        // An empty `tls:` too: it says TLS was meant.
        tls: tls.is_some(),
        cert: tls.is_some_and(|t| t.cert_file.is_some()),
        key: tls.is_some_and(|t| t.key_file.is_some()),
    };
    for rule in shape.broken_rules() {
        let (field, message, hint) = kafka_rule_in_policy_terms(rule, security.protocol);
        fail(field, message, hint);
    }
}

/// A broken `kafka.security` rule as the policy says it: (field, message, hint).
pub(super) fn kafka_rule_in_policy_terms(
    rule: crate::kafka::SecurityRule,
    protocol: crate::kafka::SecurityProtocol,
) -> (&'static str, String, String) {
    use crate::kafka::SecurityRule;
    let name = protocol.as_librdkafka();
    match rule {
        SecurityRule::SaslMissing => (
            "kafka.security.protocol",
            format!("protocol {name} needs a `sasl:` section"),
            "add `sasl: { mechanism: SCRAM-SHA-512, username: NAME, password: { env: VARIABLE } }`, or use protocol ssl/plaintext".into(),
        ),
        SecurityRule::SaslUnused => (
            "kafka.security.sasl",
            format!("`sasl:` is set but protocol {name} does not use SASL"),
            "use protocol sasl_ssl (or sasl_plaintext on a trusted network), or remove `sasl:`".into(),
        ),
        SecurityRule::TlsUnused => (
            "kafka.security.tls",
            format!("`tls:` is set but protocol {name} does not use TLS"),
            "use protocol ssl or sasl_ssl, or remove `tls:`".into(),
        ),
        SecurityRule::CertKeyUnpaired => (
            "kafka.security.tls",
            "cert_file and key_file go together".into(),
            "set both (the client certificate and its private key), or neither".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_like_the_docs_write_them() {
        let segments: Vec<String> = ["kafka", "groups", "[1]"].map(String::from).into();
        assert_eq!(join_path(&segments), "kafka.groups[1]");
        assert_eq!(join_path(&[]), "");
    }
}
