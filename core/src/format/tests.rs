//! Round-trip, tamper and wrong-key tests of the segment format. A segment that opens must give
//! back exactly what was written; one that was changed in any way must not open.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::crypto::{Keyring, SecretKey};

fn ring() -> Keyring {
    Keyring::new(vec![SecretKey::generate().unwrap()], "test").unwrap()
}

fn spec(name: &str, frame_size: usize) -> SegmentSpec {
    let mut s = SegmentSpec::new(
        StreamKind::Oplog,
        name,
        "rs0",
        json!({"first": {"t": 1, "i": 1}, "last": {"t": 2, "i": 5}, "prev": null, "count": 3}),
    );
    s.frame_size = frame_size;
    s
}

fn seal(
    ring: &Keyring,
    name: &str,
    records: &[Vec<u8>],
    frame_size: usize,
) -> (Vec<u8>, SealedSegment) {
    seal_to_vec(
        spec(name, frame_size),
        ring,
        records.iter().map(|r| r.as_slice()),
    )
    .unwrap()
}

fn open(ring: &Keyring, name: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FormatError> {
    SegmentReader::open(bytes, name, ring)?.read_all()
}

fn sample_records() -> Vec<Vec<u8>> {
    // Some compressible, some not, one empty: frames of 64 bytes cut through records.
    let mut recs = vec![b"first".to_vec(), Vec::new(), vec![0xAB; 300]];
    let mut x = 12345u32;
    recs.push(
        (0..500)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect(),
    );
    recs
}

#[test]
fn round_trip_keeps_records_and_reports_what_was_sealed() {
    let ring = ring();
    let recs = sample_records();
    let (bytes, sealed) = seal(&ring, "sources/rs0/oplog/a.seg", &recs, 64);
    assert_eq!(sealed.size, bytes.len() as u64);
    assert_eq!(sealed.records, 4);
    assert_eq!(
        sealed.plain_bytes,
        recs.iter().map(|r| 4 + r.len() as u64).sum::<u64>()
    );
    use sha2::Digest;
    assert_eq!(sealed.sha256, hex::encode(sha2::Sha256::digest(&bytes)));

    let reader = SegmentReader::open(&bytes[..], "sources/rs0/oplog/a.seg", &ring).unwrap();
    assert_eq!(reader.header().kind, StreamKind::Oplog);
    assert_eq!(reader.header().oplog_range().unwrap().count, 3);
    assert_eq!(reader.read_all().unwrap(), recs);

    // The header can be read without keys, by catalog tools.
    let (header, len) = parse_preamble(&bytes).unwrap();
    assert_eq!(header.name, "sources/rs0/oplog/a.seg");
    assert!(len > PREAMBLE_FIXED_LEN);
}

#[test]
fn empty_segment_round_trips() {
    let ring = ring();
    let (bytes, sealed) = seal(&ring, "e", &[], 64);
    assert_eq!(sealed.records, 0);
    assert!(open(&ring, "e", &bytes).unwrap().is_empty());
}

#[test]
fn flipping_any_single_byte_fails_to_open() {
    let ring = ring();
    let recs = sample_records();
    let (bytes, _) = seal(&ring, "seg", &recs, 64);
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= bit;
            let res = open(&ring, "seg", &bad);
            assert!(
                res.is_err(),
                "flipping bit {bit:#x} of byte {i} of {} went unnoticed",
                bytes.len()
            );
        }
    }
}

#[test]
fn truncating_at_any_length_fails_as_truncated_or_corrupt() {
    let ring = ring();
    let (bytes, _) = seal(&ring, "seg", &sample_records(), 64);
    let (_, body_start) = parse_preamble(&bytes).unwrap();
    for cut in 0..bytes.len() {
        let err = open(&ring, "seg", &bytes[..cut]).expect_err("a truncated segment must not open");
        if cut >= body_start {
            assert_eq!(err.verdict(), "truncated", "cut at {cut}: {err}");
        }
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"junk");
    assert!(open(&ring, "seg", &longer).is_err());
}

