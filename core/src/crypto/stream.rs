//! STREAM frames: a segment body encrypted with AES-256-GCM as an online AEAD
//! (`docs/format.md` §3.3). [`FrameWriter`] is a `Write` that cuts its input into frames of at
//! most `frame_size` bytes; [`FrameReader`] is a `Read` that returns their plaintext in order and
//! fails on any tampering, reordering or truncation. Memory: one frame each.

use std::io::{self, Read, Write};

use aead_stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;

use super::keys::DataKey;

/// Bytes of the STREAM nonce prefix for AES-GCM (12-byte nonce − 4 counter − 1 flag).
pub const NONCE_PREFIX_LEN: usize = 7;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Default plaintext bytes per frame.
pub const DEFAULT_FRAME_SIZE: usize = 64 * 1024;
/// Largest frame a reader accepts (bounds its memory).
pub const MAX_FRAME_SIZE: usize = 1024 * 1024;
/// Length of the trailer carried by the final frame.
pub const TRAILER_LEN: usize = 16;

const LAST_FLAG: u32 = 1 << 31;

/// What the final frame says about the record stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub records: u64,
    pub plain_bytes: u64,
}

impl Trailer {
    fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..8].copy_from_slice(&self.records.to_le_bytes());
        out[8..].copy_from_slice(&self.plain_bytes.to_le_bytes());
        out
    }
    fn decode(b: &[u8]) -> Option<Self> {
        (b.len() == TRAILER_LEN).then(|| Self {
            records: u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
            plain_bytes: u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
        })
    }
}

/// Why reading frames failed. The segment reader adds the object's name.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame {frame} failed authentication (tampered, reordered, from another object, or a wrong key)")]
    Tampered { frame: u32 },
    #[error("object ends inside or before frame {frame}: truncated")]
    Truncated { frame: u32 },
    #[error("frame {frame} declares {len} bytes, more than {max} or too few to hold anything")]
    BadLength { frame: u32, len: u32, max: usize },
    #[error("{0} bytes follow the final frame")]
    TrailingData(u64),
    #[error("final frame does not hold a {TRAILER_LEN}-byte trailer")]
    BadTrailer,
    #[error("too many frames (over 2^32)")]
    TooManyFrames,
    #[error(transparent)]
    Io(io::Error),
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Encrypts what is written to it into frames on `out`.
pub struct FrameWriter<W: Write> {
    out: W,
    enc: EncryptorBE32<Aes256Gcm>,
    aad: Vec<u8>,
    buf: Vec<u8>,
    frame_size: usize,
}

impl<W: Write> FrameWriter<W> {
    /// `aad` is the segment preamble, bound to every frame.
    pub fn new(
        out: W,
        key: &DataKey,
        nonce_prefix: &[u8; NONCE_PREFIX_LEN],
        aad: Vec<u8>,
        frame_size: usize,
    ) -> Self {
        let aead = Aes256Gcm::new(key.expose().into());
        let enc = EncryptorBE32::from_aead(aead, nonce_prefix.into());
        Self {
            out,
            enc,
            aad,
            buf: Vec::with_capacity(frame_size + TAG_LEN),
            frame_size,
        }
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.enc
            .encrypt_next_in_place(&self.aad, &mut self.buf)
            .map_err(|_| io::Error::other(FrameError::TooManyFrames))?;
        write_frame(&mut self.out, &self.buf, false)?;
        self.buf.clear();
        Ok(())
    }

