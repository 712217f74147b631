//! The repository as a whole on real storage (a local directory and the SeaweedFS S3 server):
//! segments stored and read back through `Repository`, the catalog and its index, the
//! `Timeline`, and `verify` naming exactly which object is missing, tampered, swapped, or
//! sealed under a key the keyring lacks. Also the `mc-restore verify` command's exit codes.

use std::process::Command;
use std::sync::{Arc, Mutex};

use mc_core::catalog::index::rebuild;
use mc_core::catalog::names::oplog_key;
use mc_core::catalog::{Catalog, RepoError, Repository, Timeline, Verdict};
use mc_core::crypto::{Keyring, SecretKey};
use mc_core::format::{OplogRange, OplogTs, SegmentSpec, StreamKind};
use mc_core::storage::local::LocalDir;
use mc_core::storage::s3::{S3Settings, S3Store};
use mc_core::storage::{ObjectStore, PutSource};
use mc_tests::*;

fn keyring() -> Keyring {
    Keyring::new(vec![SecretKey::generate().unwrap()], "test keyring").unwrap()
}

async fn s3_store(prefix: &str) -> (Arc<dyn ObjectStore>, String) {
    let client = s3_client();
    let bucket = fresh_bucket(&client, "repo").await;
    let settings = S3Settings {
        endpoint: Some(S3Env::from_env().endpoint),
        ..S3Settings::default()
    };
    (
        Arc::new(S3Store::from_client(client, &bucket, prefix, settings)),
        bucket,
    )
}

fn local_store() -> (Arc<dyn ObjectStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        Arc::new(LocalDir::new(dir.path().join("repo")).unwrap()),
        dir,
    )
}

/// An oplog-like record: `n` encoded in a recognisable body of `len` bytes.
fn record(n: u64, len: usize) -> Vec<u8> {
    let mut r = format!("op-{n:08}-").into_bytes();
    r.resize(len.max(r.len()), b'a' + (n % 26) as u8);
    r
}

/// Stores a chain of oplog segments for `source`: `(first_t, last_t, records)` each chained to
/// the previous unless `prev` is broken on purpose. Returns the keys.
async fn store_chain(
    repo: &Repository,
    source: &str,
    segs: &[(u32, u32, u64, bool)],
) -> Vec<String> {
    let mut keys = Vec::new();
    let mut prev: Option<OplogTs> = None;
    let mut n = 0;
    for &(first_t, last_t, count, chained) in segs {
        let first = OplogTs::new(first_t, 1);
        let last = OplogTs::new(last_t, 1);
        let range = OplogRange {
            first,
            last,
            prev: if chained { prev } else { None },
            count,
        };
        let key = oplog_key(source, first, last);
        let spec = SegmentSpec::new(
            StreamKind::Oplog,
            &key,
            source,
            serde_json::to_value(range).unwrap(),
        );
        let records = (0..count)
            .map(|_| {
                n += 1;
                record(n, 200 + (n as usize * 37) % 900)
            })
            .collect();
        let entry = repo
            .put_segment(spec, records)
            .await
            .expect("store segment");
        assert!(entry.sha256.is_some());
        keys.push(key);
        prev = Some(last);
    }
    keys
}

