//! Object keys: what each object is called (`docs/format.md` §2). Keys say what an object holds
//! and sort in time order, so a listing alone finds a source's timeline.

use crate::format::{OplogTs, StreamKind};

/// Prefix of every object of one source and stream: `sources/<source>/<stream>/`.
pub fn stream_prefix(source: &str, stream: StreamKind) -> String {
    let dir = match stream {
        StreamKind::SnapshotData | StreamKind::SnapshotManifest => "snapshots",
        other => other.as_str(),
    };
    format!("sources/{source}/{dir}/")
}

/// `sources/<source>/oplog/<first>_<last>.seg`.
pub fn oplog_key(source: &str, first: OplogTs, last: OplogTs) -> String {
    format!(
        "sources/{source}/oplog/{}_{}.seg",
        ts_name(first),
        ts_name(last)
    )
}

/// `<seconds:10>.<increment:10>`: fixed width, so lexical order is time order.
pub fn ts_name(ts: OplogTs) -> String {
    format!("{:010}.{:010}", ts.t, ts.i)
}

/// The first and last timestamps named by an oplog key, if it is one.
pub fn parse_oplog_key(key: &str) -> Option<(OplogTs, OplogTs)> {
    let name = key.rsplit('/').next()?.strip_suffix(".seg")?;
    let (first, last) = name.split_once('_')?;
    Some((parse_ts_name(first)?, parse_ts_name(last)?))
}

fn parse_ts_name(s: &str) -> Option<OplogTs> {
    let (t, i) = s.split_once('.')?;
    if t.len() != 10 || i.len() != 10 {
        return None;
    }
    Some(OplogTs::new(t.parse().ok()?, i.parse().ok()?))
}

/// `sources/<source>/kafka-offsets/<first-ms:13>_<last-ms:13>.seg`.
pub fn kafka_offsets_key(source: &str, first_ms: u64, last_ms: u64) -> String {
    format!("sources/{source}/kafka-offsets/{first_ms:013}_{last_ms:013}.seg")
}

/// `sources/<source>/snapshots/<id>/data/<ns>/<part:6>.seg`.
pub fn snapshot_data_key(source: &str, snapshot: &str, namespace: &str, part: u32) -> String {
    format!(
        "{}{}/{part:06}.seg",
        snapshot_data_prefix(source, snapshot),
        encode_namespace(namespace)
    )
}

/// `sources/<source>/snapshots/<id>/data/`: every data segment of one snapshot.
pub fn snapshot_data_prefix(source: &str, snapshot: &str) -> String {
    format!("sources/{source}/snapshots/{snapshot}/data/")
}

/// `sources/<source>/snapshots/<id>/manifest.seg`.
pub fn snapshot_manifest_key(source: &str, snapshot: &str) -> String {
    format!("sources/{source}/snapshots/{snapshot}/manifest.seg")
}

/// `index/<source>/<stream>/<last-basename>.<created-ms:13>.idx.seg`: the newest index of a
/// stream sorts last.
pub fn index_key(source: &str, stream: StreamKind, last_key: &str, created_ms: u64) -> String {
    let base = last_key
        .rsplit('/')
        .next()
        .unwrap_or(last_key)
        .trim_end_matches(".seg");
    format!(
        "index/{source}/{}/{base}.{created_ms:013}.idx.seg",
        stream.as_str()
    )
}

/// Prefix of a stream's indexes.
pub fn index_prefix(source: &str, stream: StreamKind) -> String {
    format!("index/{source}/{}/", stream.as_str())
}

/// A namespace as one key segment: bytes outside `[A-Za-z0-9_.-]` become `%XX`.
pub fn encode_namespace(ns: &str) -> String {
    let mut out = String::with_capacity(ns.len());
    for b in ns.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // `.` and `..` alone would be path segments with a meaning; they are not valid namespaces
    // anyway, but keep keys unambiguous.
    if out == "." || out == ".." {
        return out.replace('.', "%2E");
    }
    out
}

