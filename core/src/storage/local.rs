//! The local-directory backend: a repository as a tree of files under one root directory (a local
//! disk or a mounted filesystem).
//!
//! Key `a/b/c` is the file `<root>/a/b/c`. Writes go to a temporary file (`.tmp-<random>`, never
//! listed) in the target directory, are fsynced, and are then hard-linked into place: `link(2)`
//! fails when the name exists, which gives put-if-absent without a lock, and a crash leaves at
//! most an unlisted temporary file, never a partial object under a real name.
//!
//! Limitation: the filesystem must support hard links (local filesystems and NFS do; some FUSE or
//! SMB mounts do not, and puts then fail with the filesystem's error).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::{
    check_key, check_prefix, ByteStream, ListPage, ObjectMeta, ObjectStore, PutSource, StorageError,
};

/// Size of the chunks streamed by [`LocalDir::get_stream`].
const CHUNK: usize = 1 << 20;
/// Objects per [`ListPage`].
const PAGE: usize = 1000;
/// Names starting with this are temporary files of unfinished puts; listings skip them.
const TMP_PREFIX: &str = ".tmp-";

/// A repository in a local directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
    /// `file://<root>`, for messages.
    repo: Arc<str>,
}

impl LocalDir {
    /// Opens (creating it if missing) the repository directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let err = |source| StorageError::Io {
            op: "create",
            repo: format!("file://{}", root.display()),
            key: "the repository directory".into(),
            source,
        };
        fs::create_dir_all(&root).map_err(err)?;
        // Absolute and canonical, so messages and `describe` name the real place.
        let root = fs::canonicalize(&root).map_err(err)?;
        if !root.is_dir() {
            return Err(err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        let repo = format!("file://{}", root.display()).into();
        Ok(Self { root, repo })
    }

    /// The (canonical) root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn io_err(&self, op: &'static str, key: &str, source: io::Error) -> StorageError {
        StorageError::Io {
            op,
            repo: self.repo.to_string(),
            key: key.to_owned(),
            source,
        }
    }

    fn not_found(&self, key: &str) -> StorageError {
        StorageError::NotFound {
            repo: self.repo.to_string(),
            key: key.to_owned(),
        }
    }

    /// Maps an error opening an object for reading: a missing file (or a file where a directory
    /// of the key's path should be) is a missing object.
    fn read_err(&self, op: &'static str, key: &str, e: io::Error) -> StorageError {
        if is_missing(&e) {
            self.not_found(key)
        } else {
            self.io_err(op, key, e)
        }
    }

    /// Runs blocking filesystem work off the async runtime.
    async fn blocking<T, F>(&self, op: &'static str, key: &str, f: F) -> Result<T, StorageError>
    where
        F: FnOnce() -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(result) => result,
            Err(join) => Err(self.io_err(op, key, io::Error::other(join.to_string()))),
        }
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The final segment of a key must not look like one of our temporary files, or listings would
/// hide it.
fn check_local_key(key: &str) -> Result<(), StorageError> {
    check_key(key)?;
    if key
        .rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with(TMP_PREFIX))
    {
        return Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason: "names starting with '.tmp-' are reserved for temporary files",
        });
    }
    Ok(())
}

/// fsync of a directory, so a new entry in it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Creates the directories between `root` and `dir` that are missing, fsyncing each parent so
/// the new entries are durable.
fn ensure_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    let Ok(rel) = dir.strip_prefix(root) else {
        return Err(io::Error::other("object path outside the repository root"));
    };
    let mut current = root.to_path_buf();
    for part in rel.components() {
        let parent = current.clone();
        current.push(part);
        match fs::create_dir(&current) {
            Ok(()) => sync_dir(&parent)?,
            // Exists already (maybe created concurrently by another put): fine if a directory.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && current.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Adds the source path to an error reading a [`PutSource::File`], which otherwise names only
/// the destination key.
fn source_err(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("reading source file {}: {e}", path.display()),
    )
}

/// The blocking part of a put. `Ok(false)` when the object already exists.
fn put_blocking(root: &Path, key: &str, source: PutSource) -> io::Result<bool> {
    let target = root.join(key);
    let dir = target.parent().unwrap_or(root).to_path_buf();
    // Cheap early answer; the hard link below is what actually decides.
    if fs::symlink_metadata(&target).is_ok() {
        return Ok(false);
    }
    ensure_dirs(root, &dir)?;

    let tmp = dir.join(format!("{TMP_PREFIX}{:016x}", rand::random::<u64>()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let written = (|| {
        match source {
            PutSource::Bytes(bytes) => file.write_all(&bytes)?,
            PutSource::File(path) => {
                let mut src = fs::File::open(&path).map_err(|e| source_err(&path, e))?;
                // Bounded memory whatever the size (1 MiB buffer).
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = match src.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(source_err(&path, e)),
                    };
                    file.write_all(&buf[..n])?;
                }
            }
        }
        file.sync_all()?;
        // The link fails with AlreadyExists instead of replacing: put-if-absent.
        fs::hard_link(&tmp, &target)
    })();
    drop(file);
    // The temporary name goes in every case: after a link the object lives under `target`.
    let removed = fs::remove_file(&tmp);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    }
    // The object is complete under its name already; a stray temporary name is only litter.
    if let Err(e) = removed {
        tracing::warn!(path = %tmp.display(), error = %e, "cannot remove a temporary file");
    }
    sync_dir(&dir)?;
    Ok(true)
}

