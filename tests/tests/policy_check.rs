//! `mc-agent check --policy FILE` as an operator runs it: the shipped dev policy passes once its
//! keyring and environment exist, and broken policies or environments fail with exit code 1
//! and file:line in the message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mc_tests::workspace_bin;

/// policies/dev.yaml in the source tree.
fn dev_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/dev.yaml")
}

/// Runs `mc-agent check --policy <policy>` in `dir` with only the given MC_* variables set.
fn check(dir: &Path, policy: &Path, vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(workspace_bin("mc-agent"));
    command
        .current_dir(dir)
        .args(["check", "--policy"])
        .arg(policy)
        .env_remove("MC_MONGODB_URI")
        .env_remove("MC_REDIS_URL");
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().expect("run mc-agent check")
}

/// A working directory holding what dev.yaml refers to by relative path: .work/demo/keyring.
fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let keyring = dir.path().join(".work/demo/keyring");
    std::fs::create_dir_all(keyring.parent().expect("has a parent")).expect("mkdir");
    mc_core::crypto::keys::create_keyring_file(&keyring).expect("create keyring");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_dev_policy_passes_with_its_keyring_and_environment() {
    let dir = demo_dir();
    let out = check(
        dir.path(),
        &dev_policy(),
        &[(
            "MC_MONGODB_URI",
            "mongodb://backup:s3cret-pw@127.0.0.1:27017/?replicaSet=rs0",
        )],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout.contains("dev.yaml is valid: name mindcompute-dev, source rs0, repository .work/demo/repo, rpo 15m, rto 4h"),
        "{stdout}"
    );
    assert!(stdout.contains("snapshots \"0 */5 * * * *\""), "{stdout}");
    assert!(
        !stdout.contains("s3cret") && !text(&out.stderr).contains("s3cret"),
        "{out:?}"
    );
}

#[test]
fn a_missing_variable_fails_with_the_field_and_the_fix() {
    let dir = demo_dir();
    let out = check(dir.path(), &dev_policy(), &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("dev.yaml:")
            && stderr.contains("source.mongodb.uri: environment variable MC_MONGODB_URI is not set; export MC_MONGODB_URI=…"),
        "{stderr}"
    );
}

#[test]
fn a_broken_policy_fails_with_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dev = std::fs::read_to_string(dev_policy()).expect("read dev.yaml");
    // A typo in a section name, on a line we can predict.
    let bad = dev.replacen("\nretention:\n", "\nretnetion:\n", 1);
    assert_ne!(bad, dev, "dev.yaml has a retention section");
    let line = bad
        .lines()
        .position(|l| l == "retnetion:")
        .expect("typo present")
        + 1;
    let policy = dir.path().join("bad.yaml");
    std::fs::write(&policy, bad).expect("write bad.yaml");

    let out = check(dir.path(), &policy, &[("MC_MONGODB_URI", "mongodb://x/")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("bad.yaml:{line}:1: unknown field `retnetion`")),
        "{stderr}"
    );
    assert!(stderr.contains("check the spelling"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn an_inline_secret_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dev = std::fs::read_to_string(dev_policy()).expect("read dev.yaml");
    let bad = dev.replacen(
        "uri: { env: MC_MONGODB_URI }",
        "uri: mongodb://admin:s3cret-pw@db/",
        1,
    );
    assert_ne!(bad, dev);
    let policy = dir.path().join("inline.yaml");
    std::fs::write(&policy, bad).expect("write inline.yaml");

    let out = check(dir.path(), &policy, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("inline.yaml:")
            && stderr.contains("source.mongodb.uri: an inline value is not allowed here"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
