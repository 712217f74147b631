//! The storage backends against real storage: one generic test body over `Arc<dyn ObjectStore>`,
//! run on a local directory and on the SeaweedFS S3 server, plus S3-only checks (URL opening,
//! conditional multipart completion, Object Lock, error messages).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::types::{ChecksumMode, ObjectLockRetentionMode};
use futures::{StreamExt, TryStreamExt};
use mc_core::storage::local::LocalDir;
use mc_core::storage::s3::{LockMode, ObjectLockSettings, S3Settings, S3Store, StaticCredentials};
use mc_core::storage::{open, ObjectStore, PutSource, RepoUrl, StorageError};
use mc_tests::*;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Small enough that a ~12 MiB file goes multipart in three 5 MiB parts (S3's minimum).
const TEST_THRESHOLD: u64 = 6 * MIB;
const TEST_PART: u64 = 5 * MIB;

// --- deterministic content ------------------------------------------------------------------------

/// Byte `i` of the pseudo-random content `seed`: any slice can be recomputed to check a read
/// byte for byte without keeping the object in memory.
fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        let pos = offset + i as u64;
        let mut z = seed ^ (pos / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        *byte = (z >> ((pos % 8) * 8)) as u8;
    }
}

fn content(seed: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0; len as usize];
    fill(seed, 0, &mut buf);
    buf
}

/// Writes `len` bytes of content `seed` to `path`, 1 MiB at a time.
fn write_content_file(path: &Path, seed: u64, len: u64) {
    use std::io::Write;
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(path).expect("create source file"));
    let mut buf = vec![0; MIB as usize];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(MIB) as usize;
        fill(seed, offset, &mut buf[..n]);
        file.write_all(&buf[..n]).expect("write source file");
        offset += n as u64;
    }
    file.flush().expect("flush source file");
}

/// A small xorshift generator for sizes and offsets.
struct Rng(u64);
impl Rng {
    fn new() -> Self {
        Rng(uuid::Uuid::new_v4().as_u128() as u64 | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Streams `key` and compares every chunk with content `seed`; returns the byte count.
async fn check_stream(store: &dyn ObjectStore, key: &str, seed: u64, len: u64) {
    let mut stream = store
        .get_stream(key)
        .await
        .unwrap_or_else(|e| panic!("get_stream {key}: {e}"));
    let mut offset = 0u64;
    let mut expected = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("reading {key}: {e}"));
        assert!(
            offset + chunk.len() as u64 <= len,
            "{key}: more bytes than written"
        );
        expected.resize(chunk.len(), 0);
        fill(seed, offset, &mut expected);
        assert!(
            chunk[..] == expected[..],
            "{key}: content differs in {offset}..{}",
            offset + chunk.len() as u64
        );
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, len, "{key}: length");
}

// --- the generic body -----------------------------------------------------------------------------

struct Obj {
    key: String,
    seed: u64,
    len: u64,
}

/// Everything the rest of the system relies on, for any backend.
async fn exercise(store: Arc<dyn ObjectStore>, scratch: &Path) {
    let started = Instant::now();
    let mut rng = Rng::new();
    let repo = store.describe();

    // Objects of many sizes: empty, one byte, a few KiB, above 1 MiB, and one multipart file
    // (three parts with the test's S3 settings).
    let mut sizes = vec![
        0,
        1,
        2,
        100,
        4 * KIB,
        4 * KIB + 1,
        64 * KIB + 3,
        MIB + 7,
        2 * MIB,
    ];
    sizes.extend((0..6).map(|_| rng.below(16 * KIB)));
    let mut objects = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let obj = Obj {
            key: format!("obj/{i:03}-{len}"),
            seed: rng.below(u64::MAX),
            len: *len,
        };
        // Half from memory, half from files: both code paths of every backend.
        let source = if i % 2 == 0 {
            PutSource::Bytes(content(obj.seed, obj.len).into())
        } else {
            let path = scratch.join(format!("src-{i}"));
            write_content_file(&path, obj.seed, obj.len);
            PutSource::File(path)
        };
        store
            .put_if_absent(&obj.key, source)
            .await
            .unwrap_or_else(|e| panic!("put {}: {e}", obj.key));
        objects.push(obj);
    }
    let multipart = Obj {
        key: "obj/multipart".into(),
        seed: rng.below(u64::MAX),
        len: 12 * MIB + 5,
    };
    let multipart_path = scratch.join("multipart-src");
    write_content_file(&multipart_path, multipart.seed, multipart.len);
    store
        .put_if_absent(&multipart.key, PutSource::File(multipart_path.clone()))
        .await
        .expect("multipart put");
    objects.push(multipart);

