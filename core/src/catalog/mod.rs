//! The catalog: a repository as a whole. [`Repository`] joins an object store and a keyring to
//! store and open segments; [`names`] says what objects are called; [`index`] lists the segments
//! of a stream (from an index object plus a listing, or from the objects alone); [`timeline`]
//! turns oplog segments into continuous runs and gaps; [`verify`] checks every object.

pub mod index;
pub mod kafka;
pub mod names;
pub mod retention;
pub mod snapshots;
pub mod timeline;
pub mod verify;

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::crypto::Keyring;
use crate::format::{
    parse_preamble, seal_to_file, seal_to_vec, FormatError, PreambleError, SealedSegment,
    SegmentHeader, SegmentReader, SegmentSpec, SpoolFile,
};
use crate::storage::{ObjectStore, PutSource, RepoUrl, StorageError, StoreOptions};

pub use index::{Catalog, SegmentEntry};
pub use snapshots::{
    list_snapshots, restorable_windows, CollectionEntry, Coverage, RestorableWindow,
    SnapshotManifest,
};
pub use timeline::{Gap, Run, Timeline};
pub use verify::{verify, ObjectReport, Verdict, VerifyReport};

/// The key of the repository's config object.
pub const CONFIG_KEY: &str = "config";
/// Repository format this build writes and reads.
pub const REPO_FORMAT: u32 = 1;

/// The repository's config object (`docs/format.md` §6). Carries no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub format: u32,
    pub id: String,
    pub created: String,
}

/// Errors of repository operations; each names the repository or object concerned.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{repo} is not an mc-backup repository (no `config` object); check the URL, or create one with `mc-agent init`")]
    NotInitialized { repo: String },
    #[error("{repo} is repository format {found}; this build reads format {REPO_FORMAT} (upgrade mc-backup)")]
    UnsupportedFormat { repo: String, found: u32 },
    #[error("object {key} in {repo}: {detail}")]
    BadObject {
        repo: String,
        key: String,
        detail: String,
    },
    #[error("a background task failed: {0}")]
    Task(String),
}

/// Records to seal into one segment, owned so that sealing runs on a blocking thread.
pub trait Records: Send + 'static {
    /// The records, in order.
    fn records(&self) -> impl Iterator<Item = &[u8]>;
    /// Their total size, to choose between memory and a spool file.
    fn bytes(&self) -> u64;
}

impl Records for Vec<Vec<u8>> {
    fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.iter().map(Vec::as_slice)
    }
    fn bytes(&self) -> u64 {
        self.iter().map(|r| r.len() as u64).sum()
    }
}

/// Where [`Repository::seal`] puts segments larger than `over` bytes of records.
#[derive(Debug, Clone)]
pub struct Spool {
    pub dir: std::path::PathBuf,
    pub over: u64,
}

/// A sealed segment waiting to be stored: its bytes in memory or its spool file (removed when
/// this is dropped), and what it holds.
#[derive(Debug)]
pub struct Sealed {
    source: PutSource,
    info: SealedSegment,
    _spool: Option<SpoolFile>,
}

impl Sealed {
    /// The sealed segment's header, size and digest.
    pub fn info(&self) -> &SealedSegment {
        &self.info
    }
}

/// An object store plus the keyring that opens what is in it.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    keyring: Keyring,
}

impl Repository {
    pub fn new(store: Arc<dyn ObjectStore>, keyring: Keyring) -> Self {
        Self { store, keyring }
    }

    /// Opens the store at `url` and checks it is a repository this build reads. With `create`,
    /// an empty location becomes a new repository.
    pub async fn open(url: &RepoUrl, keyring: Keyring, create: bool) -> Result<Self, RepoError> {
        Self::open_with(url, keyring, create, StoreOptions::default()).await
    }

