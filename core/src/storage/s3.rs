//! The S3 backend: a repository in a bucket (optionally under a key prefix) of Amazon S3 or any
//! S3-compatible service (SeaweedFS, MinIO, Ceph RGW, …).
//!
//! - Put-if-absent is `If-None-Match: *` on PutObject and on CompleteMultipartUpload; the service
//!   answers 412 (or 409 when two writers race) instead of overwriting.
//! - Every upload carries an `x-amz-checksum-sha256` (whole object, or per part for multipart),
//!   so the service rejects bytes corrupted on the way.
//! - Files above the multipart threshold are uploaded part by part, one part in memory at a time;
//!   a failed upload is aborted so no parts linger.
//! - Optional Object Lock retention and server-side encryption are set on every write.
//! - Credentials come from the standard AWS chain (environment, profile, web identity, ECS,
//!   instance metadata) and never appear in messages.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ServerSideEncryption,
};
use aws_sdk_s3::Client;
use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::urltext::{percent_decode, query_escape, raw_path, redact, userinfo_span, EXPECTED};
use super::{
    check_key, check_prefix, ByteStream, ErrorKind, ListPage, ObjectMeta, ObjectStore, PutSource,
    StorageError,
};

const MIB: u64 = 1 << 20;
/// S3's smallest part (all but the last) and largest part.
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 * 1024 * MIB;
/// S3's largest part number.
const MAX_PARTS: u64 = 10_000;

/// The Object Lock retention mode set on new objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still delete early.
    Governance,
    /// Nobody, not even the root account, can delete before the date.
    Compliance,
}

/// Object Lock retention for every object written: mode, and how long from the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLockSettings {
    pub mode: LockMode,
    pub retain_for: Duration,
}

/// Explicit credentials, for tests and embedding; production uses the AWS credential chain.
/// `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Everything needed to reach a bucket. Built from an `s3://` URL by
/// [`RepoUrl::parse`](super::RepoUrl::parse), or by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`; empty for the whole bucket.
    pub prefix: String,
    /// Custom endpoint (`http://127.0.0.1:18333`) for S3-compatible services; `None` for AWS.
    pub endpoint: Option<String>,
    /// `None`: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub force_path_style: bool,
    pub object_lock: Option<ObjectLockSettings>,
    /// Server-side encryption: `AES256`, `aws:kms` or `aws:kms:dsse`.
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    /// Files larger than this are uploaded in parts.
    pub multipart_threshold: u64,
    /// Size of each part (at least 5 MiB; raised when a file would need more than 10,000 parts).
    pub part_size: u64,
    /// Attempts per request, including the first (throttling, 5xx and connection errors are
    /// retried with exponential backoff and jitter).
    pub max_attempts: u32,
    /// Test knob: keys per ListObjectsV2 page (the service's default, 1000, when `None`).
    pub list_page_size: Option<i32>,
    /// Explicit credentials instead of the AWS chain (tests). Never set from a URL.
    pub static_credentials: Option<StaticCredentials>,
}

impl S3Config {
    /// Defaults for `bucket`: no prefix, AWS endpoint, 16 MiB threshold, 8 MiB parts, 5 attempts.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            force_path_style: false,
            object_lock: None,
            sse: None,
            sse_kms_key_id: None,
            multipart_threshold: 16 * MIB,
            part_size: 8 * MIB,
            max_attempts: 5,
            list_page_size: None,
            static_credentials: None,
        }
    }

    /// The per-store settings of this configuration, for [`S3Store::from_client`].
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint.clone(),
            object_lock: self.object_lock,
            sse: self.sse.clone(),
            sse_kms_key_id: self.sse_kms_key_id.clone(),
            multipart_threshold: self.multipart_threshold,
            part_size: self.part_size,
            list_page_size: self.list_page_size,
        }
    }
}

