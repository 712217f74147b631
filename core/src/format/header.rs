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

    /// `ts:S:I`: the form `mc-restore --at` takes, for messages that quote a timestamp to pass
    /// back (`pass --at ts:1764065700:3`).
    pub fn arg(self) -> OplogTsText {
        OplogTsText {
            ts: self,
            with_time: false,
        }
    }

    /// `ts:S:I (2025-11-25T10:15:00.000Z)`: how messages show an oplog timestamp to people, the
    /// `--at` form with its time in RFC 3339 (UTC, milliseconds).
    pub fn text(self) -> OplogTsText {
        OplogTsText {
            ts: self,
            with_time: true,
        }
    }
}

impl From<bson::Timestamp> for OplogTs {
    fn from(ts: bson::Timestamp) -> Self {
        Self::new(ts.time, ts.increment)
    }
}

/// An [`OplogTs`] as messages show it: [`OplogTs::arg`] or [`OplogTs::text`]. The one
/// formatter of timestamps for people; [`OplogTs`]'s own `Display` (`S.IIIIIIIIII`, sorting as
/// text) is the form of object names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OplogTsText {
    ts: OplogTs,
    with_time: bool,
}

impl std::fmt::Display for OplogTsText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let OplogTs { t, i } = self.ts;
        write!(f, "ts:{t}:{i}")?;
        if self.with_time {
            // Every u32 of seconds is a valid time, so the fallback never shows.
            match chrono::DateTime::from_timestamp(i64::from(t), 0) {
                Some(time) => write!(
                    f,
                    " ({})",
                    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                )?,
                None => write!(f, " ({t} s)")?,
            }
        }
        Ok(())
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

#[cfg(test)]
mod oplog_ts_tests {
    use super::*;

    #[test]
    fn timestamps_show_as_the_at_form_with_their_time() {
        let ts = OplogTs::new(1_764_065_700, 3);
        assert_eq!(ts.arg().to_string(), "ts:1764065700:3");
        assert_eq!(
            ts.text().to_string(),
            "ts:1764065700:3 (2025-11-25T10:15:00.000Z)"
        );
        assert_eq!(
            OplogTs::new(0, 0).text().to_string(),
            "ts:0:0 (1970-01-01T00:00:00.000Z)"
        );
        assert_eq!(
            OplogTs::new(u32::MAX, u32::MAX).arg().to_string(),
            "ts:4294967295:4294967295"
        );
        // Object names keep their own sortable form.
        assert_eq!(ts.to_string(), "1764065700.0000000003");
    }

    #[test]
    fn bson_timestamps_convert() {
        let ts = bson::Timestamp {
            time: 7,
            increment: 9,
        };
        assert_eq!(OplogTs::from(ts), OplogTs::new(7, 9));
    }
}
