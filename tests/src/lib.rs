//! Harness for mc-backup's integration tests.
//!
//! The tests talk to real servers started by `scripts/services.sh up`, which prints their
//! addresses with `scripts/services.sh env`. This module reads those `MC_TEST_*` variables (a
//! missing one is a test failure with the fix in the message, never a skip), hands out clients,
//! and gives every test its own resource names so tests run in parallel without sharing state.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub mod agent;
pub mod auth;
pub mod bench;
pub mod kafka;
pub mod mongod;
pub mod restore;
pub mod seaweed;
pub mod workload;
pub mod writer;

/// The hint printed whenever a service variable is missing.
pub const SERVICES_HINT: &str =
    "start the test services and export their addresses: scripts/services.sh up && eval \"$(scripts/services.sh env)\" (or run scripts/test.sh, which does both)";

/// Reads one `MC_TEST_*` variable, or explains how to get it.
pub fn require_var(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        Ok(_) => Err(format!("{name} is set but empty; {SERVICES_HINT}")),
        Err(_) => Err(format!("{name} is not set; {SERVICES_HINT}")),
    }
}

/// Like [`require_var`], failing the calling test when the variable is missing.
#[track_caller]
pub fn var(name: &str) -> String {
    require_var(name).unwrap_or_else(|msg| panic!("{msg}"))
}

/// Connection settings of the S3-compatible server.
#[derive(Clone)]
pub struct S3Env {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for S3Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Env")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

impl S3Env {
    #[track_caller]
    pub fn from_env() -> Self {
        Self {
            endpoint: var("MC_TEST_S3_ENDPOINT"),
            region: var("MC_TEST_S3_REGION"),
            access_key: var("MC_TEST_S3_ACCESS_KEY"),
            secret_key: var("MC_TEST_S3_SECRET_KEY"),
        }
    }
}

/// The MongoDB replica set URI (`mongodb://…/?replicaSet=rs0`).
#[track_caller]
pub fn mongodb_uri() -> String {
    var("MC_TEST_MONGODB_URI")
}

/// Path of the `mongod` binary, for tests that start a mongod of their own (restore targets,
/// tiny-oplog gap tests).
#[track_caller]
pub fn mongod_bin() -> PathBuf {
    PathBuf::from(var("MC_TEST_MONGOD_BIN"))
}

/// `host:port` of the Kafka-protocol broker.
#[track_caller]
pub fn kafka_bootstrap() -> String {
    var("MC_TEST_KAFKA_BOOTSTRAP")
}

/// `redis://127.0.0.1:port/`.
#[track_caller]
pub fn redis_url() -> String {
    var("MC_TEST_REDIS_URL")
}

/// A name no other test (in this run or an earlier one) uses: `<prefix>-<pid>-<n>-<random>`,
/// lower case and short enough for database, bucket, topic and key names alike.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{prefix}-{}-{n}-{random}", std::process::id()).to_lowercase()
}

/// A MongoDB database name for one test (no `-`, which is legal but awkward in shells).
pub fn unique_db(prefix: &str) -> String {
    unique_name(prefix).replace('-', "_")
}

/// A client of the test replica set.
pub async fn mongo_client() -> mongodb::Client {
    let uri = mongodb_uri();
    mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap_or_else(|e| panic!("cannot build a MongoDB client for {uri}: {e}; {SERVICES_HINT}"))
}

/// An S3 client for the test server: custom endpoint, path-style, static test credentials.
pub fn s3_client() -> aws_sdk_s3::Client {
    let env = S3Env::from_env();
    let creds =
        aws_sdk_s3::config::Credentials::new(env.access_key, env.secret_key, None, None, "mc-test");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(env.region))
        .endpoint_url(env.endpoint)
        .force_path_style(true)
        .credentials_provider(creds)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Creates a bucket of its own for one test and returns its name.
pub async fn fresh_bucket(client: &aws_sdk_s3::Client, prefix: &str) -> String {
    let bucket = unique_name(prefix);
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot create bucket {bucket}: {e:?}; {SERVICES_HINT}"));
    bucket
}

/// Path of one of the workspace's binaries (`mc-agent`, `mc-restore`), built beside this test
/// executable by `cargo test --workspace` / `cargo nextest run --workspace`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} does not exist; build the workspace first: cargo build --workspace",
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variable_is_an_error_with_the_fix() {
        let err = require_var("MC_TEST_DEFINITELY_NOT_SET_0xdead").unwrap_err();
        assert!(
            err.contains("MC_TEST_DEFINITELY_NOT_SET_0xdead is not set"),
            "{err}"
        );
        assert!(err.contains("scripts/services.sh up"), "{err}");
    }

    #[test]
    #[should_panic(expected = "scripts/services.sh up")]
    fn missing_variable_fails_the_test() {
        var("MC_TEST_DEFINITELY_NOT_SET_0xbeef");
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        assert!(a.len() < 40, "{a} is short enough for bucket names");
    }

    #[test]
    fn s3_env_debug_hides_the_secret() {
        let env = S3Env {
            endpoint: "http://x".into(),
            region: "r".into(),
            access_key: "AK".into(),
            secret_key: "very-secret".into(),
        };
        assert!(!format!("{env:?}").contains("very-secret"));
    }
}
