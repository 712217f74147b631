//! Writing and reading segment objects: records → zstd → STREAM frames, and back
//! (`docs/format.md` §3.3). Memory is bounded by one frame plus zstd's window either way.

use std::io::{self, BufReader, Read, Write};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use super::header::{
    parse_preamble, PreambleError, SegmentHeader, StreamKind, WriterInfo, PREAMBLE_FIXED_LEN,
};
use crate::crypto::keys::{KeyError, Keyring, SecretKey, WrappedKey, WRAPPED_KEY_LEN};
use crate::crypto::stream::{
    into_frame_error, FrameError, FrameReader, FrameWriter, Trailer, DEFAULT_FRAME_SIZE,
    MAX_FRAME_SIZE, NONCE_PREFIX_LEN,
};

/// Largest zstd window a reader accepts (2^23 = 8 MiB; what levels 1-19 use at most).
const MAX_WINDOW_LOG: u32 = 23;

/// Largest record accepted (MongoDB documents are at most 16 MiB; oplog entries a little more).
pub const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;

/// What a writer needs to know before the first record.
#[derive(Debug, Clone)]
pub struct SegmentSpec {
    pub kind: StreamKind,
    /// The object key the segment will be stored under (bound into every frame).
    pub name: String,
    pub source: String,
    pub range: serde_json::Value,
    pub writer: WriterInfo,
    /// zstd level (1–19; 3 is the default trade-off).
    pub level: i32,
    /// Plaintext bytes per frame.
    pub frame_size: usize,
}

impl SegmentSpec {
    /// A spec with the default level (3) and frame size (64 KiB).
    pub fn new(
        kind: StreamKind,
        name: impl Into<String>,
        source: impl Into<String>,
        range: serde_json::Value,
    ) -> Self {
        Self {
            kind,
            name: name.into(),
            source: source.into(),
            range,
            writer: WriterInfo {
                id: String::new(),
                fence: 0,
            },
            level: 3,
            frame_size: DEFAULT_FRAME_SIZE,
        }
    }
}

/// The result of sealing a segment: what was written and the checksum of the stored bytes.
#[derive(Debug, Clone)]
pub struct SealedSegment {
    pub header: SegmentHeader,
    /// Bytes of the whole object.
    pub size: u64,
    /// Hex SHA-256 of the whole object, recorded in the catalog.
    pub sha256: String,
    pub records: u64,
    /// Bytes of the record stream before compression.
    pub plain_bytes: u64,
}

/// Why a segment could not be written or opened. Every variant names the object.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("segment {name}: {source}")]
    Preamble {
        name: String,
        #[source]
        source: PreambleError,
    },
    #[error("segment {name}: its header says it is {found:?}: the object was renamed or swapped with another")]
    NameMismatch { name: String, found: String },
    #[error("segment {name}: {source}")]
    Key {
        name: String,
        #[source]
        source: KeyError,
    },
    #[error("segment {name}: {source}")]
    Frame {
        name: String,
        #[source]
        source: FrameError,
    },
    #[error("segment {name} is corrupt: {detail}")]
    Corrupt { name: String, detail: String },
    #[error("segment {name}: record of {len} bytes exceeds the limit of {MAX_RECORD_LEN}")]
    RecordTooLarge { name: String, len: usize },
    #[error("segment {name}: {source}")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
}

impl FormatError {
    /// A one-word verdict for reports: `wrong-key`, `tampered`, `truncated`, `renamed`, `corrupt`
    /// or `io`.
    pub fn verdict(&self) -> &'static str {
        match self {
            FormatError::Key { .. } => "wrong-key",
            FormatError::Frame {
                source: FrameError::Truncated { .. },
                ..
            } => "truncated",
            FormatError::Preamble {
                source: PreambleError::Incomplete(_),
                ..
            } => "truncated",
            FormatError::Frame {
                source: FrameError::Io(_),
                ..
            }
            | FormatError::Io { .. } => "io",
            FormatError::Frame { .. } => "tampered",
            FormatError::NameMismatch { .. } => "renamed",
            FormatError::Preamble { .. }
            | FormatError::Corrupt { .. }
            | FormatError::RecordTooLarge { .. } => "corrupt",
        }
    }
}

