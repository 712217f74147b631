//! Helpers for restore tests: a source database's complete state (documents as raw bytes in
//! `_id` order, index definitions, collection kinds) to compare a restored target with, and
//! running `mc-restore` as operators do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use mc_agent::capture::oplog::OplogSource;
use mc_agent::metrics::Metrics;
use mc_agent::snapshot::{take, SnapshotSettings};
use mc_core::catalog::{Repository, SnapshotManifest};
use mc_core::crypto::keys::create_keyring_file;
use mc_core::format::WriterInfo;
use mc_core::storage::local::LocalDir;
use tokio::sync::watch;

use crate::agent::{capture_settings, wait_durable};

use futures::TryStreamExt;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::Client;

/// One collection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionState {
    pub kind: String,
    /// Raw BSON of every document, in `_id` order (empty for views).
    pub documents: Vec<Vec<u8>>,
    /// (name, key as relaxed JSON, unique) of every index.
    pub indexes: Vec<(String, String, bool)>,
}

/// Every collection of a database, by name (system collections left out).
pub type DbState = BTreeMap<String, CollectionState>;

/// Reads the whole state of `db` on `client`.
pub async fn db_state(client: &Client, db: &str) -> DbState {
    let database = client.database(db);
    let mut cursor = database
        .run_cursor_command(doc! {"listCollections": 1})
        .await
        .unwrap_or_else(|e| panic!("listCollections on {db}: {e}"));
    let mut state = DbState::new();
    while let Some(info) = cursor.try_next().await.expect("listCollections") {
        let name = info.get_str("name").unwrap_or_default().to_owned();
        if name.starts_with("system.") {
            continue;
        }
        let kind = info.get_str("type").unwrap_or("collection").to_owned();
        let mut documents = Vec::new();
        let mut indexes = Vec::new();
        if kind != "view" {
            let coll = database.collection::<RawDocumentBuf>(&name);
            let mut docs = coll
                .find(doc! {})
                .sort(doc! {"_id": 1})
                .await
                .expect("find");
            while let Some(d) = docs.try_next().await.expect("documents") {
                documents.push(d.as_bytes().to_vec());
            }
            let mut specs = database
                .run_cursor_command(doc! {"listIndexes": &name})
                .await
                .expect("listIndexes");
            while let Some(spec) = specs.try_next().await.expect("index specs") {
                let key = spec.get_document("key").cloned().unwrap_or_default();
                indexes.push((
                    spec.get_str("name").unwrap_or_default().to_owned(),
                    mongodb::bson::Bson::Document(key)
                        .into_relaxed_extjson()
                        .to_string(),
                    spec.get_bool("unique").unwrap_or(false),
                ));
            }
            indexes.sort();
        }
        state.insert(
            name,
            CollectionState {
                kind,
                documents,
                indexes,
            },
        );
    }
    state
}

/// Asserts two states are equal, naming the first difference (not dumping megabytes).
pub fn assert_same_state(label: &str, expected: &DbState, actual: &DbState) {
    let names = |s: &DbState| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(actual),
        names(expected),
        "{label}: collections differ"
    );
    for (name, want) in expected {
        let got = &actual[name];
        assert_eq!(got.kind, want.kind, "{label}: {name}: kind");
        assert_eq!(got.indexes, want.indexes, "{label}: {name}: indexes");
        assert_eq!(
            got.documents.len(),
            want.documents.len(),
            "{label}: {name}: document count"
        );
        if let Some(i) = (0..want.documents.len()).find(|&i| got.documents[i] != want.documents[i])
        {
            let show = |b: &[u8]| {
                RawDocumentBuf::from_bytes(b.to_vec())
                    .ok()
                    .and_then(|d| Document::try_from(d.as_ref()).ok())
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            };
            panic!(
                "{label}: {name}: document #{i} differs:\n  expected {}\n  restored {}",
                show(&want.documents[i]),
                show(&got.documents[i])
            );
        }
    }
}

/// Runs `mc-restore` with `args`, returning its output (never panics on a non-zero exit).
pub fn mc_restore(args: &[&str], keyring: &Path) -> Output {
    std::process::Command::new(crate::workspace_bin("mc-restore"))
        .args(args)
        .env("MC_KEYRING_FILE", keyring)
        .env_remove("MC_REPO")
        .output()
        .expect("mc-restore runs")
}

/// The names of a drill report's phases, in order.
pub fn drill_phases(report: &serde_json::Value) -> Vec<String> {
    report["phases"]
        .as_array()
        .unwrap_or_else(|| panic!("a drill report without phases: {report:#}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// stdout and stderr of a run, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A repository with a captured timeline and a snapshot of one test database.
pub struct Captured {
    pub source_id: String,
    pub dir: tempfile::TempDir,
    pub repo: Repository,
    pub source: OplogSource,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<u64, mc_agent::capture::CaptureError>>,
}

/// Paths of a finished capture's repository and keyring, as `mc-restore` takes them.
pub fn repo_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("repo"), dir.join("keyring"))
}

/// A fresh repository in a temporary directory (`repo/` and `keyring` in it, as
/// [`repo_paths`] expects).
pub async fn temp_repository() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let keyring = create_keyring_file(&dir.path().join("keyring")).unwrap();
    let repo = Repository::new(
        Arc::new(LocalDir::new(dir.path().join("repo")).unwrap()),
        keyring,
    );
    repo.init().await.unwrap();
    (dir, repo)
}

