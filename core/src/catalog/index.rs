//! The list of a stream's segments. The objects are the truth; an index object
//! (`index/<source>/<stream>/…`) only saves reading every header. [`Catalog::load`] combines the
//! newest index with a listing; [`rebuild`] regenerates an index from the objects alone.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::names::{index_key, index_prefix, stream_prefix};
use super::{read_header, RepoError, Repository};
use crate::format::{OplogRange, SealedSegment, SegmentHeader, SegmentSpec, StreamKind};

/// How many headers are fetched at once when listing without an index.
const HEADER_CONCURRENCY: usize = 16;

/// What the catalog knows of one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    pub key: String,
    pub kind: StreamKind,
    /// Bytes of the stored object.
    pub size: u64,
    /// Hex SHA-256 of the stored object; `None` when known only from a listing.
    pub sha256: Option<String>,
    pub range: serde_json::Value,
    pub created: String,
    pub fence: u64,
    pub key_id: String,
}

impl SegmentEntry {
    pub fn from_sealed(sealed: &SealedSegment) -> Self {
        Self::from_header(&sealed.header, sealed.size, Some(sealed.sha256.clone()))
    }

    pub fn from_header(header: &SegmentHeader, size: u64, sha256: Option<String>) -> Self {
        Self {
            key: header.name.clone(),
            kind: header.kind,
            size,
            sha256,
            range: header.range.clone(),
            created: header.created.clone(),
            fence: header.writer.fence,
            key_id: header.key_id.clone(),
        }
    }

    /// The oplog range, for oplog segments.
    pub fn oplog_range(&self) -> Option<OplogRange> {
        (self.kind == StreamKind::Oplog)
            .then(|| serde_json::from_value(self.range.clone()).ok())
            .flatten()
    }
}

/// The segments of one stream of one source, ascending by key.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub segments: Vec<SegmentEntry>,
    /// Keys the index lists but storage no longer has (deleted or lost objects).
    pub missing: Vec<String>,
    /// The index object used, if any.
    pub index: Option<String>,
}

impl Catalog {
    /// Lists a stream: the newest index, plus headers of the segments written after it.
    pub async fn load(
        repo: &Repository,
        source: &str,
        stream: StreamKind,
    ) -> Result<Self, RepoError> {
        let store = repo.store();
        let listed = store.list(&stream_prefix(source, stream)).await?;
        let listed: BTreeMap<String, u64> = listed
            .into_iter()
            .filter(|o| o.key.ends_with(".seg"))
            .map(|o| (o.key, o.size))
            .collect();

        let mut indexed: BTreeMap<String, SegmentEntry> = BTreeMap::new();
        let indexes = store.list(&index_prefix(source, stream)).await?;
        let newest = indexes
            .iter()
            .map(|o| o.key.clone())
            .filter(|k| k.ends_with(".idx.seg"))
            .max();
        if let Some(key) = &newest {
            let (_, records) = repo.read_segment(key).await?;
            for rec in records {
                let entry: SegmentEntry =
                    serde_json::from_slice(&rec).map_err(|e| RepoError::BadObject {
                        repo: store.describe(),
                        key: key.clone(),
                        detail: format!("index record: {e}"),
                    })?;
                indexed.insert(entry.key.clone(), entry);
            }
        }

        let missing: Vec<String> = indexed
            .keys()
            .filter(|k| !listed.contains_key(*k))
            .cloned()
            .collect();
        for k in &missing {
            indexed.remove(k);
        }
        let unindexed: Vec<(String, u64)> = listed
            .iter()
            .filter(|(k, _)| !indexed.contains_key(*k))
            .map(|(k, s)| (k.clone(), *s))
            .collect();
        let fresh: Vec<SegmentEntry> = futures::stream::iter(unindexed)
            .map(|(key, size)| async move {
                let header = read_header(store.as_ref(), &key).await?;
                if header.name != key {
                    return Err(RepoError::BadObject {
                        repo: store.describe(),
                        key: key.clone(),
                        detail: format!("its header names {:?}: renamed or swapped", header.name),
                    });
                }
                Ok::<_, RepoError>(SegmentEntry::from_header(&header, size, None))
            })
            .buffered(HEADER_CONCURRENCY)
            .try_collect()
            .await?;
        let mut segments: Vec<SegmentEntry> = indexed.into_values().chain(fresh).collect();
        segments.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            segments,
            missing,
            index: newest,
        })
    }

    /// Writes an index of these segments (those with a checksum). Returns its key, or `None`
    /// when there is nothing to index.
    pub async fn write_index(
        &self,
        repo: &Repository,
        source: &str,
        stream: StreamKind,
    ) -> Result<Option<String>, RepoError> {
        let entries: Vec<&SegmentEntry> = self
            .segments
            .iter()
            .filter(|e| e.sha256.is_some())
            .collect();
        let Some(last) = entries.last() else {
            return Ok(None);
        };
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let key = index_key(source, stream, &last.key, now_ms);
        let records: Vec<Vec<u8>> = entries
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()
            .map_err(|e| RepoError::Task(e.to_string()))?;
        let spec = SegmentSpec::new(
            StreamKind::CatalogIndex,
            key.clone(),
            source,
            serde_json::json!({"stream": stream.as_str(), "last": last.key}),
        );
        repo.put_segment(spec, records).await?;
        Ok(Some(key))
    }
}

/// Rebuilds a stream's index from the objects alone: lists them, reads each whole object to
/// checksum it and parse its header, and writes a new index. Returns the catalog and the new
/// index key.
pub async fn rebuild(
    repo: &Repository,
    source: &str,
    stream: StreamKind,
) -> Result<(Catalog, Option<String>), RepoError> {
    let store = repo.store();
    let listed = store.list(&stream_prefix(source, stream)).await?;
    let segments: Vec<SegmentEntry> =
        futures::stream::iter(listed.into_iter().filter(|o| o.key.ends_with(".seg")))
            .map(|obj| async move {
                let bytes = store.get(&obj.key).await?;
                let sha = hex::encode(Sha256::digest(&bytes));
                let (header, _) =
                    crate::format::parse_preamble(&bytes).map_err(|e| RepoError::BadObject {
                        repo: store.describe(),
                        key: obj.key.clone(),
                        detail: e.to_string(),
                    })?;
                if header.name != obj.key {
                    return Err(RepoError::BadObject {
                        repo: store.describe(),
                        key: obj.key.clone(),
                        detail: format!("its header names {:?}: renamed or swapped", header.name),
                    });
                }
                Ok::<_, RepoError>(SegmentEntry::from_header(
                    &header,
                    bytes.len() as u64,
                    Some(sha),
                ))
            })
            .buffered(4)
            .try_collect()
            .await?;
    let catalog = Catalog {
        segments,
        missing: Vec::new(),
        index: None,
    };
    let key = catalog.write_index(repo, source, stream).await?;
    Ok((catalog, key))
}