async fn catalog_timeline_and_verify(store: Arc<dyn ObjectStore>) {
    let repo = Repository::new(store.clone(), keyring());
    let created = repo.init().await.expect("init");
    assert_eq!(repo.init().await.unwrap(), created, "init is idempotent");

    // Run 1: three chained segments; then a gap (a new run starts); index written in between.
    let keys = store_chain(
        &repo,
        "rs0",
        &[
            (100, 110, 5, true),
            (111, 120, 3, true),
            (121, 130, 4, true),
        ],
    )
    .await;
    let catalog = Catalog::load(&repo, "rs0", StreamKind::Oplog)
        .await
        .unwrap();
    assert_eq!(
        catalog.segments.iter().map(|s| &s.key).collect::<Vec<_>>(),
        keys.iter().collect::<Vec<_>>()
    );
    assert!(
        catalog.segments.iter().all(|s| s.sha256.is_none()),
        "no index yet: from headers"
    );
    // An index needs checksums: rebuild computes them from the objects.
    let (rebuilt, index_key) = rebuild(&repo, "rs0", StreamKind::Oplog).await.unwrap();
    assert_eq!(rebuilt.segments.len(), 3);
    let index_key = index_key.expect("an index was written");
    let more = store_chain(&repo, "rs0", &[(200, 210, 2, false), (211, 220, 6, true)]).await;

    let catalog = Catalog::load(&repo, "rs0", StreamKind::Oplog)
        .await
        .unwrap();
    assert_eq!(catalog.index.as_deref(), Some(index_key.as_str()));
    assert_eq!(catalog.segments.len(), 5);
    assert_eq!(
        catalog
            .segments
            .iter()
            .filter(|s| s.sha256.is_some())
            .count(),
        3,
        "three from the index"
    );
    let tl = Timeline::build(&catalog.segments);
    assert_eq!(tl.runs.len(), 2, "{tl:?}");
    assert_eq!(
        (tl.runs[0].start, tl.runs[0].end, tl.runs[0].ops),
        (OplogTs::new(100, 1), OplogTs::new(130, 1), 12)
    );
    assert_eq!(
        (tl.runs[1].start, tl.runs[1].end),
        (OplogTs::new(200, 1), OplogTs::new(220, 1))
    );
    assert_eq!(tl.gaps.len(), 1);
    assert_eq!(tl.newest(), Some(OplogTs::new(220, 1)));

    // Records come back exactly, whole and streamed.
    let (_, recs) = repo.read_segment(&keys[1]).await.unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(&recs[0][..12], b"op-00000006-");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let (header, n) = repo
        .scan_segment(&more[1], move |r| {
            sink.lock().unwrap().push(r.to_vec());
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!((n, header.name.as_str()), (6, more[1].as_str()));
    assert_eq!(&seen.lock().unwrap()[5][..12], b"op-00000008-");

    // A clean repository verifies.
    let report = mc_core::catalog::verify(&repo, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.objects.len(), 6, "5 segments and 1 index");

    // Now damage it: tamper with one object, delete another, swap a third under another's name.
    let tampered = &keys[0];
    let mut bytes = store.get(tampered).await.unwrap().to_vec();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    replace(&store, tampered, bytes).await;
    let deleted = &keys[1];
    store.delete(deleted).await.unwrap();
    let swapped = &more[0];
    let other = store.get(&more[1]).await.unwrap().to_vec();
    replace(&store, swapped, other).await;

    let report = mc_core::catalog::verify(&repo, Some("rs0")).await.unwrap();
    let verdict = |k: &str| {
        report
            .objects
            .iter()
            .find(|o| o.key == k)
            .map(|o| o.verdict.clone())
    };
    assert_eq!(
        verdict(tampered),
        Some(Verdict::ChecksumMismatch),
        "{report:?}"
    );
    assert_eq!(verdict(deleted), Some(Verdict::Missing));
    assert_eq!(verdict(swapped), Some(Verdict::Renamed));
    assert_eq!(verdict(&keys[2]), Some(Verdict::Ok));
    assert_eq!(verdict(&more[1]), Some(Verdict::Ok));
    assert_eq!(report.failures().count(), 3);
    // Without the index's checksum the tampering is still caught by the frames.
    let e = repo.read_segment(tampered).await.unwrap_err();
    assert!(
        matches!(e, RepoError::Format(ref f) if f.verdict() == "tampered"),
        "{e}"
    );

    // The catalog reports the deleted object instead of silently closing the gap over it.
    let catalog = Catalog::load(&repo, "rs0", StreamKind::Oplog)
        .await
        .unwrap_err();
    assert!(
        catalog.to_string().contains(swapped.as_str()),
        "swapped object named: {catalog}"
    );

    // A keyring without the key: every object is reported as wrong-key, by name.
    let strangers = Repository::new(store.clone(), keyring());
    let report = mc_core::catalog::verify(&strangers, Some("rs0"))
        .await
        .unwrap();
    assert_eq!(verdict_of(&report, &keys[2]), Some(Verdict::WrongKey));
    let detail = report
        .objects
        .iter()
        .find(|o| o.key == keys[2])
        .unwrap()
        .detail
        .clone()
        .unwrap();
    assert!(detail.contains("not in the keyring"), "{detail}");
}

fn verdict_of(report: &mc_core::catalog::VerifyReport, key: &str) -> Option<Verdict> {
    report
        .objects
        .iter()
        .find(|o| o.key == key)
        .map(|o| o.verdict.clone())
}

/// Replaces an object behind the repository's back (as an attacker or a bug would).
async fn replace(store: &Arc<dyn ObjectStore>, key: &str, bytes: Vec<u8>) {
    store.delete(key).await.unwrap();
    store
        .put_if_absent(key, PutSource::Bytes(bytes.into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn local_repository_catalog_timeline_and_verify() {
    let (store, _dir) = local_store();
    catalog_timeline_and_verify(store).await;
}

#[tokio::test]
async fn s3_repository_catalog_timeline_and_verify() {
    let (store, _bucket) = s3_store("team/prod").await;
    catalog_timeline_and_verify(store).await;
}

#[tokio::test]
async fn segments_are_immutable_on_both_backends() {
    let (local, _dir) = local_store();
    let (s3, _bucket) = s3_store("").await;
    for store in [local, s3] {
        let repo = Repository::new(store.clone(), keyring());
        repo.init().await.unwrap();
        let keys = store_chain(&repo, "rs0", &[(1, 2, 3, true)]).await;
        let original = store.get(&keys[0]).await.unwrap();
        // A second writer of the same segment name (e.g. a deposed capturer) fails...
        let range = OplogRange {
            first: OplogTs::new(1, 1),
            last: OplogTs::new(2, 1),
            prev: None,
            count: 1,
        };
        let spec = SegmentSpec::new(
            StreamKind::Oplog,
            &keys[0],
            "rs0",
            serde_json::to_value(range).unwrap(),
        );
        let err = repo
            .put_segment(spec, vec![b"other".to_vec()])
            .await
            .unwrap_err();
        assert!(
            matches!(err, RepoError::Storage(ref s) if s.is_already_exists()),
            "{err}"
        );
        // ...and the stored object is untouched.
        assert_eq!(store.get(&keys[0]).await.unwrap(), original);
    }
}

#[tokio::test]
async fn opening_a_location_that_is_not_a_repository_says_so() {
    let (store, _dir) = local_store();
    let repo = Repository::new(store, keyring());
    let err = repo.config().await.unwrap_err().to_string();
    assert!(
        err.contains("not an mc-backup repository") && err.contains("mc-agent init"),
        "{err}"
    );
}

#[tokio::test]
async fn large_segment_streams_through_scan() {
    // 40 MiB of records in one segment, read back with bounded memory through scan_segment.
    let (store, _bucket) = s3_store("big").await;
    let repo = Repository::new(store, keyring());
    repo.init().await.unwrap();
    let records: Vec<Vec<u8>> = (0..2560u64).map(|n| record(n, 16 * 1024)).collect();
    let range = OplogRange {
        first: OplogTs::new(1, 1),
        last: OplogTs::new(9, 1),
        prev: None,
        count: records.len() as u64,
    };
    let key = oplog_key("rs0", range.first, range.last);
    let spec = SegmentSpec::new(
        StreamKind::Oplog,
        &key,
        "rs0",
        serde_json::to_value(range).unwrap(),
    );
    let entry = repo.put_segment(spec, records.clone()).await.unwrap();
    let expected = Arc::new(records);
    let check = expected.clone();
    let mut i = 0usize;
    let (_, n) = repo
        .scan_segment(&key, move |r| {
            if r != check[i].as_slice() {
                return Err(format!("record {i} differs"));
            }
            i += 1;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(n as usize, expected.len());
    assert!(
        entry.size < 40 * 1024 * 1024,
        "compressed: {} bytes",
        entry.size
    );
}

#[tokio::test]
async fn mc_restore_verify_exit_codes_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("repo");
    let keyring_path = dir.path().join("keyring");
    let agent = workspace_bin("mc-agent");
    let restore = workspace_bin("mc-restore");

    let out = Command::new(&agent)
        .args(["key", "generate", "--keyring"])
        .arg(&keyring_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(&agent)
        .arg("init")
        .arg("--repo")
        .arg(&repo_path)
        .arg("--keyring")
        .arg(&keyring_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // Store two segments with the library, using the keyring file the CLI made.
    let ring = Keyring::load(&mc_core::crypto::KeyringSource::File(keyring_path.clone())).unwrap();
    let repo = Repository::new(Arc::new(LocalDir::new(&repo_path).unwrap()), ring);
    let keys = store_chain(&repo, "rs0", &[(10, 20, 3, true), (21, 30, 3, true)]).await;

    let verify = || {
        Command::new(&restore)
            .arg("verify")
            .arg("--repo")
            .arg(format!("file://{}", repo_path.display()))
            .arg("--keyring")
            .arg(&keyring_path)
            .output()
            .unwrap()
    };
    let out = verify();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("all objects intact"));

    // Truncate one segment on disk.
    let file = repo_path.join(&keys[1]);
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len - 10).unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("FAILED {}: truncated", keys[1])),
        "{stdout}"
    );

    // A wrong keyring is refused per object; a missing keyring file is an error (exit 1).
    let other = dir.path().join("other-keyring");
    Command::new(&agent)
        .args(["key", "generate", "--keyring"])
        .arg(&other)
        .output()
        .unwrap();
    let out = Command::new(&restore)
        .arg("verify")
        .arg("--repo")
        .arg(&repo_path)
        .arg("--keyring")
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrong key"));
    let out = Command::new(&restore)
        .arg("verify")
        .arg("--repo")
        .arg(&repo_path)
        .arg("--keyring")
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("mc-restore: error:") && stderr.contains("nope"),
        "{stderr}"
    );
    // Never a key in any output.
    let key_text = std::fs::read_to_string(&keyring_path).unwrap();
    let key_line = key_text.lines().find(|l| !l.starts_with('#')).unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(key_line));
}

#[tokio::test]
async fn mc_restore_reads_an_s3_repository_by_url() {
    let (store, bucket) = s3_store("cli").await;
    let dir = tempfile::tempdir().unwrap();
    let keyring_path = dir.path().join("keyring");
    let ring = mc_core::crypto::keys::create_keyring_file(&keyring_path).unwrap();
    let repo = Repository::new(store, ring);
    repo.init().await.unwrap();
    store_chain(
        &repo,
        "rs0",
        &[(10, 20, 3, true), (21, 30, 3, true), (40, 50, 1, false)],
    )
    .await;

    let env = S3Env::from_env();
    let url = format!(
        "s3://{bucket}/cli?endpoint={}&region={}&path_style=true",
        env.endpoint, env.region
    );
    let out = Command::new(workspace_bin("mc-restore"))
        .args([
            "catalog",
            "timeline",
            "--source",
            "rs0",
            "--repo",
            &url,
            "--keyring",
        ])
        .arg(&keyring_path)
        .env("AWS_ACCESS_KEY_ID", &env.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &env.secret_key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("run 1: 10.0000000001 .. 30.0000000001  (2 segments, 6 ops)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("GAP: nothing restorable after 30.0000000001 until 40.0000000001"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&env.secret_key)
            && !String::from_utf8_lossy(&out.stderr).contains(&env.secret_key)
    );
}

/// Segments from empty to 64 MiB, some incompressible, round-trip byte for byte on both backends;
/// the large ones go through the spool file (bounded memory) and S3 multipart.
#[tokio::test]
async fn segments_of_random_sizes_round_trip_on_both_backends() {
    use sha2::{Digest, Sha256};
    let (local, _dir) = local_store();
    let (s3, _bucket) = s3_store("sizes").await;
    let spool = tempfile::tempdir().unwrap();
    // Total record bytes per segment; records are up to 1 MiB of xorshift noise or text.
    let sizes: [u64; 7] = [0, 1, 1000, 70_000, 3 << 20, 17 << 20, 64 << 20];
    for store in [local, s3] {
        let repo = Repository::new(store.clone(), keyring());
        repo.init().await.unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ i as u64;
            let mut records = Vec::new();
            let mut left = size;
            while left > 0 {
                let n = left.min(1 << 20);
                let mut r = vec![0u8; n as usize];
                if i % 2 == 0 {
                    for b in r.iter_mut() {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        *b = state as u8;
                    }
                } else {
                    r.iter_mut()
                        .enumerate()
                        .for_each(|(j, b)| *b = b"oplog entry "[j % 12]);
                }
                left -= n;
                records.push(r);
            }
            let digest = |recs: &[Vec<u8>]| {
                let mut h = Sha256::new();
                recs.iter().for_each(|r| {
                    h.update((r.len() as u32).to_le_bytes());
                    h.update(r);
                });
                hex::encode(h.finalize())
            };
            let want = digest(&records);
            let count = records.len() as u64;
            let first = OplogTs::new(1000 + i as u32, 1);
            let range = OplogRange {
                first,
                last: first,
                prev: None,
                count,
            };
            let key = oplog_key("rs0", first, first);
            let spec = SegmentSpec::new(
                StreamKind::Oplog,
                &key,
                "rs0",
                serde_json::to_value(range).unwrap(),
            );
            let entry = if size > (1 << 20) {
                repo.put_segment_spooled(spec, records, spool.path())
                    .await
                    .unwrap()
            } else {
                repo.put_segment(spec, records).await.unwrap()
            };
            let stored = store.head(&key).await.unwrap().expect("stored");
            assert_eq!(stored.size, entry.size, "{key}");
            let hasher = Arc::new(Mutex::new((Sha256::new(), 0u64)));
            let h = hasher.clone();
            let (_, n) = repo
                .scan_segment(&key, move |r| {
                    let mut g = h.lock().unwrap();
                    g.0.update((r.len() as u32).to_le_bytes());
                    g.0.update(r);
                    g.1 += r.len() as u64;
                    Ok(())
                })
                .await
                .unwrap();
            let (h, bytes) = std::mem::take(&mut *hasher.lock().unwrap());
            assert_eq!((n, bytes), (count, size), "{} {key}", store.describe());
            assert_eq!(
                hex::encode(h.finalize()),
                want,
                "{} {key}",
                store.describe()
            );
        }
        assert_eq!(
            std::fs::read_dir(spool.path()).unwrap().count(),
            0,
            "spool files are removed"
        );
    }
}

/// Rotating the keyring via the CLI: old segments still open, new ones use the new key, and a
/// keyring that lost the old key reports exactly the old segments as wrong-key.
#[tokio::test]
async fn key_rotation_keeps_old_segments_readable() {
    let dir = tempfile::tempdir().unwrap();
    let keyring_path = dir.path().join("keyring");
    let agent = workspace_bin("mc-agent");
    let run = |args: &[&str]| {
        let out = Command::new(&agent)
            .args(args)
            .arg(&keyring_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["key", "generate", "--keyring"]);
    let load =
        || Keyring::load(&mc_core::crypto::KeyringSource::File(keyring_path.clone())).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDir::new(dir.path().join("repo")).unwrap());
    let repo_a = Repository::new(store.clone(), load());
    repo_a.init().await.unwrap();
    let old = store_chain(&repo_a, "rs0", &[(10, 20, 2, true)]).await;
    let key_a = load().primary().0.clone();

    let out = run(&["key", "rotate", "--keyring"]);
    let ring_ba = load();
    let key_b = ring_ba.primary().0.clone();
    assert!(out.contains(key_b.as_str()) && key_a != key_b, "{out}");
    assert_eq!(
        run(&["key", "list", "--keyring"]),
        format!("{key_b}  (primary)\n{key_a}\n")
    );

    let repo_ba = Repository::new(store.clone(), ring_ba);
    let new = store_chain(&repo_ba, "rs1", &[(30, 40, 2, true)]).await;
    assert_eq!(
        repo_ba.read_header(&new[0]).await.unwrap().key_id,
        key_b.as_str()
    );
    assert!(mc_core::catalog::verify(&repo_ba, None)
        .await
        .unwrap()
        .is_ok());

    // Drop key A from the file: exactly the old segment fails, naming the missing key.
    let text = std::fs::read_to_string(&keyring_path).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let only_b = Keyring::parse(lines[0], "only b").unwrap();
    let report = mc_core::catalog::verify(&Repository::new(store, only_b), None)
        .await
        .unwrap();
    let failed: Vec<_> = report.failures().map(|f| f.key.clone()).collect();
    assert_eq!(failed, old);
    let detail = report.failures().next().unwrap().detail.clone().unwrap();
    assert!(detail.contains(key_a.as_str()), "{detail}");
}