/// The blocking part of `list_page`: the first [`PAGE`] keys (plus one, to know whether there is
/// a next page) that start with `prefix` and sort after `after`.
fn list_blocking(
    root: &Path,
    prefix: &str,
    after: Option<&str>,
) -> io::Result<BTreeMap<String, (u64, Option<SystemTime>)>> {
    let mut found: BTreeMap<String, (u64, Option<SystemTime>)> = BTreeMap::new();
    // Start at the deepest directory the prefix names in full.
    let start_key = match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    };
    let mut stack = vec![(root.join(start_key), start_key.to_owned())];
    while let Some((dir, dir_key)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %entry.path().display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                let sub = format!("{dir_key}{name}/");
                let may_match = sub.starts_with(prefix) || prefix.starts_with(&sub);
                // Every key under `sub` sorts before `after` when `sub` does and is not a prefix
                // of it: skip the whole subtree.
                let all_before = after.is_some_and(|a| sub.as_str() < a && !a.starts_with(&sub));
                if may_match && !all_before {
                    stack.push((entry.path(), sub));
                }
            } else if file_type.is_file() && !name.starts_with(TMP_PREFIX) {
                let key = format!("{dir_key}{name}");
                if !key.starts_with(prefix) || after.is_some_and(|a| key.as_str() <= a) {
                    continue;
                }
                // Keep only the smallest PAGE + 1 keys: memory bounded by the page size.
                if found.len() > PAGE {
                    match found.last_key_value() {
                        Some((last, _)) if key.as_str() > last.as_str() => continue,
                        _ => {}
                    }
                }
                let meta = entry.metadata()?;
                found.insert(key, (meta.len(), meta.modified().ok()));
                if found.len() > PAGE + 1 {
                    found.pop_last();
                }
            }
        }
    }
    Ok(found)
}

#[async_trait]
impl ObjectStore for LocalDir {
    fn describe(&self) -> String {
        self.repo.to_string()
    }

