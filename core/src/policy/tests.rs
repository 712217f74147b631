//! Tests of policy files: the shipped examples, bad policies and their messages, secrets and the
//! environment check.

use std::time::Duration;

use super::*;
use crate::crypto::KeyringSource;
use crate::storage::RepoUrl;

const DEV: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/dev.yaml"));
const PRODUCTION: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/production.yaml"
));

/// The name bad policies are given in messages.
const FILE: &str = "policies/test.yaml";

/// A small valid policy; the bad policies below are edits of it, so line numbers are known:
/// 1 version, 4 id, 6 uri, 8 url, 9 keyring, 11 rpo, 12 rto, 14 schedule, 15 retention.
const BASE: &str = "\
version: 1
name: test-policy
source:
  id: rs0
  mongodb:
    uri: { env: MC_MONGODB_URI }
repository:
  url: /tmp/mc-policy-test/repo
  keyring: { file: /tmp/mc-policy-test/keyring }
objectives:
  rpo: 15m
  rto: 4h
snapshots:
  schedule: \"0 0 2 * * *\"
retention:
  keep_daily: 7
";

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::from_yaml(text, FILE)
}

#[test]
fn the_base_policy_is_valid_and_gets_the_defaults() {
    let policy = parse(BASE).unwrap();
    assert_eq!(policy.source.id, "rs0");
    assert_eq!(policy.capture.seal_interval, Duration::from_secs(2));
    assert_eq!(policy.capture.max_segment_bytes, 16 << 20);
    assert_eq!(policy.capture.zstd_level, 3);
    assert_eq!(policy.snapshots.parallelism, 4);
    assert_eq!(policy.http.listen.to_string(), "127.0.0.1:9187");
    assert!(policy.lease.is_none() && policy.kafka.is_none() && policy.drills.is_none());
    assert_eq!(policy.retention.pitr_window, None);
    assert!(policy.spool_dir().ends_with("mc-backup/test-policy/spool"));
    assert_eq!(policy.place_of("objectives.rto").line, Some(12));
}

#[test]
fn users_and_roles_are_opt_in_and_incomplete_snapshots_get_a_day() {
    let policy = parse(BASE).unwrap();
    assert!(!policy.snapshots.include_users_and_roles);
    assert_eq!(
        policy.retention.incomplete_snapshot_grace,
        Duration::from_secs(86400)
    );
    let text = BASE
        .replace(
            "schedule: \"0 0 2 * * *\"\n",
            "schedule: \"0 0 2 * * *\"\n  include_users_and_roles: true\n",
        )
        .replace(
            "keep_daily: 7\n",
            "keep_daily: 7\n  incomplete_snapshot_grace: 6h\n",
        );
    let policy = parse(&text).unwrap();
    assert!(policy.snapshots.include_users_and_roles);
    assert_eq!(
        policy.retention.incomplete_snapshot_grace,
        Duration::from_secs(6 * 3600)
    );
}

#[test]
fn drills_restore_users_and_roles_only_when_asked_and_captured() {
    let drills = "drills:\n  schedule: \"0 0 3 * * Sun\"\n  scratch_uri: { env: S }\n";
    let policy = parse(&format!("{BASE}{drills}")).unwrap();
    assert!(!policy.drills.unwrap().restore_users_and_roles);
    let text = format!("{BASE}{drills}  restore_users_and_roles: true\n").replace(
        "schedule: \"0 0 2 * * *\"\n",
        "schedule: \"0 0 2 * * *\"\n  include_users_and_roles: true\n",
    );
    let policy = parse(&text).unwrap();
    assert!(policy.drills.unwrap().restore_users_and_roles);
}