/// S3-specific URL parsing and printing (the generic half is in `url` and `urltext`).
impl S3Config {
    /// Reads an `s3://bucket[/prefix][?…]` URL (see [`super::url`]); the error says why not.
    pub(crate) fn from_url(input: &str) -> Result<S3Config, String> {
        if !input[input.find(':').unwrap_or(0)..].starts_with("://") {
            return Err(format!(
                "S3 URLs have the form s3://bucket/prefix; {EXPECTED}"
            ));
        }
        if userinfo_span(input).is_some() {
            return Err("credentials in the URL are refused; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or use an AWS profile or role".into());
        }
        let url = url::Url::parse(input).map_err(|e| format!("{e}; {EXPECTED}"))?;
        let bucket = url.host_str().unwrap_or_default();
        if bucket.is_empty() {
            return Err(format!("missing bucket name; {EXPECTED}"));
        }
        if url.port().is_some() {
            return Err(
                "a bucket has no port; give the server as ?endpoint=http://host:port".into(),
            );
        }
        if url.fragment().is_some() {
            return Err("S3 URLs take no fragment (#…)".into());
        }
        check_bucket_name(bucket)
            .map_err(|reason| format!("invalid bucket name {bucket:?}: {reason}"))?;
        let mut config = S3Config::new(bucket);

        let path = percent_decode(raw_path(input))
            .ok_or("the prefix is not valid percent-encoded UTF-8")?;
        let prefix = path.trim_matches('/');
        if !prefix.is_empty() {
            check_key(prefix).map_err(|e| match e {
                StorageError::InvalidKey { reason, .. } => {
                    format!("invalid prefix {prefix:?}: {reason}")
                }
                other => other.to_string(),
            })?;
        }
        config.prefix = prefix.to_owned();

        let mut seen = Vec::new();
        let mut path_style = None;
        for (name, value) in url.query_pairs() {
            if seen.contains(&name) {
                return Err(format!("query parameter {name:?} is given twice"));
            }
            seen.push(name.clone());
            match name.as_ref() {
                "endpoint" => {
                    check_endpoint(&value)?;
                    config.endpoint = Some(value.trim_end_matches('/').to_owned());
                }
                "region" => {
                    if value.is_empty()
                        || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    {
                        return Err(format!(
                            "invalid region {value:?} (expected e.g. us-east-1)"
                        ));
                    }
                    config.region = Some(value.into_owned());
                }
                "path_style" => {
                    path_style = Some(match value.as_ref() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        other => {
                            return Err(format!("path_style must be true or false, not {other:?}"))
                        }
                    });
                }
                "object_lock" => config.object_lock = Some(parse_object_lock(&value)?),
                "sse" => {
                    if !matches!(value.as_ref(), "AES256" | "aws:kms" | "aws:kms:dsse") {
                        return Err(format!(
                            "sse must be AES256, aws:kms or aws:kms:dsse, not {value:?}"
                        ));
                    }
                    config.sse = Some(value.into_owned());
                }
                "sse_kms_key_id" => {
                    if value.is_empty() {
                        return Err("sse_kms_key_id is empty".into());
                    }
                    config.sse_kms_key_id = Some(value.into_owned());
                }
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?}; known: {S3_PARAMS}"
                    ))
                }
            }
        }
        if config.sse_kms_key_id.is_some()
            && !config
                .sse
                .as_deref()
                .is_some_and(|s| s.starts_with("aws:kms"))
        {
            return Err("sse_kms_key_id needs sse=aws:kms (or aws:kms:dsse)".into());
        }
        // S3-compatible servers on a custom endpoint nearly always need path-style addressing.
        config.force_path_style = path_style.unwrap_or(config.endpoint.is_some());
        Ok(config)
    }

    /// Writes the URL form that [`S3Config::from_url`] reads back; never contains credentials.
    pub(crate) fn write_url(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self;
        write!(f, "s3://{}", c.bucket)?;
        if !c.prefix.is_empty() {
            write!(f, "/{}", c.prefix)?;
        }
        let mut params = Vec::new();
        if let Some(endpoint) = &c.endpoint {
            params.push(format!("endpoint={}", query_escape(&redact(endpoint))));
        }
        if let Some(region) = &c.region {
            params.push(format!("region={}", query_escape(region)));
        }
        if c.force_path_style != c.endpoint.is_some() {
            params.push(format!("path_style={}", c.force_path_style));
        }
        if let Some(lock) = &c.object_lock {
            let mode = match lock.mode {
                LockMode::Governance => "governance",
                LockMode::Compliance => "compliance",
            };
            let duration = humantime::format_duration(lock.retain_for)
                .to_string()
                .replace(' ', "");
            params.push(format!("object_lock={mode}:{duration}"));
        }
        if let Some(sse) = &c.sse {
            params.push(format!("sse={}", query_escape(sse)));
        }
        if let Some(id) = &c.sse_kms_key_id {
            params.push(format!("sse_kms_key_id={}", query_escape(id)));
        }
        if !params.is_empty() {
            write!(f, "?{}", params.join("&"))?;
        }
        Ok(())
    }
}