/// Counts and hashes what passes through to the object.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one segment to `W`, record by record.
pub struct SegmentWriter<W: Write> {
    zstd: zstd::stream::write::Encoder<'static, FrameWriter<HashingWriter<W>>>,
    header: SegmentHeader,
    records: u64,
    plain_bytes: u64,
}

impl<W: Write> SegmentWriter<W> {
    /// Starts a segment: makes a fresh data key, wraps it with the keyring's primary key, and
    /// writes the preamble.
    pub fn new(out: W, spec: SegmentSpec, keyring: &Keyring) -> Result<Self, FormatError> {
        let name = spec.name.clone();
        let corrupt = |detail: String| FormatError::Corrupt {
            name: name.clone(),
            detail,
        };
        if spec.frame_size == 0 || spec.frame_size > MAX_FRAME_SIZE {
            return Err(corrupt(format!(
                "frame size {} outside 1..={MAX_FRAME_SIZE}",
                spec.frame_size
            )));
        }
        let key_err = |source| FormatError::Key {
            name: name.clone(),
            source,
        };
        let data_key = SecretKey::generate().map_err(key_err)?;
        let (key_id, wrapped) = keyring.wrap(&data_key).map_err(key_err)?;
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut prefix)
            .map_err(|e| key_err(KeyError::Random(e.to_string())))?;

        let header = SegmentHeader {
            kind: spec.kind,
            name: spec.name,
            source: spec.source,
            range: spec.range,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            writer: spec.writer,
            codec: "zstd".into(),
            level: spec.level,
            key_id: key_id.to_string(),
            wrapped_key: BASE64.encode(wrapped.0),
            nonce_prefix: BASE64.encode(prefix),
            frame_size: spec.frame_size as u32,
        };
        let preamble = header.encode_preamble().map_err(corrupt)?;
        let io_err = |source| FormatError::Io {
            name: name.clone(),
            source,
        };
        let mut sink = HashingWriter {
            inner: out,
            hasher: Sha256::new(),
            written: 0,
        };
        sink.write_all(&preamble).map_err(io_err)?;
        let frames = FrameWriter::new(sink, &data_key, &prefix, preamble, spec.frame_size);
        let zstd = zstd::stream::write::Encoder::new(frames, spec.level).map_err(io_err)?;
        Ok(Self {
            zstd,
            header,
            records: 0,
            plain_bytes: 0,
        })
    }

    /// The header being written.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes of the record stream so far (records plus their 4-byte lengths), before compression.
    pub fn plain_bytes(&self) -> u64 {
        self.plain_bytes
    }

    /// Appends one record.
    pub fn write_record(&mut self, record: &[u8]) -> Result<(), FormatError> {
        if record.len() > MAX_RECORD_LEN {
            return Err(FormatError::RecordTooLarge {
                name: self.header.name.clone(),
                len: record.len(),
            });
        }
        let len = (record.len() as u32).to_le_bytes();
        self.zstd
            .write_all(&len)
            .and_then(|_| self.zstd.write_all(record))
            .map_err(|source| FormatError::Io {
                name: self.header.name.clone(),
                source,
            })?;
        self.records += 1;
        self.plain_bytes += 4 + record.len() as u64;
        Ok(())
    }

    /// Ends the segment (final frame with the trailer) and returns the output and its summary.
    pub fn finish(self) -> Result<(W, SealedSegment), FormatError> {
        let name = self.header.name.clone();
        let io_err = |source| FormatError::Io {
            name: name.clone(),
            source,
        };
        let frames = self.zstd.finish().map_err(io_err)?;
        let trailer = Trailer {
            records: self.records,
            plain_bytes: self.plain_bytes,
        };
        let sink = frames.finish(trailer).map_err(io_err)?;
        let sealed = SealedSegment {
            header: self.header,
            size: sink.written,
            sha256: hex::encode(sink.hasher.finalize()),
            records: self.records,
            plain_bytes: self.plain_bytes,
        };
        Ok((sink.inner, sealed))
    }
}

/// Seals `records` into an in-memory object. For small segments and tests.
pub fn seal_to_vec<'a>(
    spec: SegmentSpec,
    keyring: &Keyring,
    records: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<u8>, SealedSegment), FormatError> {
    let mut w = SegmentWriter::new(Vec::new(), spec, keyring)?;
    for r in records {
        w.write_record(r)?;
    }
    w.finish()
}

