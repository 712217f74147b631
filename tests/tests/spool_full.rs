//! The spool directory full (issue #15): capture seals segments into the spool before upload
//! (here every segment: `spool_over` 0), and the spool's file system has no space left. A tmpfs
//! of 8 MiB is mounted on the test's spool directory and filled with a ballast file, so the
//! "no space" is the kernel's own ENOSPC. Mounting needs root (CAP_SYS_ADMIN); where the
//! machine does not allow it the test fails saying so (the machine of the suite, root in a
//! container, allows it).
//!
//! - sealing into the full spool fails with an error naming the directory and its free bytes
//!   and saying what to do;
//! - capture into it stores nothing and reports nothing durable while it is full (the batch
//!   waits in memory, the oplog keeps the rest): nothing is claimed that is not stored;
//! - once the ballast is removed capture resumes by itself, and the repository's timeline is
//!   one run holding exactly the oplog's entries, each once, in order.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_agent::capture::oplog::OplogSource;
use mc_agent::capture::spool::SpoolFull;
use mc_agent::metrics::Metrics;
use mc_core::catalog::names::oplog_key;
use mc_core::catalog::{Catalog, Repository, Spool};
use mc_core::format::{OplogRange, OplogTs, SegmentSpec, StreamKind};
use mc_core::storage::local::LocalDir;
use mc_tests::agent::{capture_settings, wait_durable};
use mc_tests::writer::{Steady, SteadyWriter};
use mc_tests::*;
use tokio::sync::watch;

/// A tmpfs mounted on a directory for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {} (the spool-full test needs root or CAP_SYS_ADMIN): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `path` with a file of zeros until it has no space left.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_all()) {
            assert!(mc_core::storage::disk::is_full(&e), "filling: {e}");
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_is_named_nothing_is_lost_and_capture_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let _tmpfs = Tmpfs::mount(&spool, "8m");
    let ballast = spool.join("ballast");
    fill(&ballast);

    let keyring = mc_core::crypto::keys::create_keyring_file(&dir.path().join("keyring")).unwrap();
    let repo = Repository::new(
        Arc::new(LocalDir::new(dir.path().join("repo")).unwrap()),
        keyring,
    );
    repo.init().await.unwrap();
    let source_id = unique_db("spool").replace('_', "-");

    // Sealing into the full spool: the error says which directory, what is free, what to do.
    let first = OplogTs::new(1000, 1);
    let range = OplogRange {
        first,
        last: first,
        prev: None,
        count: 1,
    };
    let spec = SegmentSpec::new(
        StreamKind::Oplog,
        oplog_key(&source_id, first, first),
        &source_id,
        serde_json::to_value(range).unwrap(),
    );
    let (_, error) = repo
        .seal(
            spec,
            vec![vec![7u8; 256 << 10]],
            Some(Spool {
                dir: spool.clone(),
                over: 0,
            }),
        )
        .await
        .expect_err("sealing into a full spool fails");
    let full = SpoolFull::of(&spool, &error)
        .unwrap_or_else(|| panic!("a full spool recognised in: {error}"));
    let message = full.to_string();
    eprintln!("{message}");
    assert!(
        message.starts_with(&format!("spool directory {} is full: ", spool.display()))
            && message.contains(" bytes free; free space or point spool at a larger volume"),
        "{message}"
    );
    assert!(full.free.is_some_and(|b| b < 64 << 10), "{full:?}");

    // Capture into the full spool, under a steady load.
    let client = mongo_client().await;
    let db = unique_db("spool");
    let writer = SteadyWriter::start(
        client.database(&db).collection("c"),
        Steady {
            pause: Duration::from_millis(5),
            pad: 200,
            update: false,
        },
    );
    let source = OplogSource::connect(&mongodb_uri()).await.unwrap();
    let mut settings = capture_settings(&source_id, &spool);
    settings.upload.spool_over = 0;
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(mc_agent::capture::run(
        repo.clone(),
        source.clone(),
        settings,
        metrics.clone(),
        stopped,
    ));

    // Sealing fails and is retried; nothing is stored, nothing is reported durable.
    let t0 = Instant::now();
    while metrics.capture.upload_errors.get() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "two failed seals within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written_while_full = writer.acknowledged();
    assert!(written_while_full > 0);
    assert_eq!(
        metrics
            .capture
            .durable_ts
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing durable while the spool is full"
    );
    let stored = Catalog::load(&repo, &source_id, StreamKind::Oplog)
        .await
        .unwrap();
    assert!(stored.segments.is_empty(), "nothing stored while full");

    // Space returns: capture resumes by itself.
    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    let target = source.majority_point().await.unwrap();
    wait_durable(&metrics, target).await;
    eprintln!(
        "capture durable past the point of the freeing {:?} after it ({} seal attempts failed)",
        freed.elapsed(),
        metrics.capture.upload_errors.get()
    );

    writer.stop().await;
    let end = source.majority_point().await.unwrap();
    wait_durable(&metrics, end).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

    // Nothing lost: one run, exactly the oplog's entries.
    mc_tests::agent::assert_one_run_equals_oplog(&repo, &client, &source_id, end).await;
    let leftovers: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "spool files left: {leftovers:?}");
    client.database(&db).drop().await.unwrap();
}