    /// Flushes the last data frame, writes the final frame with `trailer`, and returns the output.
    pub fn finish(mut self, trailer: Trailer) -> io::Result<W> {
        self.emit()?;
        let mut last = trailer.encode().to_vec();
        self.enc
            .encrypt_last_in_place(&self.aad, &mut last)
            .map_err(|_| io::Error::other(FrameError::TooManyFrames))?;
        write_frame(&mut self.out, &last, true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn write_frame<W: Write>(out: &mut W, ciphertext: &[u8], last: bool) -> io::Result<()> {
    let len = u32::try_from(ciphertext.len()).map_err(|_| io::Error::other("frame too large"))?;
    let word = if last { len | LAST_FLAG } else { len };
    out.write_all(&word.to_le_bytes())?;
    out.write_all(ciphertext)
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.frame_size - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.frame_size {
            self.emit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Frames are cut by size only, so that frame boundaries do not depend on flush calls.
        Ok(())
    }
}

/// Decrypts frames from `input`, yielding their plaintext as a `Read`.
pub struct FrameReader<R: Read> {
    input: R,
    dec: Option<DecryptorBE32<Aes256Gcm>>,
    aad: Vec<u8>,
    buf: Vec<u8>,
    pos: usize,
    frame: u32,
    max_frame: usize,
    trailer: Option<Trailer>,
}

impl<R: Read> FrameReader<R> {
    pub fn new(
        input: R,
        key: &DataKey,
        nonce_prefix: &[u8; NONCE_PREFIX_LEN],
        aad: Vec<u8>,
        frame_size: usize,
    ) -> Self {
        let aead = Aes256Gcm::new(key.expose().into());
        let dec = DecryptorBE32::from_aead(aead, nonce_prefix.into());
        Self {
            input,
            dec: Some(dec),
            aad,
            buf: Vec::new(),
            pos: 0,
            frame: 0,
            max_frame: frame_size.min(MAX_FRAME_SIZE) + TAG_LEN,
            trailer: None,
        }
    }

    /// The trailer, once the final frame has been read.
    pub fn trailer(&self) -> Option<Trailer> {
        self.trailer
    }

    /// Reads to the final frame (there must be no plaintext left) and checks nothing follows it.
    pub fn finish(mut self) -> Result<Trailer, FrameError> {
        let mut rest = [0u8; 1];
        match self.read(&mut rest) {
            Ok(0) => {}
            // Plaintext the caller did not consume: the record stream is longer than it said.
            Ok(_) => return Err(FrameError::TrailingData(1)),
            Err(e) => return Err(into_frame_error(e)),
        }
        let mut extra = Vec::new();
        let n = (&mut self.input)
            .take(1 << 20)
            .read_to_end(&mut extra)
            .map_err(FrameError::Io)?;
        if n > 0 {
            return Err(FrameError::TrailingData(n as u64));
        }
        self.trailer
            .ok_or(FrameError::Truncated { frame: self.frame })
    }

    /// Loads the next frame into `buf`. Returns false after the final frame.
    fn next_frame(&mut self) -> Result<bool, FrameError> {
        let Some(dec) = self.dec.as_mut() else {
            return Ok(false);
        };
        let frame = self.frame;
        let mut word = [0u8; 4];
        read_exact_or_truncated(&mut self.input, &mut word, frame)?;
        let word = u32::from_le_bytes(word);
        let last = word & LAST_FLAG != 0;
        let len = word & !LAST_FLAG;
        // The final frame always holds exactly the trailer, whatever the frame size.
        let (min, max) = if last {
            (TRAILER_LEN + TAG_LEN, TRAILER_LEN + TAG_LEN)
        } else {
            (TAG_LEN + 1, self.max_frame)
        };
        if (len as usize) < min || len as usize > max {
            return Err(FrameError::BadLength { frame, len, max });
        }
        self.buf.resize(len as usize, 0);
        read_exact_or_truncated(&mut self.input, &mut self.buf, frame)?;
        self.pos = 0;
        if last {
            let dec = self.dec.take().ok_or(FrameError::Tampered { frame })?;
            dec.decrypt_last_in_place(&self.aad, &mut self.buf)
                .map_err(|_| FrameError::Tampered { frame })?;
            self.trailer = Some(Trailer::decode(&self.buf).ok_or(FrameError::BadTrailer)?);
            self.buf.clear();
            Ok(false)
        } else {
            dec.decrypt_next_in_place(&self.aad, &mut self.buf)
                .map_err(|_| FrameError::Tampered { frame })?;
            self.frame = frame.checked_add(1).ok_or(FrameError::TooManyFrames)?;
            Ok(true)
        }
    }
}

fn read_exact_or_truncated<R: Read>(
    input: &mut R,
    buf: &mut [u8],
    frame: u32,
) -> Result<(), FrameError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated { frame },
        _ => FrameError::Io(e),
    })
}