/// A sealed segment in a spool file; the file is removed when this is dropped.
#[derive(Debug)]
pub struct SpoolFile(tempfile::TempPath);

impl SpoolFile {
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

/// Seals `records` into a new temporary file under `dir` (encrypted as it is written: no
/// plaintext touches the disk) and returns the file, removed when dropped, with the summary.
/// Memory stays bounded by one frame and zstd's context however large the segment.
pub fn seal_to_file<'a>(
    spec: SegmentSpec,
    keyring: &Keyring,
    records: impl IntoIterator<Item = &'a [u8]>,
    dir: &std::path::Path,
) -> Result<(SpoolFile, SealedSegment), FormatError> {
    let name = spec.name.clone();
    let io_err = |source| FormatError::Io {
        name: name.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let file = tempfile::Builder::new()
        .prefix(".seal-")
        .tempfile_in(dir)
        .map_err(io_err)?;
    let (handle, path) = file.into_parts();
    let mut writer = SegmentWriter::new(io::BufWriter::new(handle), spec, keyring)?;
    for r in records {
        writer.write_record(r)?;
    }
    let (out, sealed) = writer.finish()?;
    out.into_inner().map_err(|e| io_err(e.into_error()))?;
    Ok((SpoolFile(path), sealed))
}

type Decoder<R> = zstd::stream::read::Decoder<'static, BufReader<FrameReader<R>>>;

/// Reads one segment from `R`, record by record, checking everything.
///
/// Records are only trustworthy once [`SegmentReader::next_record`] has returned `Ok(false)`:
/// the end is where truncation and the trailer are checked. Callers that apply records as they
/// stream must be ready to undo or re-run (restore replay is idempotent for this reason).
pub struct SegmentReader<R: Read> {
    header: SegmentHeader,
    zstd: Option<Decoder<R>>,
    records: u64,
    plain_bytes: u64,
}

impl<R: Read> std::fmt::Debug for SegmentReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReader")
            .field("name", &self.header.name)
            .field("records", &self.records)
            .finish()
    }
}