    for obj in &objects {
        let whole = store
            .get(&obj.key)
            .await
            .unwrap_or_else(|e| panic!("get {}: {e}", obj.key));
        assert!(
            whole[..] == content(obj.seed, obj.len)[..],
            "{}: content",
            obj.key
        );
        check_stream(&*store, &obj.key, obj.seed, obj.len).await;
        let meta = store
            .head(&obj.key)
            .await
            .expect("head")
            .expect("object exists");
        assert_eq!((meta.key.as_str(), meta.size), (obj.key.as_str(), obj.len));
        let age = meta
            .last_modified
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        assert!(
            age.is_none_or(|a| a < Duration::from_secs(600)),
            "{}: last_modified {age:?}",
            obj.key
        );

        // Ranged reads at random offsets, the very end, and empty ranges.
        let mut ranges = vec![obj.len..obj.len, 0..obj.len];
        if obj.len > 0 {
            ranges.push(obj.len - 1..obj.len);
        }
        for _ in 0..4 {
            let start = rng.below(obj.len + 1);
            let end = start + rng.below(obj.len - start + 1);
            ranges.push(start..end);
        }
        for range in ranges {
            let got = store
                .get_range(&obj.key, range.clone())
                .await
                .unwrap_or_else(|e| panic!("get_range {} {range:?}: {e}", obj.key));
            let mut expected = vec![0; (range.end - range.start) as usize];
            fill(obj.seed, range.start, &mut expected);
            assert!(got[..] == expected[..], "{} {range:?}: content", obj.key);
        }
        let err = store
            .get_range(&obj.key, obj.len / 2..obj.len + 1)
            .await
            .expect_err("range past the end");
        assert!(
            matches!(err, StorageError::InvalidRange { size, .. } if size == obj.len),
            "{}: {err}",
            obj.key
        );
    }

