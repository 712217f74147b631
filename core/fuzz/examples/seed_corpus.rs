//! Writes the seed corpus of the fuzz targets: a few small valid inputs, so that libFuzzer
//! starts from objects that open instead of having to discover the format from nothing.
//!
//! Run from `core/fuzz`: `cargo run --example seed_corpus`. Data keys are random, so each run
//! writes different (equally valid) `segment_reader` seeds; the committed ones need not be
//! regenerated.

use std::fs;
use std::path::Path;

use mc_core::format::{seal_to_vec, SegmentReader, SegmentSpec, StreamKind};
use mc_core_fuzz::{fixed_keyring, NAME};

fn main() {
    let ring = fixed_keyring();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let reader_dir = dir.join("segment_reader");
    let body_dir = dir.join("segment_body");
    fs::create_dir_all(&reader_dir).unwrap();
    fs::create_dir_all(&body_dir).unwrap();

    // Oplog-entry-like records: small JSON and BSON-shaped byte strings of varied length.
    let small: Vec<Vec<u8>> = (0..5)
        .map(|i| format!(r#"{{"op":"i","ns":"app.users","o":{{"_id":{i}}}}}"#).into_bytes())
        .collect();
    let bsonish: Vec<Vec<u8>> = (0..40u32)
        .map(|i| {
            let len = 20 + (i as usize * 37) % 300;
            let mut r = (len as u32).to_le_bytes().to_vec();
            r.extend((0..len - 4).map(|j| b"abcdefghij\x02\x10\x00"[(j + i as usize) % 13]));
            r
        })
        .collect();
    let range = serde_json::json!({"first": {"t": 1, "i": 1}, "last": {"t": 2, "i": 1}, "prev": null, "count": 0});

    // (file, records, frame size): an empty segment, a one-frame one, and multi-frame ones so
    // that frame boundaries fall inside records.
    let seeds: [(&str, &[Vec<u8>], usize); 4] = [
        ("seed-empty.seg", &[], 65536),
        ("seed-small.seg", &small, 65536),
        ("seed-small-frames.seg", &small, 32),
        ("seed-oplog-like.seg", &bsonish, 512),
    ];
    for (file, records, frame_size) in seeds {
        let mut spec = SegmentSpec::new(StreamKind::Oplog, NAME, "fuzz", range.clone());
        spec.frame_size = frame_size;
        let (bytes, _) = seal_to_vec(spec, &ring, records.iter().map(|r| r.as_slice())).unwrap();
        // A seed that does not open would mislead the fuzzer; check before writing.
        let back = SegmentReader::open(&bytes[..], NAME, &ring)
            .unwrap()
            .read_all()
            .unwrap();
        assert_eq!(back, records);
        fs::write(reader_dir.join(file), &bytes).unwrap();
    }

    // segment_body seeds: mode byte (see that target), then a record stream.
    let stream = |records: &[Vec<u8>]| -> Vec<u8> {
        records
            .iter()
            .flat_map(|r| {
                (r.len() as u32)
                    .to_le_bytes()
                    .into_iter()
                    .chain(r.iter().copied())
            })
            .collect()
    };
    let body_seeds: [(&str, u8, Vec<u8>); 4] = [
        ("seed-empty", 0b0001, Vec::new()),
        ("seed-small", 0b0101, stream(&small)),
        ("seed-oplog-like", 0b1001, stream(&bsonish[..10])),
        (
            "seed-raw-zstd",
            0b1100,
            zstd::encode_all(&stream(&small)[..], 1).unwrap(),
        ),
    ];
    for (file, mode, body) in body_seeds {
        let mut input = vec![mode];
        input.extend(body);
        fs::write(body_dir.join(file), input).unwrap();
    }
    println!("seed corpus written under {}", dir.display());
}