const S3_PARAMS: &str = "endpoint, region, path_style, object_lock, sse, sse_kms_key_id";

/// `governance:30d` or `compliance:1y`.
fn parse_object_lock(value: &str) -> Result<ObjectLockSettings, String> {
    let form =
        "object_lock must be governance:DURATION or compliance:DURATION (e.g. governance:30d)";
    let (mode, duration) = value
        .split_once(':')
        .ok_or_else(|| format!("{form}, not {value:?}"))?;
    let mode = match mode.to_ascii_lowercase().as_str() {
        "governance" => LockMode::Governance,
        "compliance" => LockMode::Compliance,
        other => return Err(format!("{form}; unknown mode {other:?}")),
    };
    let retain_for = humantime::parse_duration(duration)
        .map_err(|e| format!("{form}; bad duration {duration:?}: {e}"))?;
    if retain_for.as_secs() < 1 {
        return Err(format!("{form}; the duration must be at least 1s"));
    }
    Ok(ObjectLockSettings { mode, retain_for })
}

/// S3 bucket naming rules (the portable subset): 3–63 characters of lower-case letters, digits,
/// `-` and `.`, starting and ending with a letter or digit, no `..`, not an IP address.
pub(crate) fn check_bucket_name(bucket: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("bucket names are 3 to 63 characters long");
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err("bucket names use only lower-case letters, digits, '-' and '.'");
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(bucket.chars().next()) || !alnum(bucket.chars().last()) {
        return Err("bucket names start and end with a letter or digit");
    }
    if bucket.contains("..") {
        return Err("bucket names have no '..'");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("bucket names are not IP addresses");
    }
    Ok(())
}

/// An endpoint is an `http(s)://host[:port]` URL without credentials.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if userinfo_span(endpoint).is_some() {
        return Err("credentials in the endpoint are refused; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or use an AWS profile".into());
    }
    let shown = redact(endpoint);
    let url = url::Url::parse(endpoint).map_err(|e| format!("invalid endpoint {shown:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "invalid endpoint {shown:?}: expected http://host:port or https://host"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "invalid endpoint {shown:?}: no query or fragment allowed"
        ));
    }
    Ok(())
}

/// How an [`S3Store`] writes and lists, apart from the client's connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The endpoint the client talks to, for messages only (`None`: AWS).
    pub endpoint: Option<String>,
    pub object_lock: Option<ObjectLockSettings>,
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub multipart_threshold: u64,
    pub part_size: u64,
    pub list_page_size: Option<i32>,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Config::new("").settings()
    }
}

/// A repository in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Normalised: no leading or trailing `/`.
    prefix: String,
    settings: S3Settings,
    /// [`ObjectStore::describe`], computed once.
    repo: Arc<str>,
}