#[test]
fn swapped_or_renamed_objects_fail_by_name() {
    let ring = ring();
    let (a, _) = seal(&ring, "sources/rs0/oplog/a.seg", &[b"a".to_vec()], 64);
    let (b, _) = seal(&ring, "sources/rs0/oplog/b.seg", &[b"b".to_vec()], 64);
    // Object b stored under a's name (or vice versa): the header gives it away.
    let err = open(&ring, "sources/rs0/oplog/a.seg", &b).unwrap_err();
    assert_eq!(err.verdict(), "renamed", "{err}");
    assert!(err.to_string().contains("sources/rs0/oplog/b.seg"), "{err}");
    // Rewriting the name in the header is caught by the frames' associated data.
    let forged = String::from_utf8_lossy(&b).replace("oplog/b.seg", "oplog/a.seg");
    let forged = forged.as_bytes();
    if forged.len() == b.len() {
        assert!(open(&ring, "sources/rs0/oplog/a.seg", forged).is_err());
    }
    // Frames of a under b's preamble do not open either.
    let (_, a_body) = parse_preamble(&a).unwrap();
    let (_, b_body) = parse_preamble(&b).unwrap();
    let mut mixed = b[..b_body].to_vec();
    mixed.extend_from_slice(&a[a_body..]);
    assert!(open(&ring, "sources/rs0/oplog/b.seg", &mixed).is_err());
}

#[test]
fn wrong_or_missing_key_fails_clearly() {
    let (bytes, sealed) = seal(&ring(), "seg", &[b"x".to_vec()], 64);
    let other = ring();
    let err = open(&other, "seg", &bytes).unwrap_err();
    assert_eq!(err.verdict(), "wrong-key");
    let msg = err.to_string();
    assert!(
        msg.contains("seg") && msg.contains(&sealed.header.key_id),
        "{msg}"
    );
}

#[test]
fn rotated_keyring_still_opens_old_segments() {
    let a = SecretKey::generate().unwrap();
    let b = SecretKey::generate().unwrap();
    let ring_a = Keyring::new(vec![a.clone()], "a").unwrap();
    let (old, _) = seal(&ring_a, "old", &[b"old".to_vec()], 64);
    let ring_ba = Keyring::new(vec![b.clone(), a], "b,a").unwrap();
    assert_eq!(open(&ring_ba, "old", &old).unwrap(), vec![b"old".to_vec()]);
    let (new, sealed) = seal(&ring_ba, "new", &[b"new".to_vec()], 64);
    assert_eq!(
        sealed.header.key_id,
        b.id().to_string(),
        "new segments use the primary"
    );
    let ring_b = Keyring::new(vec![b], "b").unwrap();
    assert!(open(&ring_b, "new", &new).is_ok());
    assert_eq!(
        open(&ring_b, "old", &old).unwrap_err().verdict(),
        "wrong-key"
    );
}

#[test]
fn other_versions_and_garbage_are_refused() {
    let ring = ring();
    let (mut bytes, _) = seal(&ring, "seg", &[b"x".to_vec()], 64);
    bytes[8] = 2;
    let err = open(&ring, "seg", &bytes).unwrap_err().to_string();
    assert!(err.contains("version 2"), "{err}");
    assert!(open(&ring, "seg", b"hello world, not a segment").is_err());
    assert!(open(&ring, "seg", b"").is_err());
}

#[test]
fn oversized_frame_length_is_rejected_without_allocating() {
    let ring = ring();
    let (bytes, _) = seal(&ring, "seg", &[vec![1u8; 1000]], 64);
    let (_, body) = parse_preamble(&bytes).unwrap();
    let mut bad = bytes.clone();
    bad[body..body + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let err = open(&ring, "seg", &bad).unwrap_err();
    assert_eq!(err.verdict(), "tampered", "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_records_round_trip(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 0..40),
        frame_size in 1usize..5000,
        level in 1i32..6,
    ) {
        let ring = ring();
        let mut s = spec("p", frame_size);
        s.level = level;
        let (bytes, sealed) = seal_to_vec(s, &ring, records.iter().map(|r| r.as_slice())).unwrap();
        prop_assert_eq!(sealed.records, records.len() as u64);
        prop_assert_eq!(open(&ring, "p", &bytes).unwrap(), records);
    }

    #[test]
    fn random_damage_never_opens_and_never_panics(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..500), 1..10),
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let ring = ring();
        let (mut bytes, _) = seal(&ring, "d", &records, 128);
        let i = pos.index(bytes.len());
        bytes[i] ^= xor;
        prop_assert!(open(&ring, "d", &bytes).is_err());
    }
}