impl Captured {
    /// A fresh repository (local directory, keyring file beside it) with capture running for
    /// `source_id`, already durable up to now.
    pub async fn start(source_id: &str) -> Self {
        let (dir, repo) = temp_repository().await;
        let source = OplogSource::connect(&crate::mongodb_uri()).await.unwrap();
        let metrics = Arc::new(Metrics::default());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(mc_agent::capture::run(
            repo.clone(),
            source.clone(),
            capture_settings(source_id, &dir.path().join("spool")),
            metrics.clone(),
            rx,
        ));
        let now = source.majority_point().await.unwrap();
        wait_durable(&metrics, now).await;
        Self {
            source_id: source_id.to_owned(),
            dir,
            repo,
            source,
            metrics,
            stop,
            task,
        }
    }

    /// Takes a snapshot of database `db`.
    pub async fn snapshot(&self, db: &str) -> SnapshotManifest {
        self.snapshot_with(&self.snapshot_settings(db)).await
    }

    /// Takes a snapshot with `settings` (start from [`Captured::snapshot_settings`]).
    pub async fn snapshot_with(&self, settings: &SnapshotSettings) -> SnapshotManifest {
        take(&self.repo, &self.source, settings).await.unwrap()
    }

    /// The settings [`Captured::snapshot`] uses for database `db`.
    pub fn snapshot_settings(&self, db: &str) -> SnapshotSettings {
        SnapshotSettings {
            source: self.source_id.clone(),
            parallelism: 2,
            max_segment_bytes: 128 * 1024,
            zstd_level: 3,
            writer: WriterInfo {
                id: "test".into(),
                fence: 0,
            },
            reason: "on-demand".into(),
            databases: Some(vec![db.to_owned()]),
            users_and_roles: false,
        }
    }

    /// Waits until everything written so far is durable.
    pub async fn settle(&self) {
        let now = self.source.majority_point().await.unwrap();
        wait_durable(&self.metrics, now).await;
    }

    /// Waits until everything written so far is durable, then stops capture.
    pub async fn finish(self) -> (tempfile::TempDir, Repository) {
        let end = self.source.majority_point().await.unwrap();
        wait_durable(&self.metrics, end).await;
        self.stop.send(true).unwrap();
        self.task.await.unwrap().expect("capture stops cleanly");
        (self.dir, self.repo)
    }
}

/// Copies database `db` of `source` into `target_db` of `target` as it is now: collections and
/// time-series collections with their options, documents as raw bytes (time-series as their
/// buckets), indexes of plain collections, views last. A restore done by hand, for tests of
/// `verify-data` that need a target equal to a known source state.
pub async fn copy_db(source: &Client, db: &str, target: &Client, target_db: &str) {
    let from = source.database(db);
    let to = target.database(target_db);
    let mut cursor = from
        .run_cursor_command(doc! {"listCollections": 1})
        .await
        .unwrap_or_else(|e| panic!("listCollections on {db}: {e}"));
    let mut infos = Vec::new();
    while let Some(info) = cursor.try_next().await.expect("listCollections") {
        infos.push(info);
    }
    // Views after what they read.
    infos.sort_by_key(|i| i.get_str("type").unwrap_or("collection") == "view");
    for info in infos {
        let name = info.get_str("name").unwrap_or_default().to_owned();
        if name.starts_with("system.") {
            continue;
        }
        let kind = info.get_str("type").unwrap_or("collection").to_owned();
        let mut create = doc! {"create": &name};
        create.extend(info.get_document("options").cloned().unwrap_or_default());
        to.run_command(create)
            .await
            .unwrap_or_else(|e| panic!("creating {target_db}.{name}: {e}"));
        if kind == "view" {
            continue;
        }
        let data = if kind == "timeseries" {
            format!("system.buckets.{name}")
        } else {
            name.clone()
        };
        let docs: Vec<RawDocumentBuf> = from
            .collection::<RawDocumentBuf>(&data)
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("documents");
        if !docs.is_empty() {
            to.collection::<RawDocumentBuf>(&data)
                .insert_many(docs)
                .await
                .unwrap_or_else(|e| panic!("inserting into {target_db}.{data}: {e}"));
        }
        if kind != "collection" {
            continue;
        }
        let specs: Vec<Document> = from
            .run_cursor_command(doc! {"listIndexes": &name})
            .await
            .expect("listIndexes")
            .try_collect()
            .await
            .expect("index specs");
        let specs: Vec<Document> = specs
            .into_iter()
            .filter(|s| s.get_str("name").ok() != Some("_id_"))
            .map(|mut s| {
                s.remove("v");
                s.remove("ns");
                s
            })
            .collect();
        if !specs.is_empty() {
            to.run_command(doc! {"createIndexes": &name, "indexes": specs})
                .await
                .unwrap_or_else(|e| panic!("indexes of {target_db}.{name}: {e}"));
        }
    }
}