#[test]
fn the_dev_example_parses_and_validates() {
    let policy = parse(DEV).unwrap();
    assert_eq!(policy.name, "mindcompute-dev");
    assert_eq!(policy.source.id, "rs0");
    assert_eq!(
        policy.source.mongodb.uri,
        SecretRef::Env("MC_MONGODB_URI".into())
    );
    assert_eq!(
        policy.repository.url,
        RepoUrlSource::Inline(RepoUrl::Local(".work/demo/repo".into()))
    );
    assert_eq!(
        policy.repository.keyring,
        KeyringSource::File(".work/demo/keyring".into())
    );
    assert_eq!(policy.capture.seal_interval, Duration::from_secs(1));
    assert_eq!(policy.snapshots.schedule.expression(), "0 */5 * * * *");
    assert!(policy.lease.is_none());
    assert_eq!(policy.objectives.rpo, Duration::from_secs(15 * 60));
    assert_eq!(policy.objectives.rto, Duration::from_secs(4 * 3600));
}

#[test]
fn the_production_example_parses_and_validates() {
    let policy = parse(PRODUCTION).unwrap();
    assert_eq!(policy.name, "mindcompute-prod");
    let RepoUrlSource::Inline(RepoUrl::S3(s3)) = &policy.repository.url else {
        panic!("production writes to S3: {:?}", policy.repository.url);
    };
    assert_eq!(
        (s3.bucket.as_str(), s3.prefix.as_str()),
        ("mindcompute-backups", "mongodb/prod")
    );
    assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
    let lock = s3.object_lock.as_ref().expect("object lock");
    assert_eq!(lock.retain_for, Duration::from_secs(35 * 86400));
    assert!(matches!(policy.repository.keyring, KeyringSource::File(_)));
    let lease = policy.lease.as_ref().expect("lease");
    assert_eq!(lease.redis_url, SecretRef::Env("MC_REDIS_URL".into()));
    assert_eq!(lease.ttl, Duration::from_secs(10));
    assert_eq!(policy.capture.seal_interval, Duration::from_secs(2));
    assert_eq!(policy.snapshots.schedule.expression(), "0 0 2 * * *");
    let retention = &policy.retention;
    assert_eq!(
        (
            retention.keep_daily,
            retention.keep_weekly,
            retention.keep_monthly
        ),
        (7, 4, 6)
    );
    assert_eq!(retention.pitr_window, Some(Duration::from_secs(7 * 86400)));
    let kafka = policy.kafka.as_ref().expect("kafka");
    assert_eq!(kafka.groups, ["orders-*", "interviews-*"]);
    assert_eq!(
        kafka.bootstrap_servers,
        BootstrapServers::Reference(SecretRef::Env("MC_KAFKA_BOOTSTRAP".into()))
    );
    let drills = policy.drills.as_ref().expect("drills");
    assert!(matches!(drills.scratch_uri, SecretRef::File(_)));
    assert!(!drills.keep);
    // Sunday 03:00 UTC: the drill after Monday 2025-01-06 is on Sunday 2025-01-12.
    let monday = chrono::DateTime::parse_from_rfc3339("2025-01-06T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        drills.schedule.next_after(monday).unwrap().to_rfc3339(),
        "2025-01-12T03:00:00+00:00"
    );
}

/// One bad policy: how to make it from [`BASE`], and what its error must say.
struct BadCase {
    what: &'static str,
    /// `(from, to)` replaced once in BASE, or `("", text)` appended.
    edit: (&'static str, &'static str),
    line: u32,
    field: Option<&'static str>,
    message: &'static str,
    hint: &'static str,
}

fn apply(edit: (&str, &str)) -> String {
    let (from, to) = edit;
    if from.is_empty() {
        return format!("{BASE}{to}");
    }
    assert!(BASE.contains(from), "{from:?} is not in BASE");
    BASE.replacen(from, to, 1)
}