impl S3Store {
    /// Builds a client from `config` (credentials from the AWS chain unless
    /// `static_credentials` is set) and the store on it. Makes no request; see
    /// [`S3Store::check_bucket`].
    pub async fn connect(config: S3Config) -> Result<Self, StorageError> {
        let repo = repo_name(&config.bucket, &config.prefix, config.endpoint.as_deref());
        let invalid = |reason: String| StorageError::InvalidUrl {
            url: repo.clone(),
            reason,
        };
        check_bucket_name(&config.bucket).map_err(|r| invalid(r.to_owned()))?;
        if let Some(endpoint) = &config.endpoint {
            check_endpoint(endpoint).map_err(invalid)?;
        }

        let region =
            RegionProviderChain::first_try(config.region.clone().map(aws_config::Region::new))
                .or_else(aws_config::environment::region::EnvironmentVariableRegionProvider::new())
                .or_else(aws_config::Region::from_static("us-east-1"));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            // Standard mode: exponential backoff with jitter; retries throttling (429, SlowDown),
            // transient 5xx and connection errors.
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            );
        if let Some(creds) = &config.static_credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                &creds.access_key_id,
                &creds.secret_access_key,
                None,
                None,
                "mc-backup-static",
            ));
        }
        let sdk_config = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk_config)
            .force_path_style(config.force_path_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let client = Client::from_conf(builder.build());
        Ok(Self::from_client(
            client,
            config.bucket.clone(),
            config.prefix.clone(),
            config.settings(),
        ))
    }

    /// A store over an existing client (tests, or callers with their own SDK configuration).
    pub fn from_client(
        client: Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        settings: S3Settings,
    ) -> Self {
        let bucket = bucket.into();
        let prefix = prefix.into().trim_matches('/').to_owned();
        let repo = repo_name(&bucket, &prefix, settings.endpoint.as_deref()).into();
        Self {
            client,
            bucket,
            prefix,
            settings,
            repo,
        }
    }

    /// Checks that the bucket exists and the credentials may use it (HeadBucket), so that a
    /// wrong URL fails at once with a clear message instead of at the first write.
    pub async fn check_bucket(&self) -> Result<(), StorageError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                Err(match status {
                    Some(404) => self.no_such_bucket("open", "bucket"),
                    _ => self.sdk_err("open", "bucket", err),
                })
            }
        }
    }

    /// The underlying SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The full S3 key of an object.
    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn endpoint_label(&self) -> &str {
        self.settings.endpoint.as_deref().unwrap_or("(AWS default)")
    }

    fn no_such_bucket(&self, op: &'static str, key: &str) -> StorageError {
        StorageError::Backend {
            op,
            repo: self.repo.to_string(),
            key: key.to_owned(),
            kind: ErrorKind::NotFound,
            message: format!(
                "bucket {} does not exist at S3 endpoint {}; create it first (and check the URL's bucket, endpoint and region)",
                self.bucket,
                self.endpoint_label()
            ),
        }
    }

    fn backend(&self, op: &'static str, key: &str, message: String) -> StorageError {
        self.backend_kind(op, key, ErrorKind::Other, message)
    }

    fn backend_kind(
        &self,
        op: &'static str,
        key: &str,
        kind: ErrorKind,
        message: String,
    ) -> StorageError {
        StorageError::Backend {
            op,
            repo: self.repo.to_string(),
            key: key.to_owned(),
            kind,
            message,
        }
    }

    /// Maps an SDK error to a [`StorageError`] naming the operation, key and repository. The
    /// SDK's messages never contain the secret key.
    fn sdk_err<E>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let rendered = DisplayErrorContext(&err).to_string();
        match &err {
            // Credential resolution happens while dispatching; say so instead of blaming the
            // network.
            SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
                if rendered.contains("credentials") =>
            {
                return self.backend_kind(
                    op,
                    key,
                    ErrorKind::Denied,
                    format!(
                        "no usable AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or configure an AWS profile or role: {rendered}"
                    ),
                );
            }
            SdkError::DispatchFailure(failure) if !failure.is_user() => {
                let kind = if failure.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Unreachable
                };
                return self.backend_kind(
                    op,
                    key,
                    kind,
                    format!(
                        "cannot reach S3 endpoint {}: {rendered}",
                        self.endpoint_label()
                    ),
                );
            }
            SdkError::TimeoutError(_) => {
                return self.backend_kind(
                    op,
                    key,
                    ErrorKind::Timeout,
                    format!(
                        "cannot reach S3 endpoint {} (timed out): {rendered}",
                        self.endpoint_label()
                    ),
                );
            }
            _ => {}
        }
        match (status, code.as_deref()) {
            (_, Some("NoSuchBucket")) => self.no_such_bucket(op, key),
            (_, Some("NoSuchKey")) | (Some(404), _) => {
                StorageError::NotFound { repo: self.repo.to_string(), key: key.to_owned() }
            }
            (Some(403), _)
            | (_, Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied")) => self.backend_kind(
                op,
                key,
                ErrorKind::Denied,
                format!(
                    "access denied; check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS profile) and their permissions on bucket {}: {rendered}",
                    self.bucket
                ),
            ),
            (Some(301), _) | (_, Some("PermanentRedirect" | "AuthorizationHeaderMalformed")) => self.backend_kind(
                op,
                key,
                ErrorKind::Client,
                format!("bucket {} is in another region; set region= in the repository URL: {rendered}", self.bucket),
            ),
            (Some(429), _) | (_, Some("SlowDown" | "Throttling" | "RequestLimitExceeded")) => {
                self.backend_kind(op, key, ErrorKind::Throttled, rendered)
            }
            (Some(s), _) if s >= 500 => self.backend_kind(op, key, ErrorKind::Server, rendered),
            (Some(s), _) if s >= 400 => self.backend_kind(op, key, ErrorKind::Client, rendered),
            // A broken or unreadable answer: the connection, most likely.
            _ if matches!(err, SdkError::ResponseError(_)) => {
                self.backend_kind(op, key, ErrorKind::Unreachable, rendered)
            }
            _ => self.backend(op, key, rendered),
        }
    }

    /// Like [`Self::sdk_err`] for a conditional write: 412 (the key exists) and 409
    /// `ConditionalRequestConflict` (a concurrent writer won) mean the object already exists.
    fn put_err<E>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let conflict = status == Some(412)
            || err.code() == Some("PreconditionFailed")
            || (status == Some(409) && err.code() == Some("ConditionalRequestConflict"));
        if conflict {
            StorageError::AlreadyExists {
                repo: self.repo.to_string(),
                key: key.to_owned(),
            }
        } else {
            self.sdk_err(op, key, err)
        }
    }

    fn lock_fields(&self) -> (Option<ObjectLockMode>, Option<aws_smithy_types::DateTime>) {
        match self.settings.object_lock {
            Some(lock) => {
                let mode = match lock.mode {
                    LockMode::Governance => ObjectLockMode::Governance,
                    LockMode::Compliance => ObjectLockMode::Compliance,
                };
                let until = aws_smithy_types::DateTime::from(SystemTime::now() + lock.retain_for);
                (Some(mode), Some(until))
            }
            None => (None, None),
        }
    }

    fn sse(&self) -> Option<ServerSideEncryption> {
        self.settings.sse.as_deref().map(ServerSideEncryption::from)
    }

    /// One PutObject of an in-memory body.
    async fn put_single(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        let checksum = sha256_base64(body.clone()).await;
        let (lock_mode, lock_until) = self.lock_fields();
        let len = body.len();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .if_none_match("*")
            .checksum_sha256(checksum)
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(lock_until)
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.settings.sse_kms_key_id.clone())
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.put_err("put", key, e))?;
        tracing::debug!(repo = %self.repo, key, bytes = len, "object written");
        Ok(())
    }

    /// Uploads a large file in parts, aborting the upload on any failure.
    ///
    /// Put-if-absent rests on `If-None-Match: *` on CompleteMultipartUpload. A HEAD before the
    /// upload answers the common case (the object exists) without uploading anything; it does
    /// not decide the race between two concurrent writers, which the conditional completion does.
    async fn put_multipart(
        &self,
        key: &str,
        path: &std::path::Path,
        size: u64,
    ) -> Result<(), StorageError> {
        if self.head(key).await?.is_some() {
            return Err(StorageError::AlreadyExists {
                repo: self.repo.to_string(),
                key: key.to_owned(),
            });
        }
        let (lock_mode, lock_until) = self.lock_fields();
        let full_key = self.full_key(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full_key)
            // Declared up front: some services reject part checksums otherwise.
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(lock_until)
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.settings.sse_kms_key_id.clone())
            .send()
            .await
            .map_err(|e| self.sdk_err("start multipart upload of", key, e))?;
        let Some(upload_id) = created.upload_id else {
            return Err(self.backend(
                "start multipart upload of",
                key,
                "the service returned no upload id".into(),
            ));
        };

        let result = self
            .upload_parts(key, &full_key, &upload_id, path, size)
            .await;
        if result.is_err() {
            let abort = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full_key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = abort {
                tracing::warn!(repo = %self.repo, key, upload_id, error = %DisplayErrorContext(&e),
                    "cannot abort a failed multipart upload; a bucket lifecycle rule for incomplete uploads will clean it");
            }
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        full_key: &str,
        upload_id: &str,
        path: &std::path::Path,
        size: u64,
    ) -> Result<(), StorageError> {
        let part_size = self
            .settings
            .part_size
            .clamp(MIN_PART, MAX_PART)
            .max(size.div_ceil(MAX_PARTS));
        let read_err = |e: std::io::Error| StorageError::Io {
            op: "put",
            repo: self.repo.to_string(),
            key: key.to_owned(),
            source: std::io::Error::new(
                e.kind(),
                format!("reading source file {}: {e}", path.display()),
            ),
        };
        let mut file = tokio::fs::File::open(path).await.map_err(read_err)?;
        let mut parts = Vec::new();
        let mut total = 0u64;
        for part_number in 1.. {
            // One part in memory at a time.
            let mut buf = Vec::with_capacity(usize::try_from(part_size).unwrap_or(usize::MAX));
            (&mut file)
                .take(part_size)
                .read_to_end(&mut buf)
                .await
                .map_err(read_err)?;
            if buf.is_empty() && part_number > 1 {
                break;
            }
            total += buf.len() as u64;
            let body = Bytes::from(buf);
            let checksum = sha256_base64(body.clone()).await;
            let len = body.len();
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(part_number)
                .checksum_sha256(&checksum)
                .body(SdkByteStream::from(body))
                .send()
                .await
                .map_err(|e| self.sdk_err("upload part of", key, e))?;
            tracing::debug!(repo = %self.repo, key, part_number, bytes = len, "part uploaded");
            parts.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(uploaded.e_tag)
                    .checksum_sha256(checksum)
                    .build(),
            );
            if (len as u64) < part_size {
                break;
            }
        }
        if total != size {
            return Err(read_err(std::io::Error::other(format!(
                "the file changed during the upload ({size} bytes expected, {total} read)"
            ))));
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.put_err("complete multipart upload of", key, e))?;
        tracing::debug!(repo = %self.repo, key, bytes = size, "object written (multipart)");
        Ok(())
    }

    fn invalid_range(&self, key: &str, range: &Range<u64>, size: u64) -> StorageError {
        StorageError::InvalidRange {
            repo: self.repo.to_string(),
            key: key.to_owned(),
            start: range.start,
            end: range.end,
            size,
        }
    }

    /// The size for an [`StorageError::InvalidRange`] answer, from HEAD.
    async fn range_error(&self, key: &str, range: &Range<u64>) -> StorageError {
        match self.head(key).await {
            Ok(Some(meta)) => self.invalid_range(key, range, meta.size),
            Ok(None) => StorageError::NotFound {
                repo: self.repo.to_string(),
                key: key.to_owned(),
            },
            Err(e) => e,
        }
    }
}

