//! Object storage: the raw backends that hold a repository's objects.
//!
//! A backend stores opaque, immutable objects under `/`-separated keys. It knows nothing of
//! segments, encryption or catalogs; those layers sit above it (rustic's model: decrypt, cache
//! and dry-run wrap a raw backend). Two backends exist:
//!
//! - [`local::LocalDir`]: a directory on a local or mounted filesystem, the embedded default.
//! - [`s3::S3Store`]: any S3-compatible service.
//!
//! Every write is **put-if-absent**: objects are immutable, so a second writer of the same key
//! fails with [`StorageError::AlreadyExists`] instead of overwriting. This, with the fencing
//! token in segment headers, is what keeps a deposed capturer from corrupting a timeline.
//!
//! [`open`] stacks layers over the raw backend, in the spirit of restic's `backend/retry`:
//! [`retry::Retry`] (backoff with jitter) over [`logging::Logging`] (a WARN when the store stops
//! answering, then at most every 30 s; [`health::StoreHealth`] for metrics and status) over
//! [`timeout::Timeout`] (a deadline per attempt sized for the object), so every user of a
//! repository (capture, snapshots, Kafka offsets, retention, restore) gets the same behaviour
//! when the store is slow or gone.

pub mod disk;
pub mod health;
pub mod local;
pub mod logging;
pub mod retry;
pub mod s3;
pub mod timeout;
pub mod url;
mod urltext;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use self::health::StoreHealth;
pub use self::retry::{RetryPolicy, StoreOptions};
pub use self::url::RepoUrl;

/// What a backend knows of one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key, relative to the backend's root (no leading `/`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the backend last wrote it, when the backend says.
    pub last_modified: Option<SystemTime>,
}

/// One page of a listing, in ascending key order.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// Pass to the next [`ObjectStore::list_page`] call; `None` on the last page.
    pub next: Option<String>,
}

/// The bytes of a new object.
#[derive(Debug, Clone)]
pub enum PutSource {
    /// Small objects, already in memory.
    Bytes(Bytes),
    /// A finished file (e.g. a segment sealed into the spool directory), read in bounded chunks:
    /// large objects are streamed (multipart on S3), never loaded whole.
    File(PathBuf),
}

/// A stream of an object's bytes, in order, in chunks of backend-chosen size.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// Why a storage operation failed. Every variant names the object (or the repository) and never
/// contains credentials.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {key} not found in {repo}")]
    NotFound { repo: String, key: String },

    #[error(
        "object {key} already exists in {repo}; objects are immutable and are never overwritten"
    )]
    AlreadyExists { repo: String, key: String },

    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },

    #[error("range {start}..{end} is outside object {key} of {size} bytes in {repo}")]
    InvalidRange {
        repo: String,
        key: String,
        start: u64,
        end: u64,
        size: u64,
    },

    #[error("invalid repository URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("{op} {key} in {repo}: {source}")]
    Io {
        op: &'static str,
        repo: String,
        key: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{op} {key} in {repo} failed: {message}")]
    Backend {
        op: &'static str,
        repo: String,
        key: String,
        /// What kind of failure, for retry decisions and metrics.
        kind: ErrorKind,
        message: String,
    },
}

/// What kind of failure a [`StorageError`] is: decides whether a bounded retry policy tries
/// again, and labels `mc_store_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// No answer within the attempt's deadline (see [`timeout`]).
    Timeout,
    /// The connection could not be made or broke (refused, reset, DNS).
    Unreachable,
    /// The service asked to slow down (429, 503 SlowDown).
    Throttled,
    /// A 5xx answer.
    Server,
    /// Credentials missing, wrong, or without permission.
    Denied,
    /// The object (or the bucket) does not exist.
    NotFound,
    /// Put-if-absent lost to an existing object.
    Conflict,
    /// A bad key, range or URL: the request itself is wrong.
    Invalid,
    /// Another 4xx answer.
    Client,
    /// A local filesystem error (local backend, spool file).
    Io,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The label value (`timeout`, `unreachable`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Server => "server",
            ErrorKind::Denied => "denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Client => "client",
            ErrorKind::Io => "io",
            ErrorKind::Other => "other",
        }
    }

    /// True for failures that may clear by themselves (the store is slow, down or busy), which a
    /// bounded policy retries; false for ones a retry repeats (credentials, a wrong request).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout
                | ErrorKind::Unreachable
                | ErrorKind::Throttled
                | ErrorKind::Server
                | ErrorKind::Io
                | ErrorKind::Other
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StorageError {
    /// True when the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
    /// True when a put-if-absent lost to an existing object.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, StorageError::AlreadyExists { .. })
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::NotFound { .. } => ErrorKind::NotFound,
            StorageError::AlreadyExists { .. } => ErrorKind::Conflict,
            StorageError::InvalidKey { .. }
            | StorageError::InvalidRange { .. }
            | StorageError::InvalidUrl { .. } => ErrorKind::Invalid,
            StorageError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorKind::Denied,
                std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Io,
            },
            StorageError::Backend { kind, .. } => *kind,
        }
    }

    /// True when the error is the store's answer about the object (it does not exist, it
    /// exists already, the key or range is wrong) rather than a failure to get an answer: such
    /// errors are never retried and do not count against the store's health.
    pub fn is_answer(&self) -> bool {
        matches!(
            self,
            StorageError::NotFound { .. }
                | StorageError::AlreadyExists { .. }
                | StorageError::InvalidKey { .. }
                | StorageError::InvalidRange { .. }
                | StorageError::InvalidUrl { .. }
        )
    }
}