/// Recovers a [`FrameError`] carried through `io::Error` by a `Read` chain (e.g. zstd on top of
/// the frames); any other I/O error becomes [`FrameError::Io`].
pub fn into_frame_error(e: io::Error) -> FrameError {
    let is_frame = e.get_ref().is_some_and(|inner| inner.is::<FrameError>());
    if is_frame {
        if let Some(Ok(frame)) = e.into_inner().map(|inner| inner.downcast::<FrameError>()) {
            return *frame;
        }
        // Unreachable: the check above saw a FrameError inside.
        return FrameError::Io(io::Error::other("frame error lost in transit"));
    }
    FrameError::Io(e)
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if !self.next_frame()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn seal(data: &[u8], frame: usize) -> (DataKey, [u8; 7], Vec<u8>) {
        let key = SecretKey::generate().unwrap();
        let prefix = [9u8; 7];
        let mut w = FrameWriter::new(Vec::new(), &key, &prefix, b"aad".to_vec(), frame);
        w.write_all(data).unwrap();
        let out = w
            .finish(Trailer {
                records: 3,
                plain_bytes: data.len() as u64,
            })
            .unwrap();
        (key, prefix, out)
    }

    fn open(
        key: &DataKey,
        prefix: &[u8; 7],
        bytes: &[u8],
        aad: &[u8],
    ) -> Result<(Vec<u8>, Trailer), FrameError> {
        let mut r = FrameReader::new(bytes, key, prefix, aad.to_vec(), 16);
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(into_frame_error)?;
        let t = r.finish()?;
        Ok((out, t))
    }

    #[test]
    fn round_trip_across_frame_boundaries() {
        for len in [0usize, 1, 15, 16, 17, 100] {
            let data: Vec<u8> = (0..len as u8).collect();
            let (k, p, sealed) = seal(&data, 16);
            let (out, t) = open(&k, &p, &sealed, b"aad").unwrap();
            assert_eq!(out, data);
            assert_eq!(
                t,
                Trailer {
                    records: 3,
                    plain_bytes: len as u64
                }
            );
        }
    }

    #[test]
    fn every_kind_of_damage_is_detected() {
        let data = vec![7u8; 50]; // frames of 16+16 bytes: 4 data frames + final
        let (k, p, sealed) = seal(&data, 16);
        assert!(matches!(
            open(&k, &p, &sealed, b"other aad"),
            Err(FrameError::Tampered { frame: 0 })
        ));
        for cut in [0, 3, 10, sealed.len() - 1, sealed.len() - 36] {
            assert!(
                matches!(
                    open(&k, &p, &sealed[..cut], b"aad"),
                    Err(FrameError::Truncated { .. })
                ),
                "cut {cut}"
            );
        }
        let mut extra = sealed.clone();
        extra.push(0);
        assert!(matches!(
            open(&k, &p, &extra, b"aad"),
            Err(FrameError::TrailingData(1))
        ));
        // Swap frames 0 and 1 (each 4 + 32 bytes).
        let mut swapped = sealed.clone();
        let (a, b) = swapped.split_at_mut(36);
        a.swap_with_slice(&mut b[..36]);
        assert!(matches!(
            open(&k, &p, &swapped, b"aad"),
            Err(FrameError::Tampered { frame: 0 })
        ));
        // Drop frame 3 (the last data frame): the final frame then has the wrong counter.
        let mut dropped = sealed.clone();
        dropped.drain(3 * 36..3 * 36 + 4 + 2 + 16);
        assert!(open(&k, &p, &dropped, b"aad").is_err());
        // Mark a data frame as final.
        let mut flagged = sealed.clone();
        flagged[3] |= 0x80;
        assert!(matches!(
            open(&k, &p, &flagged, b"aad"),
            Err(FrameError::Tampered { frame: 0 })
        ));
    }
}