    /// [`Repository::open`] with the store's layers as `options` say (the agent retries
    /// forever and reports the store's health; see [`crate::storage::open_with`]).
    pub async fn open_with(
        url: &RepoUrl,
        keyring: Keyring,
        create: bool,
        options: StoreOptions,
    ) -> Result<Self, RepoError> {
        let repo = Self::new(crate::storage::open_with(url, options).await?, keyring);
        if create {
            repo.init().await?;
        } else {
            repo.config().await?;
        }
        Ok(repo)
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Writes the config object if there is none, then returns the repository's config.
    pub async fn init(&self) -> Result<RepoConfig, RepoError> {
        let config = RepoConfig {
            format: REPO_FORMAT,
            id: hex::encode(rand::random::<[u8; 16]>()),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let body =
            serde_json::to_vec_pretty(&config).map_err(|e| self.bad(CONFIG_KEY, e.to_string()))?;
        match self
            .store
            .put_if_absent(CONFIG_KEY, PutSource::Bytes(body.into()))
            .await
        {
            Ok(()) => {
                tracing::info!(repo = %self.store.describe(), id = %config.id, "created repository");
                Ok(config)
            }
            Err(e) if e.is_already_exists() => self.config().await,
            Err(e) => Err(e.into()),
        }
    }

    /// Reads and checks the config object.
    pub async fn config(&self) -> Result<RepoConfig, RepoError> {
        let bytes = match self.store.get(CONFIG_KEY).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(RepoError::NotInitialized {
                    repo: self.store.describe(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let config: RepoConfig =
            serde_json::from_slice(&bytes).map_err(|e| self.bad(CONFIG_KEY, e.to_string()))?;
        if config.format != REPO_FORMAT {
            return Err(RepoError::UnsupportedFormat {
                repo: self.store.describe(),
                found: config.format,
            });
        }
        Ok(config)
    }

    /// Seals `records` into a segment (on a blocking thread) and stores it with put-if-absent.
    /// For segments that fit in memory; the agent bounds their size.
    pub async fn put_segment(
        &self,
        spec: SegmentSpec,
        records: Vec<Vec<u8>>,
    ) -> Result<SegmentEntry, RepoError> {
        let sealed = self.seal(spec, records, None).await.map_err(|(_, e)| e)?;
        self.store_sealed(&sealed).await
    }

    /// Seals `records` into a temporary file under `spool_dir` (encrypted as it is written, so
    /// no plaintext touches the disk) and uploads it from there: memory stays bounded by one
    /// frame however large the segment. The spool file is removed afterwards.
    pub async fn put_segment_spooled(
        &self,
        spec: SegmentSpec,
        records: Vec<Vec<u8>>,
        spool_dir: &std::path::Path,
    ) -> Result<SegmentEntry, RepoError> {
        let spool = Spool {
            dir: spool_dir.to_owned(),
            over: 0,
        };
        let sealed = self
            .seal(spec, records, Some(spool))
            .await
            .map_err(|(_, e)| e)?;
        self.store_sealed(&sealed).await
    }

    /// Seals `records` into a segment on a blocking thread: into memory, or into a spool file
    /// when `spool` is given and the records are larger than its threshold. The records are
    /// freed once sealed; on failure they come back with the error, for a retry. Store the
    /// result with [`Repository::store_sealed`] (as often as needed: it is sealed once).
    pub async fn seal<R: Records>(
        &self,
        spec: SegmentSpec,
        records: R,
        spool: Option<Spool>,
    ) -> Result<Sealed, (R, RepoError)> {
        let keyring = self.keyring.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let result = match spool {
                Some(spool) if records.bytes() > spool.over => {
                    seal_to_file(spec, &keyring, records.records(), &spool.dir).map(
                        |(file, info)| Sealed {
                            source: PutSource::File(file.path().to_owned()),
                            info,
                            _spool: Some(file),
                        },
                    )
                }
                _ => seal_to_vec(spec, &keyring, records.records()).map(|(bytes, info)| Sealed {
                    source: PutSource::Bytes(bytes.into()),
                    info,
                    _spool: None,
                }),
            };
            match result {
                Ok(sealed) => Ok(sealed),
                Err(e) => Err((records, RepoError::Format(e))),
            }
        })
        .await;
        match joined {
            Ok(result) => result,
            // A panic while sealing is a bug, not a condition a retry would clear.
            Err(e) => panic!("sealing task failed: {e}"),
        }
    }

    /// Stores a sealed segment under the name in its header, with put-if-absent.
    pub async fn store_sealed(&self, sealed: &Sealed) -> Result<SegmentEntry, RepoError> {
        self.store
            .put_if_absent(&sealed.info.header.name, sealed.source.clone())
            .await?;
        Ok(SegmentEntry::from_sealed(&sealed.info))
    }

    /// Stores an already sealed segment under the name in its header.
    pub async fn put_sealed(
        &self,
        bytes: Bytes,
        sealed: SealedSegment,
    ) -> Result<SegmentEntry, RepoError> {
        let key = sealed.header.name.clone();
        self.store
            .put_if_absent(&key, PutSource::Bytes(bytes))
            .await?;
        Ok(SegmentEntry::from_sealed(&sealed))
    }

    /// Reads just the plaintext header of a segment (no key needed), with a ranged read.
    pub async fn read_header(&self, key: &str) -> Result<SegmentHeader, RepoError> {
        read_header(self.store.as_ref(), key).await
    }

    /// Fetches a whole segment and returns its records. For small segments and tests; use
    /// [`Repository::scan_segment`] for bounded memory.
    pub async fn read_segment(
        &self,
        key: &str,
    ) -> Result<(SegmentHeader, Vec<Vec<u8>>), RepoError> {
        let bytes = self.store.get(key).await?;
        let keyring = self.keyring.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            let reader = SegmentReader::open(&bytes[..], &key, &keyring)?;
            let header = reader.header().clone();
            Ok((header, reader.read_all()?))
        })
        .await
        .map_err(|e| RepoError::Task(e.to_string()))?
    }

    /// Streams a segment from storage through `on_record`, on a blocking thread, with memory
    /// bounded by one frame. Returns the header and the number of records. Records passed to
    /// `on_record` are authenticated frame by frame; the segment as a whole is proven complete
    /// only when this returns `Ok`.
    pub async fn scan_segment<F>(
        &self,
        key: &str,
        mut on_record: F,
    ) -> Result<(SegmentHeader, u64), RepoError>
    where
        F: FnMut(&[u8]) -> Result<(), String> + Send + 'static,
    {
        let stream = self.store.get_stream(key).await?;
        let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let keyring = self.keyring.clone();
        let key = key.to_owned();
        let repo = self.store.describe();
        tokio::task::spawn_blocking(move || {
            let input: Box<dyn Read + Send> = Box::new(bridge);
            let mut reader = SegmentReader::open(input, &key, &keyring)?;
            let header = reader.header().clone();
            let mut buf = Vec::new();
            let mut n = 0;
            while reader.next_record(&mut buf)? {
                on_record(&buf).map_err(|detail| RepoError::BadObject {
                    repo: repo.clone(),
                    key: key.clone(),
                    detail,
                })?;
                n += 1;
            }
            Ok((header, n))
        })
        .await
        .map_err(|e| RepoError::Task(e.to_string()))?
    }

    fn bad(&self, key: &str, detail: String) -> RepoError {
        RepoError::BadObject {
            repo: self.store.describe(),
            key: key.to_owned(),
            detail,
        }
    }
}

/// Reads the plaintext header of a segment with one or two ranged reads.
pub async fn read_header(store: &dyn ObjectStore, key: &str) -> Result<SegmentHeader, RepoError> {
    const FIRST_READ: u64 = 4096;
    let bad = |detail: String| RepoError::BadObject {
        repo: store.describe(),
        key: key.to_owned(),
        detail,
    };
    let size = store
        .head(key)
        .await?
        .ok_or_else(|| StorageError::NotFound {
            repo: store.describe(),
            key: key.to_owned(),
        })?
        .size;
    let first = store.get_range(key, 0..FIRST_READ.min(size)).await?;
    match parse_preamble(&first) {
        Ok((header, _)) => Ok(header),
        Err(PreambleError::Incomplete(need))
            if (need as u64) <= size && first.len() as u64 == FIRST_READ.min(size) =>
        {
            let all = store.get_range(key, 0..need as u64).await?;
            parse_preamble(&all)
                .map(|(h, _)| h)
                .map_err(|e| bad(e.to_string()))
        }
        Err(PreambleError::Incomplete(_)) => {
            Err(bad("object ends inside its header: truncated".into()))
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The source ids that have objects in the repository, sorted. Lists every object under
/// `sources/`, so it costs one listing of the repository.
pub async fn list_sources(repo: &Repository) -> Result<Vec<String>, RepoError> {
    let mut sources: Vec<String> = repo
        .store()
        .list("sources/")
        .await?
        .into_iter()
        .filter_map(|o| o.key.split('/').nth(1).map(str::to_owned))
        .collect();
    sources.sort();
    sources.dedup();
    Ok(sources)
}