    async fn put_if_absent(&self, key: &str, source: PutSource) -> Result<(), StorageError> {
        check_local_key(key)?;
        let root = self.root.clone();
        let owned_key = key.to_owned();
        let this = self.clone();
        self.blocking("put", key, move || {
            match put_blocking(&root, &owned_key, source) {
                Ok(true) => {
                    tracing::debug!(repo = %this.repo, key = %owned_key, "object written");
                    Ok(())
                }
                Ok(false) => Err(StorageError::AlreadyExists {
                    repo: this.repo.to_string(),
                    key: owned_key,
                }),
                Err(e) => Err(this.io_err("put", &owned_key, e)),
            }
        })
        .await
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream, StorageError> {
        check_key(key)?;
        let file = tokio::fs::File::open(self.path_of(key))
            .await
            .map_err(|e| self.read_err("get", key, e))?;
        let meta = file
            .metadata()
            .await
            .map_err(|e| self.io_err("get", key, e))?;
        if !meta.is_file() {
            return Err(self.not_found(key));
        }
        let this = self.clone();
        let key = key.to_owned();
        let stream = futures::stream::try_unfold(file, move |mut file| {
            let this = this.clone();
            let key = key.clone();
            async move {
                let mut buf = BytesMut::with_capacity(CHUNK);
                while buf.len() < CHUNK {
                    let n = file
                        .read_buf(&mut buf)
                        .await
                        .map_err(|e| this.io_err("read", &key, e))?;
                    if n == 0 {
                        break;
                    }
                }
                Ok(if buf.is_empty() {
                    None
                } else {
                    Some((buf.freeze(), file))
                })
            }
        });
        Ok(Box::pin(stream))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        check_key(key)?;
        let path = self.path_of(key);
        let this = self.clone();
        let owned_key = key.to_owned();
        self.blocking("get range", key, move || {
            let key = owned_key.as_str();
            let mut file = fs::File::open(&path).map_err(|e| this.read_err("get range", key, e))?;
            let meta = file
                .metadata()
                .map_err(|e| this.io_err("get range", key, e))?;
            if !meta.is_file() {
                return Err(this.not_found(key));
            }
            let size = meta.len();
            if range.start > size || range.end > size {
                return Err(StorageError::InvalidRange {
                    repo: this.repo.to_string(),
                    key: key.to_owned(),
                    start: range.start,
                    end: range.end,
                    size,
                });
            }
            if range.start >= range.end {
                return Ok(Bytes::new());
            }
            let len = usize::try_from(range.end - range.start)
                .map_err(|_| this.io_err("get range", key, io::Error::other("range too large")))?;
            let mut buf = vec![0u8; len];
            file.seek(SeekFrom::Start(range.start))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|e| this.io_err("get range", key, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        check_key(key)?;
        match tokio::fs::metadata(self.path_of(key)).await {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: meta.len(),
                last_modified: meta.modified().ok(),
            })),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(self.io_err("head", key, e)),
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StorageError> {
        check_prefix(prefix)?;
        let root = self.root.clone();
        let owned_prefix = prefix.to_owned();
        let this = self.clone();
        self.blocking("list", &format!("{prefix}*"), move || {
            let mut found = list_blocking(&root, &owned_prefix, after.as_deref())
                .map_err(|e| this.io_err("list", &format!("{owned_prefix}*"), e))?;
            let more = found.len() > PAGE;
            if more {
                found.pop_last();
            }
            let objects: Vec<ObjectMeta> = found
                .into_iter()
                .map(|(key, (size, last_modified))| ObjectMeta {
                    key,
                    size,
                    last_modified,
                })
                .collect();
            let next = if more {
                objects.last().map(|o| o.key.clone())
            } else {
                None
            };
            Ok(ListPage { objects, next })
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        // Empty parent directories stay: removing them could race with a put creating a file in
        // them.
        match tokio::fs::remove_file(self.path_of(key)).await {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(self.io_err("delete", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    fn store() -> (tempfile::TempDir, LocalDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalDir::new(dir.path().join("repo")).expect("open local repo");
        (dir, store)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[tokio::test]
    async fn put_get_range_head_delete() {
        let (_dir, store) = store();
        let data = pattern(3 * CHUNK + 17, 7);
        store
            .put_if_absent("a/b/c.seg", PutSource::Bytes(data.clone().into()))
            .await
            .unwrap();
        store
            .put_if_absent("empty", PutSource::Bytes(Bytes::new()))
            .await
            .unwrap();

        assert_eq!(store.get("a/b/c.seg").await.unwrap(), data);
        let chunks: Vec<Bytes> = store
            .get_stream("a/b/c.seg")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(chunks.len(), 4, "streamed in 1 MiB chunks");
        assert!(store.get("empty").await.unwrap().is_empty());

        assert_eq!(
            store.get_range("a/b/c.seg", 5..105).await.unwrap(),
            data[5..105]
        );
        let end = data.len() as u64;
        assert_eq!(
            store.get_range("a/b/c.seg", end - 3..end).await.unwrap(),
            data[data.len() - 3..]
        );
        assert!(store
            .get_range("a/b/c.seg", 10..10)
            .await
            .unwrap()
            .is_empty());
        let err = store.get_range("a/b/c.seg", 0..end + 1).await.unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidRange { size, .. } if size == end),
            "{err}"
        );

        let meta = store.head("a/b/c.seg").await.unwrap().unwrap();
        assert_eq!(meta.size, end);
        assert!(meta.last_modified.is_some());
        assert!(
            store.head("a/b").await.unwrap().is_none(),
            "directories are not objects"
        );

        store.delete("a/b/c.seg").await.unwrap();
        store.delete("a/b/c.seg").await.unwrap();
        assert!(store.head("a/b/c.seg").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn missing_objects_are_not_found() {
        let (_dir, store) = store();
        store
            .put_if_absent("file", PutSource::Bytes(Bytes::from_static(b"x")))
            .await
            .unwrap();
        for key in ["nope", "dir/nope", "file/below"] {
            assert!(store.get(key).await.unwrap_err().is_not_found(), "{key}");
            assert!(
                store.get_range(key, 0..1).await.unwrap_err().is_not_found(),
                "{key}"
            );
            assert!(store.head(key).await.unwrap().is_none(), "{key}");
        }
        let err = store.get("dir/nope").await.unwrap_err().to_string();
        assert!(err.contains("dir/nope") && err.contains("file://"), "{err}");
    }

    #[tokio::test]
    async fn put_if_absent_never_overwrites() {
        let (dir, store) = store();
        store
            .put_if_absent("k", PutSource::Bytes(Bytes::from_static(b"first")))
            .await
            .unwrap();
        let err = store
            .put_if_absent("k", PutSource::Bytes(Bytes::from_static(b"second")))
            .await
            .unwrap_err();
        assert!(err.is_already_exists(), "{err}");

        let src = dir.path().join("src.bin");
        fs::write(&src, pattern(CHUNK + 5, 1)).unwrap();
        let err = store
            .put_if_absent("k", PutSource::File(src.clone()))
            .await
            .unwrap_err();
        assert!(err.is_already_exists(), "{err}");
        assert_eq!(store.get("k").await.unwrap(), &b"first"[..]);

        store
            .put_if_absent("from/file", PutSource::File(src.clone()))
            .await
            .unwrap();
        assert_eq!(store.get("from/file").await.unwrap(), pattern(CHUNK + 5, 1));

        let missing = dir.path().join("missing.bin");
        let err = store
            .put_if_absent("other", PutSource::File(missing))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("missing.bin"), "{err}");
        assert!(store.head("other").await.unwrap().is_none());

        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(store.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.to_string_lossy().starts_with(TMP_PREFIX)),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn concurrent_puts_of_one_key_have_one_winner() {
        let (_dir, store) = store();
        let puts = (0..16u8).map(|i| {
            let store = store.clone();
            async move {
                store
                    .put_if_absent("race/k", PutSource::Bytes(vec![i; 1000].into()))
                    .await
            }
        });
        let results = futures::future::join_all(puts).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(StorageError::is_already_exists));
        let got = store.get("race/k").await.unwrap();
        assert!(
            got.iter().all(|b| *b == got[0]),
            "one writer's whole object"
        );
    }

    #[tokio::test]
    async fn listing_pages_in_order_and_skips_temp_files() {
        let (_dir, store) = store();
        let mut keys: Vec<String> = (0..2345)
            .map(|i| format!("seg/{:03}/{i:05}", i % 7))
            .collect();
        keys.push("seg-other".into());
        keys.push("zz".into());
        for key in &keys {
            store
                .put_if_absent(key, PutSource::Bytes(Bytes::from(key.clone())))
                .await
                .unwrap();
        }
        // Leftovers of a crashed put.
        fs::write(store.root().join("seg/000/.tmp-deadbeef"), b"partial").unwrap();
        fs::write(store.root().join(".tmp-0"), b"partial").unwrap();
        keys.sort();

        let first = store.list_page("", None).await.unwrap();
        assert_eq!(first.objects.len(), PAGE);
        assert_eq!(
            first.next.as_deref(),
            Some(first.objects[PAGE - 1].key.as_str())
        );

        let all: Vec<String> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(all, keys);

        let seg: Vec<String> = store
            .list("seg/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(seg.len(), 2345);
        assert!(seg.windows(2).all(|w| w[0] < w[1]));

        let partial: Vec<String> = store
            .list("seg")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(partial.len(), 2346, "seg/ and seg-other");
        let sub: Vec<ObjectMeta> = store.list("seg/003/0001").await.unwrap();
        let expect: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with("seg/003/0001"))
            .collect();
        assert_eq!(sub.iter().map(|o| &o.key).collect::<Vec<_>>(), expect);
        assert!(sub.iter().all(|o| o.size == o.key.len() as u64));

        assert!(store.list("nothing/").await.unwrap().is_empty());
        assert!(store.list_page("../", None).await.is_err());
    }

    #[tokio::test]
    async fn bad_keys_are_rejected() {
        let (_dir, store) = store();
        for key in ["", "/abs", "a/../b", "dir/.tmp-x"] {
            let err = store
                .put_if_absent(key, PutSource::Bytes(Bytes::new()))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidKey { .. }),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn describe_names_the_absolute_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDir::new(dir.path().join("x/y")).unwrap();
        let canonical = fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            store.describe(),
            format!("file://{}", canonical.join("x/y").display())
        );
    }
}