#[test]
fn bad_policies_say_where_and_how_to_fix() {
    let cases = [
        BadCase {
            what: "misspelt section",
            edit: ("", "retnetion:\n  keep_weekly: 1\n"),
            line: 17,
            field: None,
            message: "unknown field `retnetion`, expected one of",
            hint: "check the spelling",
        },
        BadCase {
            what: "misspelt field",
            edit: ("  rto: 4h\n", "  rto: 4h\n  rtoo: 1h\n"),
            line: 13,
            field: Some("objectives"),
            message: "unknown field `rtoo`",
            hint: "check the spelling",
        },
        BadCase {
            what: "duration in words",
            edit: ("rpo: 15m", "rpo: 15 minutes"),
            line: 11,
            field: Some("objectives.rpo"),
            message: "`15 minutes` is not a duration",
            hint: "15m, 4h, 7d, or combined from the largest unit down like 1h30m",
        },
        BadCase {
            what: "duration without unit",
            edit: ("rto: 4h", "rto: 4"),
            line: 12,
            field: Some("objectives.rto"),
            message: "`4` has no unit",
            hint: "30s",
        },
        BadCase {
            what: "zero duration",
            edit: ("rpo: 15m", "rpo: 0s"),
            line: 11,
            field: Some("objectives.rpo"),
            message: "above zero",
            hint: "15m",
        },
        BadCase {
            what: "cron out of range",
            edit: ("\"0 0 2 * * *\"", "\"0 0 25 * * *\""),
            line: 14,
            field: Some("snapshots.schedule"),
            message: "`0 0 25 * * *` is not a valid schedule: Hours",
            hint: "e.g. \"0 0 2 * * *\" for 02:00 daily",
        },
        BadCase {
            what: "five-field crontab",
            edit: ("\"0 0 2 * * *\"", "\"*/5 * * * *\""),
            line: 14,
            field: Some("snapshots.schedule"),
            message: "has 5 fields, not 6 or 7",
            hint: "sec min hour",
        },
        BadCase {
            what: "seal interval not below rpo",
            edit: ("", "capture:\n  seal_interval: 15m\n"),
            line: 18,
            field: Some("capture.seal_interval"),
            message: "seal_interval 15m is not below the rpo 15m",
            hint: "well below the rpo",
        },
        BadCase {
            what: "rpo under the default seal interval",
            edit: ("rpo: 15m", "rpo: 1s"),
            line: 11,
            field: Some("objectives.rpo"),
            message: "seal_interval 2s is not below the rpo 1s",
            hint: "below the rpo",
        },
        BadCase {
            what: "zstd level out of range",
            edit: ("", "capture:\n  zstd_level: 22\n"),
            line: 18,
            field: Some("capture.zstd_level"),
            message: "level 22 is outside 1..=19",
            hint: "1 (fastest) to 19",
        },
        BadCase {
            what: "zstd level as text",
            edit: ("", "capture:\n  zstd_level: fast\n"),
            line: 18,
            field: Some("capture.zstd_level"),
            message: ": not a whole number;",
            hint: "whole number from 1 to 19",
        },
        BadCase {
            what: "size with a space",
            edit: ("", "capture:\n  max_segment_bytes: 16 MiB\n"),
            line: 18,
            field: Some("capture.max_segment_bytes"),
            message: "unknown unit ` MiB`",
            hint: "16MiB",
        },
        BadCase {
            what: "tiny segments",
            edit: ("", "capture:\n  max_segment_bytes: 16\n"),
            line: 18,
            field: Some("capture.max_segment_bytes"),
            message: "16 bytes is outside 64KiB..=1GiB",
            hint: "16MiB",
        },
        BadCase {
            what: "retention keeps nothing",
            edit: ("keep_daily: 7", "keep_daily: 0"),
            line: 15,
            field: Some("retention"),
            message: "keeps nothing",
            hint: "pitr_window",
        },
        BadCase {
            what: "negative count",
            edit: ("keep_daily: 7", "keep_daily: -1"),
            line: 16,
            field: Some("retention.keep_daily"),
            message: "not a whole number of 0 or more",
            hint: "whole number of snapshots",
        },
        BadCase {
            what: "invalid source id",
            edit: ("id: rs0", "id: RS/0"),
            line: 4,
            field: Some("source.id"),
            message: "`RS/0` is not a valid source id",
            hint: "a-z, 0-9",
        },
        BadCase {
            what: "bad repository URL",
            edit: ("url: /tmp/mc-policy-test/repo", "url: s3://Bad_Bucket/x"),
            line: 8,
            field: Some("repository.url"),
            message: "invalid repository URL",
            hint: "s3://bucket/prefix",
        },
        BadCase {
            what: "inline keyring path",
            edit: (
                "keyring: { file: /tmp/mc-policy-test/keyring }",
                "keyring: /tmp/keyring",
            ),
            line: 9,
            field: Some("repository.keyring"),
            message: "by reference, never inline",
            hint: "{ file: /etc/mc-backup/keyring }",
        },
        BadCase {
            what: "secret reference with both keys",
            edit: (
                "{ env: MC_MONGODB_URI }",
                "{ env: MC_MONGODB_URI, file: /x }",
            ),
            line: 6,
            field: Some("source.mongodb.uri"),
            message: "`file` given beside `env`",
            hint: "exactly one key",
        },
        BadCase {
            what: "secret reference with an unknown key",
            edit: ("{ env: MC_MONGODB_URI }", "{ vault: x }"),
            line: 6,
            field: Some("source.mongodb.uri"),
            message: "unknown field `vault`, expected `env` or `file`",
            hint: "{ file: /path/to/secret }",
        },
        BadCase {
            what: "bad variable name",
            edit: ("{ env: MC_MONGODB_URI }", "{ env: \"$MC_MONGODB_URI\" }"),
            line: 6,
            field: Some("source.mongodb.uri"),
            message: "is not an environment variable name",
            hint: "{ env: MC_MONGODB_URI }",
        },
        BadCase {
            what: "unsupported version",
            edit: ("version: 1", "version: 2"),
            line: 1,
            field: Some("version"),
            message: "policy version 2 is not supported",
            hint: "version: 1",
        },
        BadCase {
            what: "bad name",
            edit: ("name: test-policy", "name: Test_Policy"),
            line: 2,
            field: Some("name"),
            message: "`Test_Policy` is not a valid policy name",
            hint: "lower-case",
        },
        BadCase {
            what: "missing field",
            edit: ("  rto: 4h\n", ""),
            line: 10,
            field: Some("objectives"),
            message: "missing field `rto`",
            hint: "add `rto:` under `objectives`",
        },
        BadCase {
            what: "missing section",
            edit: ("snapshots:\n  schedule: \"0 0 2 * * *\"\n", ""),
            // The end of the mapping (where the parser noticed), i.e. the last key.
            line: 13,
            field: None,
            message: "missing field `snapshots`",
            hint: "add `snapshots:` at the top level",
        },
        BadCase {
            what: "duplicate key",
            edit: ("", "name: again\n"),
            line: 17,
            field: None,
            message: "duplicate",
            hint: "remove one of the two",
        },
        BadCase {
            what: "section written as a value",
            edit: ("", "capture: 2s\n"),
            line: 17,
            field: Some("capture"),
            message: "",
            hint: "`capture` is a section",
        },
        BadCase {
            what: "bad listen address",
            edit: ("", "http:\n  listen: localhost\n"),
            line: 18,
            field: Some("http.listen"),
            message: "`localhost` is not an address:port",
            hint: "127.0.0.1:9187",
        },
        BadCase {
            what: "zero lease ttl",
            edit: (
                "",
                "lease:\n  redis_url: { env: MC_REDIS_URL }\n  ttl: 0s\n",
            ),
            line: 19,
            field: Some("lease.ttl"),
            message: "above zero",
            hint: "30s",
        },
        BadCase {
            what: "inline redis URL",
            edit: ("", "lease:\n  redis_url: redis://:pw@redis:6379\n"),
            line: 18,
            field: Some("lease.redis_url"),
            message: "an inline value is not allowed here",
            hint: "{ env: VARIABLE }",
        },
        BadCase {
            what: "broker list as one string",
            edit: ("", "kafka:\n  bootstrap_servers: kafka:9092\n"),
            line: 18,
            field: Some("kafka.bootstrap_servers"),
            message: "a single string is not a broker list",
            hint: "[\"kafka-0:9092\"",
        },
        BadCase {
            what: "broker without port",
            edit: ("", "kafka:\n  bootstrap_servers: [kafka]\n"),
            line: 18,
            field: Some("kafka.bootstrap_servers"),
            message: "`kafka` is not host:port",
            hint: "kafka-0:9092",
        },
        BadCase {
            what: "kafka interval not below rpo",
            edit: (
                "",
                "kafka:\n  bootstrap_servers: [\"k:9092\"]\n  interval: 1h\n",
            ),
            line: 19,
            field: Some("kafka.interval"),
            message: "kafka interval 1h is not below the rpo 15m",
            hint: "5s",
        },
        BadCase {
            what: "sasl protocol without sasl",
            edit: (
                "",
                "kafka:\n  bootstrap_servers: [\"k:9092\"]\n  security:\n    protocol: sasl_ssl\n",
            ),
            line: 20,
            field: Some("kafka.security.protocol"),
            message: "protocol sasl_ssl needs a `sasl:` section",
            hint: "mechanism: SCRAM-SHA-512",
        },
        BadCase {
            what: "sasl with a protocol without it",
            edit: (
                "",
                "kafka:\n  bootstrap_servers: [\"k:9092\"]\n  security:\n    protocol: ssl\n    sasl:\n      mechanism: PLAIN\n      username: u\n      password: { env: P }\n",
            ),
            line: 21,
            field: Some("kafka.security.sasl"),
            message: "protocol ssl does not use SASL",
            hint: "sasl_ssl",
        },
        BadCase {
            what: "tls files with plaintext",
            edit: (
                "",
                "kafka:\n  bootstrap_servers: [\"k:9092\"]\n  security:\n    protocol: plaintext\n    tls:\n      ca_file: /ca.pem\n",
            ),
            line: 21,
            field: Some("kafka.security.tls"),
            message: "protocol plaintext does not use TLS",
            hint: "ssl or sasl_ssl",
        },
        BadCase {
            what: "client certificate without its key",
            edit: (
                "",
                "kafka:\n  bootstrap_servers: [\"k:9092\"]\n  security:\n    protocol: ssl\n    tls:\n      cert_file: /c.pem\n",
            ),
            line: 21,
            field: Some("kafka.security.tls"),
            message: "cert_file and key_file go together",
            hint: "set both",
        },
        BadCase {
            what: "unknown sasl mechanism",
            edit: (
                "",
                "kafka:\n  bootstrap_servers: [\"k:9092\"]\n  security:\n    protocol: sasl_ssl\n    sasl:\n      mechanism: GSSAPI\n      username: u\n      password: { env: P }\n",
            ),
            line: 22,
            field: Some("kafka.security.sasl.mechanism"),
            message: "GSSAPI",
            hint: "",
        },
        BadCase {
            what: "inline kafka password",
            edit: (
                "",
                "kafka:\n  bootstrap_servers: [\"k:9092\"]\n  security:\n    protocol: sasl_ssl\n    sasl:\n      mechanism: PLAIN\n      username: u\n      password: hunter2\n",
            ),
            line: 24,
            field: Some("kafka.security.sasl.password"),
            message: "an inline value is not allowed here",
            hint: "{ env: VARIABLE }",
        },
        BadCase {
            what: "empty group list",
            edit: (
                "",
                "kafka:\n  bootstrap_servers: [\"k:9092\"]\n  groups: []\n",
            ),
            line: 19,
            field: Some("kafka.groups"),
            message: "the group list is empty",
            hint: "orders-*",
        },
        BadCase {
            what: "users and roles asked for with yes",
            edit: (
                "schedule: \"0 0 2 * * *\"\n",
                "schedule: \"0 0 2 * * *\"\n  include_users_and_roles: yes\n",
            ),
            line: 15,
            field: Some("snapshots.include_users_and_roles"),
            message: "",
            hint: "true or false",
        },
        BadCase {
            what: "no grace for incomplete snapshots",
            edit: (
                "keep_daily: 7\n",
                "keep_daily: 7\n  incomplete_snapshot_grace: 0s\n",
            ),
            line: 17,
            field: Some("retention.incomplete_snapshot_grace"),
            message: "the duration must be above zero",
            hint: "500ms",
        },
        BadCase {
            what: "yes is not a boolean",
            edit: (
                "",
                "drills:\n  schedule: \"0 0 3 * * Sun\"\n  scratch_uri: { env: S }\n  keep: yes\n",
            ),
            line: 20,
            field: Some("drills.keep"),
            message: "",
            hint: "true or false",
        },
        BadCase {
            what: "drills restore users and roles with yes",
            edit: (
                "",
                "drills:\n  schedule: \"0 0 3 * * Sun\"\n  scratch_uri: { env: S }\n  restore_users_and_roles: yes\n",
            ),
            line: 20,
            field: Some("drills.restore_users_and_roles"),
            message: "",
            hint: "true or false",
        },
        BadCase {
            what: "drills restore users and roles no snapshot captures",
            edit: (
                "",
                "drills:\n  schedule: \"0 0 3 * * Sun\"\n  scratch_uri: { env: S }\n  restore_users_and_roles: true\n",
            ),
            line: 20,
            field: Some("drills.restore_users_and_roles"),
            message: "drills restore users and roles, but snapshots do not capture them",
            hint: "include_users_and_roles: true",
        },
        BadCase {
            what: "unknown drill field",
            edit: (
                "",
                "drills:\n  schedule: \"0 0 3 * * Sun\"\n  scratch_uri: { env: S }\n  rto: 1h\n",
            ),
            line: 20,
            field: Some("drills"),
            message: "unknown field `rto`",
            hint: "check the spelling",
        },
        BadCase {
            what: "unclosed flow sequence",
            edit: ("", "kafka:\n  bootstrap_servers: [\"k:9092\"\n"),
            line: 18,
            field: Some("kafka.bootstrap_servers"),
            message: "unclosed bracket '['",
            hint: "write a list like",
        },
    ];
    for case in cases {
        let text = apply(case.edit);
        let err = match parse(&text) {
            Ok(_) => panic!("{}: accepted:\n{text}", case.what),
            Err(err) => err,
        };
        let shown = err.to_string();
        let context = format!("{}: {shown}\n{text}", case.what);
        assert!(
            shown.starts_with(&format!("{FILE}:{}:", case.line)),
            "wrong file:line; {context}"
        );
        let place = err.place().expect("parse errors have a place");
        assert_eq!(place.line, Some(case.line), "{context}");
        assert_eq!(place.field.as_deref(), case.field, "{context}");
        if let Some(field) = case.field {
            assert!(shown.contains(&format!(": {field}: ")), "{context}");
        }
        assert!(shown.contains(case.message), "message; {context}");
        assert!(shown.contains(case.hint), "hint; {context}");
        assert_eq!(shown.lines().count(), 1, "one line; {context}");
        let PolicyError::Invalid { hint, .. } = &err else {
            panic!("{context}");
        };
        assert!(!hint.is_empty(), "every error has a fix; {context}");
    }
}

