//! `verify`: reads every object of a repository (or of one source), checks its bytes against the
//! checksum the catalog recorded, and opens every frame. Reports exactly which object failed and
//! why: missing, checksum mismatch, wrong key, tampered, truncated, renamed, corrupt, or I/O.

use std::collections::BTreeMap;
use std::io::Read;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{RepoError, Repository};
use crate::format::{SegmentReader, StreamKind};

/// Objects verified at once.
const CONCURRENCY: usize = 4;

/// What verification found for one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ok,
    /// An index lists it; storage does not have it.
    Missing,
    /// The stored bytes differ from the checksum recorded when it was written.
    ChecksumMismatch,
    /// Its key is not in the keyring, or the key with its id does not open it.
    WrongKey,
    /// A frame failed authentication.
    Tampered,
    /// The object ends early.
    Truncated,
    /// Its header names another key: renamed or swapped.
    Renamed,
    /// Structurally broken (bad header, bad trailer, bad compression).
    Corrupt,
    /// Storage failed while reading it.
    Io,
}

/// One object's result.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub key: String,
    pub size: u64,
    pub records: u64,
    pub verdict: Verdict,
    /// Why, for anything but `Ok`.
    pub detail: Option<String>,
}

/// The result of a verification run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub objects: Vec<ObjectReport>,
}

impl VerifyReport {
    pub fn failures(&self) -> impl Iterator<Item = &ObjectReport> {
        self.objects.iter().filter(|o| o.verdict != Verdict::Ok)
    }
    pub fn is_ok(&self) -> bool {
        self.failures().next().is_none()
    }
}

/// Verifies every segment under `sources/<source>/` (all sources when `None`) and the indexes.
pub async fn verify(repo: &Repository, source: Option<&str>) -> Result<VerifyReport, RepoError> {
    let store = repo.store();
    let (data_prefix, index_prefix) = match source {
        Some(s) => (format!("sources/{s}/"), format!("index/{s}/")),
        None => ("sources/".to_owned(), "index/".to_owned()),
    };
    let mut objects = store.list(&data_prefix).await?;
    let indexes = store.list(&index_prefix).await?;

    // Checksums recorded by the newest index of each stream.
    let mut newest: BTreeMap<String, String> = BTreeMap::new();
    for idx in indexes.iter().filter(|o| o.key.ends_with(".idx.seg")) {
        let dir = idx
            .key
            .rsplit_once('/')
            .map(|(d, _)| d.to_owned())
            .unwrap_or_default();
        let entry = newest.entry(dir).or_default();
        if idx.key > *entry {
            *entry = idx.key.clone();
        }
    }
    let mut expected: BTreeMap<String, Option<String>> = BTreeMap::new();
    for key in newest.values() {
        // An index that does not open is reported below like any object; its checksums are
        // then simply not available.
        if let Ok((header, records)) = repo.read_segment(key).await {
            if header.kind == StreamKind::CatalogIndex {
                for rec in records {
                    if let Ok(e) = serde_json::from_slice::<super::SegmentEntry>(&rec) {
                        expected.insert(e.key, e.sha256);
                    }
                }
            }
        }
    }
    objects.extend(indexes);

    let listed: std::collections::BTreeSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let mut reports: Vec<ObjectReport> = expected
        .keys()
        .filter(|k| !listed.contains(k.as_str()))
        .map(|k| ObjectReport {
            key: k.clone(),
            size: 0,
            records: 0,
            verdict: Verdict::Missing,
            detail: Some("listed in the catalog index but not in storage".into()),
        })
        .collect();

    let checked: Vec<ObjectReport> =
        futures::stream::iter(objects.into_iter().filter(|o| o.key.ends_with(".seg")))
            .map(|obj| {
                let want = expected.get(&obj.key).cloned().flatten();
                async move { verify_object(repo, &obj.key, obj.size, want).await }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
    reports.extend(checked);
    reports.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(VerifyReport { objects: reports })
}

/// Streams one object through SHA-256 and a full open.
async fn verify_object(
    repo: &Repository,
    key: &str,
    size: u64,
    want_sha: Option<String>,
) -> Result<ObjectReport, RepoError> {
    let report = |verdict, records, detail: Option<String>| ObjectReport {
        key: key.to_owned(),
        size,
        records,
        verdict,
        detail,
    };
    let stream = match repo.store().get_stream(key).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(report(Verdict::Missing, 0, Some(e.to_string()))),
        Err(e) => return Ok(report(Verdict::Io, 0, Some(e.to_string()))),
    };
    let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let keyring = repo.keyring().clone();
    let name = key.to_owned();
    let (opened, sha) = tokio::task::spawn_blocking(move || {
        let mut hashing = HashingReader {
            inner: bridge,
            hasher: Sha256::new(),
        };
        let opened = SegmentReader::open(&mut hashing, &name, &keyring).and_then(|mut r| {
            let mut buf = Vec::new();
            let mut n = 0u64;
            while r.next_record(&mut buf)? {
                n += 1;
            }
            Ok(n)
        });
        // Hash whatever the reader did not consume, so the checksum covers the whole object.
        let _ = std::io::copy(&mut hashing, &mut std::io::sink());
        (opened, hex::encode(hashing.hasher.finalize()))
    })
    .await
    .map_err(|e| RepoError::Task(e.to_string()))?;

    if let Some(want) = want_sha {
        if want != sha {
            let detail = format!("stored bytes hash to {sha}, the catalog recorded {want}");
            return Ok(report(Verdict::ChecksumMismatch, 0, Some(detail)));
        }
    }
    Ok(match opened {
        Ok(records) => report(Verdict::Ok, records, None),
        Err(e) => {
            let verdict = match e.verdict() {
                "wrong-key" => Verdict::WrongKey,
                "tampered" => Verdict::Tampered,
                "truncated" => Verdict::Truncated,
                "renamed" => Verdict::Renamed,
                "io" => Verdict::Io,
                _ => Verdict::Corrupt,
            };
            report(verdict, 0, Some(e.to_string()))
        }
    })
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