/// `s3://bucket/prefix`, plus ` at <endpoint>` for a custom endpoint.
fn repo_name(bucket: &str, prefix: &str, endpoint: Option<&str>) -> String {
    let prefix = prefix.trim_matches('/');
    let mut name = format!("s3://{bucket}");
    if !prefix.is_empty() {
        name.push('/');
        name.push_str(prefix);
    }
    if let Some(endpoint) = endpoint {
        name.push_str(" at ");
        name.push_str(endpoint);
    }
    name
}

/// Base64 SHA-256, as `x-amz-checksum-sha256` wants it; hashed off the async threads.
async fn sha256_base64(data: Bytes) -> String {
    let hash = move || base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&data));
    match tokio::task::spawn_blocking(hash.clone()).await {
        Ok(b64) => b64,
        // Only if the blocking pool is shutting down: hash here instead.
        Err(_) => hash(),
    }
}

/// Total size from a `Content-Range: bytes a-b/total` header.
fn total_from_content_range(header: &str) -> Option<u64> {
    header.rsplit('/').next()?.trim().parse().ok()
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        self.repo.to_string()
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.check_bucket().await
    }

    async fn put_if_absent(&self, key: &str, source: PutSource) -> Result<(), StorageError> {
        check_key(key)?;
        match source {
            PutSource::Bytes(bytes) => self.put_single(key, bytes).await,
            PutSource::File(path) => {
                let read_err = |e: std::io::Error| StorageError::Io {
                    op: "put",
                    repo: self.repo.to_string(),
                    key: key.to_owned(),
                    source: std::io::Error::new(
                        e.kind(),
                        format!("reading source file {}: {e}", path.display()),
                    ),
                };
                let size = tokio::fs::metadata(&path).await.map_err(read_err)?.len();
                if size > self.settings.multipart_threshold {
                    self.put_multipart(key, &path, size).await
                } else {
                    // At most the threshold (16 MiB by default) in memory.
                    let body = tokio::fs::read(&path).await.map_err(read_err)?;
                    self.put_single(key, body.into()).await
                }
            }
        }
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream, StorageError> {
        check_key(key)?;
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.sdk_err("get", key, e))?;
        let expected = output.content_length.and_then(|n| u64::try_from(n).ok());
        let this = self.clone();
        let key = key.to_owned();
        // State: the body, bytes received so far, and whether the end was reached.
        let stream =
            futures::stream::try_unfold((output.body, 0u64), move |(mut body, received)| {
                let this = this.clone();
                let key = key.clone();
                async move {
                    match body.next().await {
                        Some(Ok(chunk)) => {
                            let received = received + chunk.len() as u64;
                            Ok(Some((chunk, (body, received))))
                        }
                        Some(Err(e)) => {
                            Err(this.backend("read", &key, DisplayErrorContext(&e).to_string()))
                        }
                        None => match expected {
                            // A connection cut short must not look like a complete object.
                            Some(n) if n != received => Err(this.backend(
                                "read",
                                &key,
                                format!("the body ended after {received} of {n} bytes"),
                            )),
                            _ => Ok(None),
                        },
                    }
                }
            });
        Ok(Box::pin(stream))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        check_key(key)?;
        if range.start >= range.end {
            // Nothing to read; still answer NotFound/InvalidRange like a real read would.
            return match self.head(key).await? {
                None => Err(StorageError::NotFound {
                    repo: self.repo.to_string(),
                    key: key.to_owned(),
                }),
                Some(meta) if range.start > meta.size || range.end > meta.size => {
                    Err(self.invalid_range(key, &range, meta.size))
                }
                Some(_) => Ok(Bytes::new()),
            };
        }
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if status == Some(416) || e.code() == Some("InvalidRange") {
                    return Err(self.range_error(key, &range).await);
                }
                return Err(self.sdk_err("get range", key, e));
            }
        };
        let total = output
            .content_range
            .as_deref()
            .and_then(total_from_content_range);
        let data = output
            .body
            .collect()
            .await
            .map_err(|e| self.backend("read", key, DisplayErrorContext(&e).to_string()))?
            .into_bytes();
        let want = range.end - range.start;
        match total {
            // A ranged answer: S3 shortens a range that runs past the end.
            Some(total) if range.end > total => Err(self.invalid_range(key, &range, total)),
            Some(_) if data.len() as u64 == want => Ok(data),
            Some(_) => Err(self.backend(
                "get range",
                key,
                format!("expected {want} bytes, the service sent {}", data.len()),
            )),
            // No Content-Range: the service ignored the range and sent the whole object.
            None => {
                let size = data.len() as u64;
                if range.end > size {
                    Err(self.invalid_range(key, &range, size))
                } else {
                    Ok(data.slice(range.start as usize..range.end as usize))
                }
            }
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        check_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: out
                    .content_length
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                last_modified: out.last_modified.and_then(|t| SystemTime::try_from(t).ok()),
            })),
            Err(e) => match self.sdk_err("head", key, e) {
                StorageError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StorageError> {
        check_prefix(prefix)?;
        let full_prefix = if self.prefix.is_empty() {
            prefix.to_owned()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .set_continuation_token(after)
            .set_max_keys(self.settings.list_page_size)
            .send()
            .await
            .map_err(|e| self.sdk_err("list", &format!("{prefix}*"), e))?;
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let objects = out
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|obj| {
                let key = obj.key?.strip_prefix(&strip)?.to_owned();
                Some(ObjectMeta {
                    key,
                    size: obj.size.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    last_modified: obj.last_modified.and_then(|t| SystemTime::try_from(t).ok()),
                })
            })
            .collect();
        let next = match (out.is_truncated, out.next_continuation_token) {
            (Some(true), Some(token)) => Some(token),
            (Some(true), None) => {
                return Err(self.backend(
                    "list",
                    &format!("{prefix}*"),
                    "truncated listing without a continuation token".into(),
                ));
            }
            _ => None,
        };
        Ok(ListPage { objects, next })
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.sdk_err("delete", key, e) {
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_and_keys() {
        assert_eq!(repo_name("b", "", None), "s3://b");
        assert_eq!(
            repo_name("b", "/p/q/", Some("http://h:1")),
            "s3://b/p/q at http://h:1"
        );
        assert_eq!(total_from_content_range("bytes 0-9/1234"), Some(1234));
        assert_eq!(total_from_content_range("bytes */*"), None);
    }

    #[test]
    fn static_credentials_debug_hides_the_secret() {
        let mut config = S3Config::new("b");
        config.static_credentials = Some(StaticCredentials {
            access_key_id: "AKIA".into(),
            secret_access_key: "very-secret".into(),
        });
        assert!(!format!("{config:?}").contains("very-secret"));
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_named() {
        let mut config = S3Config::new("bucket");
        // Port 9 (discard) on loopback: connection refused at once.
        config.endpoint = Some("http://127.0.0.1:9".into());
        config.force_path_style = true;
        config.max_attempts = 1;
        config.static_credentials = Some(StaticCredentials {
            access_key_id: "AK".into(),
            secret_access_key: "very-secret".into(),
        });
        let store = S3Store::connect(config).await.unwrap();
        let err = store.head("k").await.unwrap_err().to_string();
        assert!(
            err.contains("cannot reach S3 endpoint http://127.0.0.1:9"),
            "{err}"
        );
        assert!(err.contains("s3://bucket"), "{err}");
        assert!(!err.contains("very-secret"), "{err}");
    }
}
