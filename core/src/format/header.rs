//! The plaintext preamble of a segment: magic, version, and the JSON header that names what the
//! segment holds and how to open it (`docs/format.md` §3–3.2).

use serde::{Deserialize, Serialize};

/// First 8 bytes of every segment.
pub const MAGIC: &[u8; 8] = b"MCBKSEG\0";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Magic + version + header length.
pub const PREAMBLE_FIXED_LEN: usize = 14;
/// Largest header accepted, so a corrupt length cannot make a reader allocate gigabytes.
pub const MAX_HEADER_LEN: usize = 64 * 1024;

/// Which stream a segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StreamKind {
    Oplog,
    SnapshotData,
    SnapshotManifest,
    KafkaOffsets,
    CatalogIndex,
    DrillReport,
}

impl StreamKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamKind::Oplog => "oplog",
            StreamKind::SnapshotData => "snapshot-data",
            StreamKind::SnapshotManifest => "snapshot-manifest",
            StreamKind::KafkaOffsets => "kafka-offsets",
            StreamKind::CatalogIndex => "catalog-index",
            StreamKind::DrillReport => "drill-report",
        }
    }
}

/// A MongoDB oplog timestamp: seconds and increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OplogTs {
    pub t: u32,
    pub i: u32,
}

impl OplogTs {
    pub fn new(t: u32, i: u32) -> Self {
        Self { t, i }
    }
}

impl std::fmt::Display for OplogTs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:010}", self.t, self.i)
    }
}

/// The range of an oplog segment (`docs/format.md` §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OplogRange {
    pub first: OplogTs,
    pub last: OplogTs,
    /// The `last` of the segment this one continues; `None` starts a new run.
    pub prev: Option<OplogTs>,
    pub count: u64,
}

/// Who wrote a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterInfo {
    pub id: String,
    /// Fencing token of the writer's capture lease; 0 when no lease applies.
    pub fence: u64,
}

/// The JSON header of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentHeader {
    pub kind: StreamKind,
    /// The object key the segment was written under.
    pub name: String,
    pub source: String,
    /// What the records cover; form depends on `kind`.
    pub range: serde_json::Value,
    /// RFC 3339 UTC.
    pub created: String,
    pub writer: WriterInfo,
    pub codec: String,
    pub level: i32,
    pub key_id: String,
    /// base64 of nonce ‖ wrapped data key ‖ tag.
    pub wrapped_key: String,
    /// base64 of the 7-byte STREAM nonce prefix.
    pub nonce_prefix: String,
    pub frame_size: u32,
}

impl SegmentHeader {
    /// The oplog range, when this is an oplog segment with a well-formed range.
    pub fn oplog_range(&self) -> Option<OplogRange> {
        (self.kind == StreamKind::Oplog)
            .then(|| serde_json::from_value(self.range.clone()).ok())
            .flatten()
    }

    /// The preamble bytes: magic, version, header length and header JSON.
    pub fn encode_preamble(&self) -> Result<Vec<u8>, String> {
        let json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        if json.len() > MAX_HEADER_LEN {
            return Err(format!(
                "header of {} bytes exceeds {MAX_HEADER_LEN}",
                json.len()
            ));
        }
        let mut out = Vec::with_capacity(PREAMBLE_FIXED_LEN + json.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        Ok(out)
    }
}

/// Why a preamble could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    #[error("not an mc-backup segment (bad magic)")]
    BadMagic,
    #[error(
        "segment format version {0}; this build reads version {FORMAT_VERSION} (upgrade mc-backup)"
    )]
    UnsupportedVersion(u16),
    #[error("header length {0} exceeds {MAX_HEADER_LEN}")]
    HeaderTooLarge(usize),
    #[error("need {0} bytes to read the header")]
    Incomplete(usize),
    #[error("header is not valid: {0}")]
    BadHeader(String),
}

/// Parses a preamble from the start of an object. Returns the header and the preamble length
/// (the offset where frames begin). `Incomplete(n)` asks for at least `n` bytes.
pub fn parse_preamble(bytes: &[u8]) -> Result<(SegmentHeader, usize), PreambleError> {
    if bytes.len() < PREAMBLE_FIXED_LEN {
        if !MAGIC.starts_with(&bytes[..bytes.len().min(8)]) {
            return Err(PreambleError::BadMagic);
        }
        return Err(PreambleError::Incomplete(PREAMBLE_FIXED_LEN));
    }
    if &bytes[..8] != MAGIC {
        return Err(PreambleError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(PreambleError::UnsupportedVersion(version));
    }
    let len = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
    if len > MAX_HEADER_LEN {
        return Err(PreambleError::HeaderTooLarge(len));
    }
    let end = PREAMBLE_FIXED_LEN + len;
    if bytes.len() < end {
        return Err(PreambleError::Incomplete(end));
    }
    let header: SegmentHeader = serde_json::from_slice(&bytes[PREAMBLE_FIXED_LEN..end])
        .map_err(|e| PreambleError::BadHeader(e.to_string()))?;
    if header.codec != "zstd" {
        return Err(PreambleError::BadHeader(format!(
            "unknown codec {:?}",
            header.codec
        )));
    }
    Ok((header, end))
}