    // Listing, ascending, with prefixes.
    let mut keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    keys.sort();
    let listed = store.list("obj/").await.expect("list");
    assert_eq!(
        listed.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        keys
    );
    for meta in &listed {
        let obj = objects
            .iter()
            .find(|o| o.key == meta.key)
            .expect("listed key was written");
        assert_eq!(meta.size, obj.len, "{}: listed size", meta.key);
    }
    let zero: Vec<_> = store
        .list("obj/00")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    let expect: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| k.starts_with("obj/00"))
        .collect();
    assert_eq!(zero, expect);
    assert!(store.list("nothing-here/").await.expect("list").is_empty());

    // More than a page (1000) of keys, written concurrently: pagination to the end.
    let many: Vec<String> = (0..1100)
        .map(|i| format!("many/{:02}/{i:05}", i % 13))
        .collect();
    futures::stream::iter(many.iter().cloned())
        .map(|key| {
            let store = store.clone();
            async move {
                store
                    .put_if_absent(&key, PutSource::Bytes(key.clone().into_bytes().into()))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("put many");
    let first = store.list_page("many/", None).await.expect("first page");
    assert!(first.next.is_some(), "1100 keys do not fit one page");
    assert!(first.objects.len() < 1100);
    let mut sorted = many.clone();
    sorted.sort();
    let listed: Vec<String> = store
        .list("many/")
        .await
        .expect("list many")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, sorted);

    // Put-if-absent: a second writer of a key loses, on both the single and the multipart path.
    let small = &objects[4];
    let err = store
        .put_if_absent(&small.key, PutSource::Bytes("other".into()))
        .await
        .expect_err("overwrite");
    assert!(err.is_already_exists(), "{err}");
    let err = store
        .put_if_absent(&small.key, PutSource::File(multipart_path.clone()))
        .await
        .expect_err("overwrite by a multipart file");
    assert!(err.is_already_exists(), "{err}");
    assert!(
        err.to_string().contains(&small.key) && err.to_string().contains(&repo),
        "{err}"
    );
    let big = objects.last().expect("multipart object");
    let err = store
        .put_if_absent(&big.key, PutSource::Bytes("x".into()))
        .await
        .expect_err("overwrite");
    assert!(err.is_already_exists(), "{err}");
    assert!(store.get(&small.key).await.expect("get")[..] == content(small.seed, small.len)[..]);
    check_stream(&*store, &big.key, big.seed, big.len).await;

    // Missing objects.
    let missing = "obj/does-not-exist";
    assert!(store.head(missing).await.expect("head").is_none());
    let err = store.get(missing).await.expect_err("get missing");
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().contains(missing) && err.to_string().contains(&repo),
        "{err}"
    );
    assert!(store
        .get_stream(missing)
        .await
        .err()
        .is_some_and(|e| e.is_not_found()));
    assert!(store
        .get_range(missing, 0..1)
        .await
        .expect_err("range")
        .is_not_found());

    // Invalid keys never reach the backend.
    for key in ["", "/abs", "a/../b"] {
        let err = store
            .put_if_absent(key, PutSource::Bytes("x".into()))
            .await
            .expect_err("bad key");
        assert!(
            matches!(err, StorageError::InvalidKey { .. }),
            "{key:?}: {err}"
        );
    }

    // Delete: idempotent, and the key can be written again afterwards.
    store.delete(&small.key).await.expect("delete");
    store.delete(&small.key).await.expect("delete again");
    store.delete(missing).await.expect("delete missing");
    assert!(store.head(&small.key).await.expect("head").is_none());
    assert!(store
        .get(&small.key)
        .await
        .expect_err("get deleted")
        .is_not_found());
    assert_eq!(
        store.list("obj/").await.expect("list").len(),
        objects.len() - 1
    );
    store
        .put_if_absent(&small.key, PutSource::Bytes("again".into()))
        .await
        .expect("rewrite after delete");
    assert_eq!(&store.get(&small.key).await.expect("get")[..], b"again");

    eprintln!("{repo}: generic body took {:?}", started.elapsed());
}

/// One object of 64 MiB from a file, streamed back chunk by chunk: neither side holds it whole.
async fn large_object(store: Arc<dyn ObjectStore>, scratch: &Path) {
    let started = Instant::now();
    let (seed, len): (u64, u64) = (0x5eed, 64 * MIB);
    let path = scratch.join("large");
    write_content_file(&path, seed, len);
    store
        .put_if_absent("large/64mib", PutSource::File(path))
        .await
        .expect("put 64 MiB");
    assert_eq!(
        store
            .head("large/64mib")
            .await
            .expect("head")
            .map(|m| m.size),
        Some(len)
    );
    check_stream(&*store, "large/64mib", seed, len).await;
    let got = store
        .get_range("large/64mib", 40 * MIB - 3..40 * MIB + 5)
        .await
        .expect("range");
    let mut expected = vec![0; 8];
    fill(seed, 40 * MIB - 3, &mut expected);
    assert_eq!(&got[..], &expected[..]);
    eprintln!(
        "{}: 64 MiB round trip took {:?}",
        store.describe(),
        started.elapsed()
    );
}

// --- backends --------------------------------------------------------------------------------------

fn s3_settings() -> S3Settings {
    S3Settings {
        endpoint: Some(S3Env::from_env().endpoint),
        multipart_threshold: TEST_THRESHOLD,
        part_size: TEST_PART,
        ..S3Settings::default()
    }
}

