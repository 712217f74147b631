//! Fuzz target: what lies *behind* frame authentication, i.e. the zstd stream, the record
//! stream and the trailer, must never panic the reader and must be judged correctly.
//!
//! `segment_reader` cannot get there (a mutated frame fails authentication), so this target
//! encrypts the fuzzer's bytes itself with the fixed keys and then opens the result. Input:
//!
//! - byte 0, the mode: bit 0 = the rest is a record stream to compress with zstd (else the rest
//!   is used as the compressed body as is, to fuzz the zstd decoder); bit 1 = the trailer is the
//!   next 16 bytes (else it is the honest count and length); bits 2–3 pick the frame size.
//! - the rest: the body (after the trailer bytes, if any).
//!
//! Oracle: in compress mode with an honest trailer the reader must return exactly the records
//! when the rest is a well-formed record stream, and an error otherwise.

#![no_main]

use std::io::Write;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use mc_core::crypto::stream::{FrameWriter, Trailer};
use mc_core::crypto::SecretKey;
use mc_core::format::{SegmentHeader, SegmentReader, StreamKind, WriterInfo};
use mc_core_fuzz::{fixed_keyring, parse_record_stream, NAME};

const FRAME_SIZES: [usize; 4] = [16, 100, 4096, 65536];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let compress = mode & 1 != 0;
    let (given_trailer, body_in) = if mode & 2 != 0 {
        if rest.len() < 16 {
            return;
        }
        let (t, b) = rest.split_at(16);
        let records = u64::from_le_bytes(t[..8].try_into().unwrap());
        let plain_bytes = u64::from_le_bytes(t[8..].try_into().unwrap());
        (
            Some(Trailer {
                records,
                plain_bytes,
            }),
            b,
        )
    } else {
        (None, rest)
    };
    let frame_size = FRAME_SIZES[usize::from(mode >> 2) & 3];

    let expected = compress.then(|| parse_record_stream(body_in));
    let trailer = given_trailer.unwrap_or(Trailer {
        records: expected
            .as_ref()
            .and_then(|e| e.as_ref())
            .map_or(0, |e| e.len() as u64),
        plain_bytes: body_in.len() as u64,
    });
    let body = if compress {
        zstd::encode_all(body_in, 1).unwrap()
    } else {
        body_in.to_vec()
    };

    // Seal by hand what SegmentWriter would seal, so that the body is the fuzzer's.
    let ring = fixed_keyring();
    let data_key = SecretKey::from_bytes([9; 32]);
    let prefix = [3u8; 7];
    let (key_id, wrapped) = ring.wrap(&data_key).unwrap();
    let header = SegmentHeader {
        kind: StreamKind::Oplog,
        name: NAME.into(),
        source: "fuzz".into(),
        range: serde_json::json!({}),
        created: "2026-01-01T00:00:00.000Z".into(),
        writer: WriterInfo {
            id: "fuzz".into(),
            fence: 0,
        },
        codec: "zstd".into(),
        level: 1,
        key_id: key_id.to_string(),
        wrapped_key: BASE64.encode(wrapped.0),
        nonce_prefix: BASE64.encode(prefix),
        frame_size: frame_size as u32,
    };
    let preamble = header.encode_preamble().unwrap();
    let mut frames = FrameWriter::new(preamble.clone(), &data_key, &prefix, preamble, frame_size);
    frames.write_all(&body).unwrap();
    let object = frames.finish(trailer).unwrap();

    let result = SegmentReader::open(&object[..], NAME, &ring).and_then(|r| r.read_all());
    if let (Some(expected), None) = (expected, given_trailer) {
        match (expected, result) {
            (Some(want), Ok(got)) => assert_eq!(got, want, "records differ from those sealed"),
            (Some(_), Err(e)) => panic!("a well-formed record stream failed to open: {e}"),
            (None, Ok(got)) => panic!("a malformed record stream opened as {} records", got.len()),
            (None, Err(_)) => {}
        }
    }
});