/// A raw object store. Keys are relative, `/`-separated, without `.` or `..` segments; see
/// [`check_key`].
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Where this store is, for messages (`file:///var/backups`, `s3://bucket/prefix`); never
    /// contains credentials.
    fn describe(&self) -> String;

    /// Writes a new object. Fails with [`StorageError::AlreadyExists`] if `key` exists, and never
    /// leaves a partial object under `key` (a failed or interrupted put leaves nothing visible).
    async fn put_if_absent(&self, key: &str, source: PutSource) -> Result<(), StorageError>;

    /// The whole object as a stream of chunks (bounded memory for any size).
    async fn get_stream(&self, key: &str) -> Result<ByteStream, StorageError>;

    /// Bytes `range.start..range.end` of the object. A range past the end is
    /// [`StorageError::InvalidRange`].
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError>;

    /// Metadata of one object, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError>;

    /// One page of the objects whose keys start with `prefix`, ascending by key. `after` is the
    /// `next` of the previous page.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StorageError>;

    /// Deletes an object; deleting a missing object is not an error (retention may race).
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Checks that the store is there and usable (S3: the bucket exists and the credentials may
    /// use it), so a wrong location fails at once instead of at the first write.
    async fn check(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// The health of the store as seen by its [`logging`] layer, when it has one.
    fn health(&self) -> Option<std::sync::Arc<StoreHealth>> {
        None
    }

    /// The whole object in memory. For small objects (manifests, indexes); stream segments.
    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        use futures::TryStreamExt;
        let chunks: Vec<Bytes> = self.get_stream(key).await?.try_collect().await?;
        Ok(match chunks.len() {
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => chunks.concat().into(),
        })
    }

    /// Every object under `prefix`, ascending by key, following pagination to the end.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_page(prefix, after).await?;
            all.extend(page.objects);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }
}

/// Opens the backend a URL names with [`StoreOptions::default`] (bounded retries, for
/// commands); see [`open_with`].
pub async fn open(url: &RepoUrl) -> Result<std::sync::Arc<dyn ObjectStore>, StorageError> {
    open_with(url, StoreOptions::default()).await
}

/// Opens the backend a URL names (creating a local directory if missing), stacks the layers of
/// `options` over it (`Retry(Logging(Timeout(raw)))`) and checks the store through them (S3:
/// the bucket exists and the credentials may use it). With [`RetryPolicy::forever`] this waits
/// until the store answers. The S3 client's own retries are off (one attempt per call): the
/// retry layer is the one that retries, each attempt under its deadline.
pub async fn open_with(
    url: &RepoUrl,
    options: StoreOptions,
) -> Result<std::sync::Arc<dyn ObjectStore>, StorageError> {
    let (raw, attempts): (std::sync::Arc<dyn ObjectStore>, u32) = match url {
        RepoUrl::Local(path) => (std::sync::Arc::new(local::LocalDir::new(path.clone())?), 5),
        RepoUrl::S3(config) => {
            let mut config = config.clone();
            let attempts = config.max_attempts;
            config.max_attempts = 1;
            (
                std::sync::Arc::new(s3::S3Store::connect(config).await?),
                attempts,
            )
        }
    };
    let store = options.stack(raw, attempts);
    store.check().await?;
    tracing::debug!(repo = %store.describe(), "opened the repository's store");
    Ok(store)
}

/// Rejects keys that could escape the repository root or mean different objects on different
/// backends: empty, absolute, `.`/`..` segments, empty segments, backslashes, NUL, or over
/// 900 bytes (S3 allows 1024; the prefix needs room).
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let bad = |reason| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty key");
    }
    if key.len() > 900 {
        return bad("longer than 900 bytes");
    }
    if key.starts_with('/') {
        return bad("keys are relative (no leading '/')");
    }
    if key.contains('\\') || key.contains('\0') {
        return bad("backslash or NUL in key");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("empty, '.' or '..' path segment");
    }
    Ok(())
}

/// Rejects listing prefixes that could escape the repository root: like [`check_key`], except
/// that a prefix may be empty, may end with `/`, and its last segment may be partial.
pub fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    let bad = |reason| {
        Err(StorageError::InvalidKey {
            key: prefix.to_owned(),
            reason,
        })
    };
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.len() > 900 {
        return bad("longer than 900 bytes");
    }
    if prefix.starts_with('/') {
        return bad("prefixes are relative (no leading '/')");
    }
    if prefix.contains('\\') || prefix.contains('\0') {
        return bad("backslash or NUL in prefix");
    }
    let segments: Vec<&str> = prefix.split('/').collect();
    let (last, dirs) = segments.split_last().unwrap_or((&"", &[]));
    if dirs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") || *last == "." || *last == ".."
    {
        return bad("empty, '.' or '..' path segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_key, check_prefix};

    #[test]
    fn keys_that_escape_or_are_ambiguous_are_rejected() {
        for bad in [
            "", "/abs", "a//b", "a/../b", "./a", "a/.", "a\\b", "a\0b", "a/",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} must be rejected");
        }
        for good in ["a", "sources/rs0/oplog/000001.seg", "x.y-z_0"] {
            assert!(check_key(good).is_ok(), "{good:?} is fine");
        }
    }

    #[test]
    fn prefixes_may_be_partial_but_not_escape() {
        for good in ["", "a", "a/", "sources/rs0/oplog/0000", "a/b."] {
            assert!(check_prefix(good).is_ok(), "{good:?} is fine");
        }
        for bad in ["/a", "../a", "a/..", "a//b", "./", "a\\b"] {
            assert!(check_prefix(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