async fn s3_store(prefix: &str) -> (aws_sdk_s3::Client, String, Arc<dyn ObjectStore>) {
    let client = s3_client();
    let bucket = fresh_bucket(&client, "mc-storage").await;
    let store = S3Store::from_client(client.clone(), &bucket, prefix, s3_settings());
    (client, bucket, Arc::new(store))
}

#[tokio::test]
async fn local_dir_backend() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scratch = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalDir::new(dir.path().join("repo")).expect("local repo"));
    exercise(store.clone(), scratch.path()).await;
    large_object(store, scratch.path()).await;
}

#[tokio::test]
async fn s3_backend() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (client, bucket, store) = s3_store("backups/test").await;
    exercise(store.clone(), scratch.path()).await;
    large_object(store.clone(), scratch.path()).await;

    // Keys live under the prefix in the bucket, and nothing else is there.
    let out = client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("obj/")
        .send()
        .await
        .expect("raw list");
    assert_eq!(
        out.key_count,
        Some(0),
        "objects are stored under the prefix only"
    );
    let out = client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("backups/test/obj/")
        .send()
        .await
        .expect("raw list");
    assert!(out.key_count.unwrap_or(0) > 10);

    // No multipart upload is left behind by the refused overwrite.
    let uploads = client
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .expect("list uploads");
    assert!(
        uploads.uploads().is_empty(),
        "dangling uploads: {:?}",
        uploads.uploads()
    );

    // Puts carry a SHA-256 checksum, which the server kept.
    let head = client
        .head_object()
        .bucket(&bucket)
        .key("backups/test/obj/004-4096")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("raw head");
    assert!(
        head.checksum_sha256.is_some(),
        "x-amz-checksum-sha256 was sent and stored: {head:?}"
    );
}

/// Pagination through the test-only page-size knob: small pages, many continuation tokens.
#[tokio::test]
async fn s3_small_pages() {
    let client = s3_client();
    let bucket = fresh_bucket(&client, "mc-pages").await;
    let settings = S3Settings {
        list_page_size: Some(7),
        ..s3_settings()
    };
    let store = S3Store::from_client(client, &bucket, "", settings);
    let keys: Vec<String> = (0..40).map(|i| format!("k/{i:03}")).collect();
    for key in &keys {
        store
            .put_if_absent(key, PutSource::Bytes("x".into()))
            .await
            .expect("put");
    }
    let first = store.list_page("k/", None).await.expect("page");
    assert_eq!(first.objects.len(), 7);
    assert!(first.next.is_some());
    let listed: Vec<String> = store
        .list("k/")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, keys);
}

