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

pub mod local;
pub mod s3;
pub mod url;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use self::url::{open, RepoUrl};

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
        message: String,
    },
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