#[test]
fn unknown_top_level_key_looks_like_the_example() {
    let text = apply(("", "retnetion:\n  keep_daily: 1\n"));
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "policies/test.yaml:17:1: unknown field `retnetion`, expected one of version, name"
        ),
        "{err}"
    );
}

#[test]
fn inline_secrets_are_refused_without_echoing_them() {
    let text = apply((
        "uri: { env: MC_MONGODB_URI }",
        "uri: \"mongodb://admin:hunter2@db:27017/?replicaSet=rs0\"",
    ));
    let err = parse(&text).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("policies/test.yaml:6:10: source.mongodb.uri: an inline value is not allowed here because it could carry a password; write `{ env: VARIABLE }`"),
        "{shown}"
    );
    assert!(shown.contains("{ file: /path/to/secret }"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[test]
fn the_environment_check_resolves_every_reference() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring");
    crate::crypto::keys::create_keyring_file(&keyring).unwrap();
    let scratch = dir.path().join("scratch-uri");
    std::fs::write(&scratch, "mongodb://drill:s3cret-scratch@scratch/\n").unwrap();
    // Variable names unique to this test: tests run in parallel in one process.
    std::env::set_var(
        "MC_POLICY_TEST_ENV_OK_URI",
        "mongodb://backup:s3cret-uri@db/?replicaSet=rs0",
    );
    std::env::set_var(
        "MC_POLICY_TEST_ENV_OK_REPO",
        "s3://bucket/prefix?region=eu-west-1",
    );
    std::env::set_var(
        "MC_POLICY_TEST_ENV_OK_REDIS",
        "redis://:s3cret-redis@r:6379/",
    );
    std::env::set_var("MC_POLICY_TEST_ENV_OK_KAFKA", "k0:9092, k1:9092");
    let text = format!(
        "version: 1
name: env-check
source:
  id: rs0
  mongodb:
    uri: {{ env: MC_POLICY_TEST_ENV_OK_URI }}
repository:
  url: {{ env: MC_POLICY_TEST_ENV_OK_REPO }}
  keyring: {{ file: {keyring} }}
objectives: {{ rpo: 15m, rto: 4h }}
snapshots: {{ schedule: \"0 0 2 * * *\" }}
retention: {{ pitr_window: 7d }}
lease: {{ redis_url: {{ env: MC_POLICY_TEST_ENV_OK_REDIS }} }}
kafka: {{ bootstrap_servers: {{ env: MC_POLICY_TEST_ENV_OK_KAFKA }} }}
drills: {{ schedule: \"0 0 3 * * Sun\", scratch_uri: {{ file: {scratch} }} }}
",
        keyring = keyring.display(),
        scratch = scratch.display()
    );
    let policy = parse(&text).unwrap();
    policy.check_environment().unwrap();
    assert_eq!(
        policy.repository_url().unwrap().to_string(),
        "s3://bucket/prefix?region=eu-west-1"
    );
    assert_eq!(
        policy.kafka_bootstrap_servers().unwrap().unwrap(),
        ["k0:9092", "k1:9092"]
    );
    let scratch_uri = policy.drill_scratch_uri().unwrap().unwrap();
    assert_eq!(
        scratch_uri.expose(),
        "mongodb://drill:s3cret-scratch@scratch/"
    );
    let uri = policy.mongodb_uri().unwrap();
    assert!(uri.expose().contains("s3cret-uri"));
    for shown in [
        format!("{uri:?}"),
        uri.to_string(),
        format!("{scratch_uri:?}"),
        format!("{:?}", policy.lease_redis_url().unwrap()),
        format!("{policy:?}"),
    ] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}

#[test]
fn a_missing_variable_names_itself_the_field_and_the_fix() {
    let text = BASE.replace("MC_MONGODB_URI", "MC_POLICY_TEST_SURELY_UNSET_URI");
    let policy = parse(&text).unwrap();
    let errors = policy.check_environment().unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        shown.contains(&"policies/test.yaml:6:5: source.mongodb.uri: environment variable MC_POLICY_TEST_SURELY_UNSET_URI is not set; export MC_POLICY_TEST_SURELY_UNSET_URI=… or point `uri` at a file ({ file: /path/to/secret })".to_string()),
        "{shown:#?}"
    );
    // The keyring file does not exist either: every problem is reported, not only the first.
    assert!(
        shown.iter().any(|e| e.starts_with("policies/test.yaml:9:3: repository.keyring: cannot read keyring file /tmp/mc-policy-test/keyring") && e.contains("mc-agent key generate")),
        "{shown:#?}"
    );
}

#[test]
fn resolved_values_of_the_wrong_kind_are_not_shown() {
    std::env::set_var("MC_POLICY_TEST_WRONG_URI", "postgres://u:s3cret-pg@h/db");
    std::env::set_var("MC_POLICY_TEST_WRONG_REPO", "ftp://u:s3cret-ftp@host/x");
    let text = BASE
        .replace("MC_MONGODB_URI", "MC_POLICY_TEST_WRONG_URI")
        .replace(
            "url: /tmp/mc-policy-test/repo",
            "url: { env: MC_POLICY_TEST_WRONG_REPO }",
        );
    let policy = parse(&text).unwrap();
    let uri_err = policy.mongodb_uri().unwrap_err().to_string();
    assert!(
        uri_err.starts_with("policies/test.yaml:6:5: source.mongodb.uri: the value of $MC_POLICY_TEST_WRONG_URI is not a mongodb:// URL"),
        "{uri_err}"
    );
    let repo_err = policy.repository_url().unwrap_err().to_string();
    assert!(
        repo_err.starts_with("policies/test.yaml:8:3: repository.url: the URL in $MC_POLICY_TEST_WRONG_REPO: invalid repository URL"),
        "{repo_err}"
    );
    for shown in [uri_err, repo_err] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}

#[test]
fn secret_debug_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("uri");
    std::fs::write(&path, "mongodb://u:s3cret-file@h/\n").unwrap();
    let secret = SecretRef::File(path).resolve().unwrap();
    assert_eq!(secret.expose(), "mongodb://u:s3cret-file@h/");
    assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    assert!(!format!("{secret:?} {secret}").contains("s3cret"));
}

#[test]
fn load_reads_files_and_names_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, BASE).unwrap();
    let policy = Policy::load(&path).unwrap();
    assert_eq!(policy.file(), path);
    assert_eq!(
        policy.place_of("source.mongodb.uri").to_string(),
        format!("{}:6:5: source.mongodb.uri: ", path.display())
    );

    let err = Policy::load(dir.path().join("nope.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read policy file") && err.contains("nope.yaml"),
        "{err}"
    );

    std::fs::write(&path, "\n# nothing\n").unwrap();
    let err = Policy::load(&path).unwrap_err().to_string();
    assert!(err.contains("the policy file is empty"), "{err}");
}

#[test]
fn kafka_security_reads_the_password_and_checks_the_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "hunter2-kafka\n").unwrap();
    let with = |ca: &std::path::Path| {
        apply((
            "",
            &format!(
                "kafka:\n  bootstrap_servers: [\"k:9092\"]\n  security:\n    protocol: sasl_ssl\n    sasl:\n      mechanism: SCRAM-SHA-256\n      username: mc\n      password: {{ file: {} }}\n    tls:\n      ca_file: {}\n",
                password.display(),
                ca.display()
            ),
        ))
    };
    let policy = parse(&with(&ca)).expect("valid");
    let security = policy.kafka_security().expect("resolves");
    assert_eq!(security.describe(), "sasl_ssl, SCRAM-SHA-256 as mc");
    let sasl = security.sasl.as_ref().unwrap();
    assert_eq!(sasl.password.expose(), "hunter2-kafka");
    assert_eq!(security.ca_file.as_deref(), Some(ca.as_path()));
    assert!(!format!("{security:?}").contains("hunter2"));

    let missing = dir.path().join("no-such-ca.pem");
    let policy = parse(&with(&missing)).expect("valid until resolved");
    let err = policy.kafka_security().unwrap_err().to_string();
    assert!(
        err.contains("kafka.security.tls.ca_file") && err.contains("no-such-ca.pem"),
        "{err}"
    );
    let errors = policy.check_environment().unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("kafka.security.tls.ca_file")),
        "{errors:?}"
    );
    // No kafka section: plaintext.
    let plain = parse(&apply(("", ""))).unwrap().kafka_security().unwrap();
    assert_eq!(plain.describe(), "plaintext");
}