/// SeaweedFS enforces `If-None-Match: *` on CompleteMultipartUpload, including between two
/// uploads racing for one key: the store's put-if-absent relies on it (the HEAD before an upload
/// only saves work).
#[tokio::test]
async fn s3_conditional_multipart_completion_is_enforced() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
    let client = s3_client();
    let bucket = fresh_bucket(&client, "mc-mpu").await;

    async fn upload(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
    ) -> (String, CompletedMultipartUpload) {
        let created = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .expect("create upload");
        let id = created.upload_id.expect("upload id");
        let part = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(1)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(content(1, 1000).into())
            .send()
            .await
            .expect("upload part");
        let done = CompletedMultipartUpload::builder()
            .parts(
                CompletedPart::builder()
                    .part_number(1)
                    .set_e_tag(part.e_tag)
                    .set_checksum_sha256(part.checksum_sha256)
                    .build(),
            )
            .build();
        (id, done)
    }
    async fn complete(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        (id, done): (String, CompletedMultipartUpload),
    ) -> Option<u16> {
        let result = client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(done)
            .if_none_match("*")
            .send()
            .await;
        result
            .err()
            .map(|e| e.raw_response().map_or(0, |r| r.status().as_u16()))
    }

    // Two uploads started before either completes: the second completion must lose.
    let a = upload(&client, &bucket, "k").await;
    let b = upload(&client, &bucket, "k").await;
    let b_id = b.0.clone();
    assert_eq!(
        complete(&client, &bucket, "k", a).await,
        None,
        "first completion wins"
    );
    let status = complete(&client, &bucket, "k", b).await;
    assert!(
        matches!(status, Some(412 | 409)),
        "second completion must be refused, got {status:?}"
    );
    client
        .abort_multipart_upload()
        .bucket(&bucket)
        .key("k")
        .upload_id(b_id)
        .send()
        .await
        .expect("abort");
    assert_eq!(
        &client
            .get_object()
            .bucket(&bucket)
            .key("k")
            .send()
            .await
            .expect("get")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()[..],
        &content(1, 1000)[..]
    );

    // And through the store: a multipart put racing with a small put of the same key.
    let scratch = tempfile::tempdir().expect("temp dir");
    let path = scratch.path().join("big");
    write_content_file(&path, 9, 11 * MIB);
    let store = Arc::new(S3Store::from_client(
        client.clone(),
        &bucket,
        "",
        s3_settings(),
    ));
    let racers = (0..4u64).map(|i| {
        let store = store.clone();
        let path = path.clone();
        async move {
            if i % 2 == 0 {
                store.put_if_absent("race", PutSource::File(path)).await
            } else {
                store
                    .put_if_absent("race", PutSource::Bytes(content(i, 100).into()))
                    .await
            }
        }
    });
    let results = futures::future::join_all(racers).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(StorageError::is_already_exists),
        "{results:?}"
    );
    let uploads = client
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .expect("list uploads");
    assert!(
        uploads.uploads().is_empty(),
        "losing uploads are aborted: {:?}",
        uploads.uploads()
    );
}

/// Object Lock: with governance retention configured, every write (single and multipart) gets a
/// retention date, and deleting the locked version is refused.
#[tokio::test]
async fn s3_object_lock_retention() {
    let client = s3_client();
    let bucket = unique_name("mc-lock");
    client
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket} with object lock: {e:?}"));
    let retain_for = Duration::from_secs(86400);
    let settings = S3Settings {
        object_lock: Some(ObjectLockSettings {
            mode: LockMode::Governance,
            retain_for,
        }),
        ..s3_settings()
    };
    let store = S3Store::from_client(client.clone(), &bucket, "locked", settings);
    let scratch = tempfile::tempdir().expect("temp dir");
    let path = scratch.path().join("big");
    write_content_file(&path, 3, 11 * MIB);
    let before = SystemTime::now();
    store
        .put_if_absent("small", PutSource::Bytes(content(2, 1000).into()))
        .await
        .expect("locked put");
    store
        .put_if_absent("big", PutSource::File(path))
        .await
        .expect("locked multipart put");

    for key in ["locked/small", "locked/big"] {
        let retention = client
            .get_object_retention()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("retention of {key}: {e:?}"))
            .retention
            .expect("retention is set");
        assert_eq!(
            retention.mode,
            Some(ObjectLockRetentionMode::Governance),
            "{key}"
        );
        let until =
            SystemTime::try_from(retention.retain_until_date.expect("retain until")).expect("date");
        let expected = before + retain_for;
        let skew = until
            .duration_since(expected)
            .unwrap_or_else(|e| e.duration());
        assert!(
            skew < Duration::from_secs(300),
            "{key}: retained until {until:?}, expected about {expected:?}"
        );

        // Deleting the locked version itself is refused.
        let versions = client
            .list_object_versions()
            .bucket(&bucket)
            .prefix(key)
            .send()
            .await
            .expect("versions");
        let version = versions.versions()[0]
            .version_id
            .clone()
            .expect("version id");
        let refused = client
            .delete_object()
            .bucket(&bucket)
            .key(key)
            .version_id(&version)
            .send()
            .await;
        let refused = refused.expect_err("deleting a governance-locked version must fail");
        assert_eq!(
            refused.raw_response().map(|r| r.status().as_u16()),
            Some(403),
            "{key}: {refused:?}"
        );
        let still = client
            .head_object()
            .bucket(&bucket)
            .key(key)
            .version_id(&version)
            .send()
            .await;
        assert!(still.is_ok(), "{key}: the locked version survives");
    }
    // Control: an object written without retention in the same bucket can be deleted by version.
    let put = client
        .put_object()
        .bucket(&bucket)
        .key("unlocked")
        .body(content(4, 10).into())
        .send()
        .await;
    let version = put.expect("raw put").version_id.expect("versioned bucket");
    client
        .delete_object()
        .bucket(&bucket)
        .key("unlocked")
        .version_id(version)
        .send()
        .await
        .expect("an unlocked version can be deleted");

    // The store's delete only hides the object behind a delete marker; the data is kept.
    store
        .delete("small")
        .await
        .expect("delete adds a delete marker");
    assert!(store.head("small").await.expect("head").is_none());
}