impl<R: Read> SegmentReader<R> {
    /// Reads the preamble, checks the object is the one asked for (`expected_name`), unwraps its
    /// data key, and gets ready to stream records.
    pub fn open(mut input: R, expected_name: &str, keyring: &Keyring) -> Result<Self, FormatError> {
        let name = expected_name.to_owned();
        let pre_err = |source| FormatError::Preamble {
            name: name.clone(),
            source,
        };
        let io_err = |source| FormatError::Io {
            name: name.clone(),
            source,
        };
        let mut preamble = vec![0u8; PREAMBLE_FIXED_LEN];
        let got = read_full(&mut input, &mut preamble).map_err(io_err)?;
        preamble.truncate(got);
        let (header, len) = match parse_preamble(&preamble) {
            Ok(done) => done,
            Err(PreambleError::Incomplete(need)) if got == PREAMBLE_FIXED_LEN => {
                preamble.resize(need, 0);
                let got =
                    read_full(&mut input, &mut preamble[PREAMBLE_FIXED_LEN..]).map_err(io_err)?;
                preamble.truncate(PREAMBLE_FIXED_LEN + got);
                parse_preamble(&preamble).map_err(pre_err)?
            }
            Err(e) => return Err(pre_err(e)),
        };
        debug_assert_eq!(len, preamble.len());
        if header.name != expected_name {
            return Err(FormatError::NameMismatch {
                name,
                found: header.name,
            });
        }
        let corrupt = |detail: &str| FormatError::Corrupt {
            name: name.clone(),
            detail: detail.to_owned(),
        };
        let wrapped: [u8; WRAPPED_KEY_LEN] = BASE64
            .decode(&header.wrapped_key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| corrupt("wrapped_key is not 60 bytes of base64"))?;
        let prefix: [u8; NONCE_PREFIX_LEN] = BASE64
            .decode(&header.nonce_prefix)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| corrupt("nonce_prefix is not 7 bytes of base64"))?;
        let frame_size = header.frame_size as usize;
        if frame_size == 0 || frame_size > MAX_FRAME_SIZE {
            return Err(corrupt("frame_size out of range"));
        }
        let data_key = keyring
            .unwrap(&header.key_id, &WrappedKey(wrapped))
            .map_err(|source| FormatError::Key {
                name: name.clone(),
                source,
            })?;
        let frames = FrameReader::new(input, &data_key, &prefix, preamble, frame_size);
        let buffered = BufReader::with_capacity(frame_size, frames);
        let zstd = zstd::stream::read::Decoder::with_buffer(buffered)
            .map_err(|source| FormatError::Io {
                name: name.clone(),
                source,
            })?
            .single_frame();
        // Bound the decoder's window as docs/format.md promises: levels 1-19 never need more
        // than 2^23 bytes, and a larger declared window is refused instead of allocated.
        let mut zstd = zstd;
        zstd.window_log_max(MAX_WINDOW_LOG)
            .map_err(|source| FormatError::Io {
                name: name.clone(),
                source,
            })?;
        Ok(Self {
            header,
            zstd: Some(zstd),
            records: 0,
            plain_bytes: 0,
        })
    }

    /// The segment's header (already checked against the expected name; authenticated as each
    /// frame opens).
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Reads the next record into `buf`. Returns `Ok(false)` at the end, after checking the
    /// trailer, the final frame and that nothing follows it.
    pub fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<bool, FormatError> {
        let name = &self.header.name;
        let Some(zstd) = self.zstd.as_mut() else {
            return Ok(false);
        };
        let mut len = [0u8; 4];
        let got = read_full(zstd, &mut len).map_err(|e| stream_error(name, e))?;
        if got == 0 {
            self.finish()?;
            return Ok(false);
        }
        if got < 4 {
            return Err(corrupt(name, "record stream ends inside a record length"));
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_RECORD_LEN {
            return Err(FormatError::RecordTooLarge {
                name: name.clone(),
                len,
            });
        }
        // Grow the buffer only as bytes arrive: a lying length costs nothing until it is backed
        // by data (found by fuzzing).
        buf.clear();
        let got = zstd
            .by_ref()
            .take(len as u64)
            .read_to_end(buf)
            .map_err(|e| stream_error(name, e))?;
        if got < len {
            return Err(corrupt(name, "record stream ends inside a record"));
        }
        self.records += 1;
        self.plain_bytes += 4 + len as u64;
        Ok(true)
    }

    /// Reads every remaining record into memory. For small segments and tests.
    pub fn read_all(mut self) -> Result<Vec<Vec<u8>>, FormatError> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while self.next_record(&mut buf)? {
            out.push(std::mem::take(&mut buf));
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        let Some(zstd) = self.zstd.take() else {
            return Ok(());
        };
        let buffered = zstd.finish();
        if !buffered.buffer().is_empty() {
            return Err(self.corrupt("data follows the compressed record stream"));
        }
        let trailer = buffered
            .into_inner()
            .finish()
            .map_err(|source| FormatError::Frame {
                name: self.header.name.clone(),
                source,
            })?;
        if trailer.records != self.records || trailer.plain_bytes != self.plain_bytes {
            return Err(self.corrupt(&format!(
                "trailer says {} records / {} bytes, the stream held {} / {}",
                trailer.records, trailer.plain_bytes, self.records, self.plain_bytes
            )));
        }
        Ok(())
    }

    fn corrupt(&self, detail: &str) -> FormatError {
        corrupt(&self.header.name, detail)
    }
}

fn corrupt(name: &str, detail: &str) -> FormatError {
    FormatError::Corrupt {
        name: name.to_owned(),
        detail: detail.to_owned(),
    }
}

/// Sorts an error from the decompressing read chain into frame failures (carried through
/// `io::Error`), real I/O errors, and zstd's complaints about the stream itself.
fn stream_error(name: &str, e: io::Error) -> FormatError {
    let name = name.to_owned();
    match into_frame_error(e) {
        // Storage failing mid-read (carried through the sync bridge) is I/O, not corruption.
        FrameError::Io(e)
            if e.get_ref()
                .is_some_and(|inner| inner.is::<crate::storage::StorageError>()) =>
        {
            FormatError::Io { name, source: e }
        }
        FrameError::Io(e) => match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::Other | io::ErrorKind::UnexpectedEof => {
                FormatError::Corrupt {
                    name,
                    detail: format!("compressed stream: {e}"),
                }
            }
            _ => FormatError::Io { name, source: e },
        },
        source => FormatError::Frame { name, source },
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