/// Inverse of [`encode_namespace`]: `Some(ns)` exactly when `encode_namespace(ns)` is `s`, so a
/// malformed (`%4`, `%zz`) or non-canonical (`%61` for `a`) escape, or bytes that are not UTF-8,
/// give `None`. The decoding itself is the `percent-encoding` crate's.
pub fn decode_namespace(s: &str) -> Option<String> {
    let ns = percent_encoding::percent_decode_str(s).decode_utf8().ok()?;
    (encode_namespace(&ns) == s).then(|| ns.into_owned())
}

/// A new snapshot id: `<UTC start as YYYYMMDDTHHMMSSZ>-<6 random hex>`.
pub fn new_snapshot_id(start: chrono::DateTime<chrono::Utc>) -> String {
    let random: u32 = rand::random::<u32>() & 0xFF_FFFF;
    format!("{}-{random:06x}", start.format("%Y%m%dT%H%M%SZ"))
}

/// Whether a source id is acceptable (`[a-z0-9][a-z0-9_-]{0,62}`).
pub fn valid_source_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oplog_keys_sort_in_time_order_and_parse_back() {
        let a = oplog_key("rs0", OplogTs::new(9, 5), OplogTs::new(10, 1));
        let b = oplog_key("rs0", OplogTs::new(10, 2), OplogTs::new(100, 0));
        let c = oplog_key(
            "rs0",
            OplogTs::new(1_764_065_700, 3),
            OplogTs::new(1_764_065_712, 1),
        );
        assert!(a < b && b < c);
        assert_eq!(
            c,
            "sources/rs0/oplog/1764065700.0000000003_1764065712.0000000001.seg"
        );
        assert_eq!(
            parse_oplog_key(&c),
            Some((
                OplogTs::new(1_764_065_700, 3),
                OplogTs::new(1_764_065_712, 1)
            ))
        );
        assert_eq!(parse_oplog_key("sources/rs0/oplog/garbage.seg"), None);
    }

    #[test]
    fn namespaces_encode_to_one_safe_segment() {
        for ns in [
            "app.users",
            "app.weird/name with spaces",
            "db.$x",
            "ü.ñ",
            "a.%41",
        ] {
            let enc = encode_namespace(ns);
            assert!(!enc.contains('/') && !enc.contains(' '), "{enc}");
            assert!(crate::storage::check_key(&format!("x/{enc}/y")).is_ok());
            assert_eq!(decode_namespace(&enc).as_deref(), Some(ns));
        }
        for bad in [
            "%", "%4", "a%2", "%zz", "%+1", "%61", "%c3%BC", "%FF", "a b",
        ] {
            assert_eq!(decode_namespace(bad), None, "{bad}");
        }
    }

    #[test]
    fn index_keys_put_the_newest_last() {
        let k1 = index_key(
            "rs0",
            StreamKind::Oplog,
            &oplog_key("rs0", OplogTs::new(1, 0), OplogTs::new(2, 0)),
            5,
        );
        let k2 = index_key(
            "rs0",
            StreamKind::Oplog,
            &oplog_key("rs0", OplogTs::new(3, 0), OplogTs::new(4, 0)),
            1,
        );
        let k3 = index_key(
            "rs0",
            StreamKind::Oplog,
            &oplog_key("rs0", OplogTs::new(3, 0), OplogTs::new(4, 0)),
            2,
        );
        assert!(k1 < k2 && k2 < k3);
        assert!(k1.starts_with(&index_prefix("rs0", StreamKind::Oplog)));
    }

    #[test]
    fn source_ids() {
        assert!(valid_source_id("rs0") && valid_source_id("mindcompute-prod_1"));
        for bad in ["", "Rs0", "-x", "a/b", "a.b", &"x".repeat(64)] {
            assert!(!valid_source_id(bad), "{bad}");
        }
    }
}
