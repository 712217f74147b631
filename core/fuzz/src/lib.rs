//! What the fuzz targets and the seed-corpus generator share: the fixed keyring every input is
//! sealed with, and the object name the reader expects.
//!
//! The key is a constant so that the committed corpus keeps opening: a random key per run would
//! make every seed fail at the key unwrap and leave the frame and record code unexplored.

use mc_core::crypto::{Keyring, SecretKey};

/// The name every fuzz input is sealed under and opened as.
pub const NAME: &str = "fuzz/segment.seg";

/// The keyring of the single constant KEK `[7; 32]`.
pub fn fixed_keyring() -> Keyring {
    Keyring::new(vec![SecretKey::from_bytes([7; 32])], "fuzz").expect("one key is a valid keyring")
}

/// The record stream as `docs/format.md` §3.3 defines it: each record's u32 LE length, then its
/// bytes. Returns the records, or `None` when `stream` is not exactly a sequence of whole records
/// no larger than the reader's limit.
pub fn parse_record_stream(mut stream: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !stream.is_empty() {
        let len = u32::from_le_bytes(stream.get(..4)?.try_into().ok()?) as usize;
        if len > mc_core::format::MAX_RECORD_LEN {
            return None;
        }
        let record = stream.get(4..4 + len)?;
        out.push(record);
        stream = &stream[4 + len..];
    }
    Some(out)
}