/// Opening through a repository URL (credentials from the config, never in the URL), and the
/// messages of the usual mistakes.
#[tokio::test]
async fn s3_open_through_url() {
    let env = S3Env::from_env();
    let client = s3_client();
    let bucket = fresh_bucket(&client, "mc-url").await;
    let with_creds = |url: &str, secret: &str| -> RepoUrl {
        match RepoUrl::parse(url).unwrap_or_else(|e| panic!("{e}")) {
            RepoUrl::S3(mut config) => {
                config.static_credentials = Some(StaticCredentials {
                    access_key_id: env.access_key.clone(),
                    secret_access_key: secret.to_owned(),
                });
                RepoUrl::S3(config)
            }
            other => panic!("{other:?}"),
        }
    };
    let url = format!(
        "s3://{bucket}/via/url?endpoint={}&region={}&path_style=true",
        env.endpoint, env.region
    );
    let repo = with_creds(&url, &env.secret_key);
    let shown = repo.to_string();
    assert!(!shown.contains(&env.secret_key), "{shown}");
    assert_eq!(
        with_creds(&shown, &env.secret_key),
        repo,
        "{shown} reads back"
    );
    let store = open(&repo).await.expect("open s3 URL");
    assert_eq!(
        store.describe(),
        format!("s3://{bucket}/via/url at {}", env.endpoint)
    );
    store
        .put_if_absent("hello", PutSource::Bytes("world".into()))
        .await
        .expect("put");
    assert_eq!(&store.get("hello").await.expect("get")[..], b"world");
    let raw = client
        .get_object()
        .bucket(&bucket)
        .key("via/url/hello")
        .send()
        .await;
    assert!(raw.is_ok(), "stored under the URL's prefix");

    // A missing bucket.
    let url = format!(
        "s3://no-such-bucket-{}?endpoint={}",
        std::process::id(),
        env.endpoint
    );
    let err = open(&with_creds(&url, &env.secret_key))
        .await
        .expect_err("missing bucket")
        .to_string();
    eprintln!("missing bucket: {err}");
    assert!(
        err.contains("does not exist") && err.contains("create it"),
        "{err}"
    );

    // A wrong secret: access denied, and the secret never printed.
    let url = format!("s3://{bucket}?endpoint={}", env.endpoint);
    let err = open(&with_creds(&url, "wrong-secret-value"))
        .await
        .expect_err("bad secret")
        .to_string();
    eprintln!("wrong secret: {err}");
    assert!(
        err.contains("access denied") || err.contains("SignatureDoesNotMatch"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-value"), "{err}");

    // Nothing listening.
    let url = format!("s3://{bucket}?endpoint=http://127.0.0.1:9");
    let RepoUrl::S3(mut config) = with_creds(&url, &env.secret_key) else {
        unreachable!()
    };
    config.max_attempts = 2;
    let err = open(&RepoUrl::S3(config))
        .await
        .expect_err("nothing listening")
        .to_string();
    eprintln!("nothing listening: {err}");
    assert!(
        err.contains("cannot reach S3 endpoint http://127.0.0.1:9"),
        "{err}"
    );
}
