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
    /// `listCollections` options (validator, capped size and max, collation, clustered index,
    /// time-series, a view's `viewOn` and `pipeline`, …) as relaxed JSON, top-level keys sorted.
    /// Compared by [`state_differences`], not by [`assert_same_state`].
    pub options: String,
    /// Every index's full specification without `v` and `ns` (TTL, collation, partial filter,
    /// sparse, hidden, text weights, …) as relaxed JSON, top-level keys sorted; sorted.
    /// Compared by [`state_differences`], not by [`assert_same_state`].
    pub index_specs: Vec<String>,
    /// Capped collections only (else empty): raw BSON of every document in natural order, the
    /// order `find` returns without a sort. Compared by [`state_differences`].
    pub natural: Vec<Vec<u8>>,
}

/// `d` as relaxed JSON with its top-level keys sorted (nested documents keep their order, which
/// can matter: index keys, validators).
fn sorted_json(d: &Document) -> String {
    let mut keys: Vec<&String> = d.keys().collect();
    keys.sort();
    let mut sorted = Document::new();
    for k in keys {
        sorted.insert(
            k.clone(),
            d.get(k).cloned().unwrap_or(mongodb::bson::Bson::Null),
        );
    }
    mongodb::bson::Bson::Document(sorted)
        .into_relaxed_extjson()
        .to_string()
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
        let options_doc = info.get_document("options").cloned().unwrap_or_default();
        let options = sorted_json(&options_doc);
        let mut documents = Vec::new();
        let mut indexes = Vec::new();
        let mut index_specs = Vec::new();
        let mut natural = Vec::new();
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
            while let Some(mut spec) = specs.try_next().await.expect("index specs") {
                let key = spec.get_document("key").cloned().unwrap_or_default();
                indexes.push((
                    spec.get_str("name").unwrap_or_default().to_owned(),
                    mongodb::bson::Bson::Document(key)
                        .into_relaxed_extjson()
                        .to_string(),
                    spec.get_bool("unique").unwrap_or(false),
                ));
                spec.remove("v");
                spec.remove("ns");
                index_specs.push(sorted_json(&spec));
            }
            indexes.sort();
            index_specs.sort();
            if options_doc.get_bool("capped").unwrap_or(false) {
                let mut docs = coll.find(doc! {}).await.expect("find in natural order");
                while let Some(d) = docs.try_next().await.expect("documents") {
                    natural.push(d.as_bytes().to_vec());
                }
            }
        }
        state.insert(
            name,
            CollectionState {
                kind,
                documents,
                indexes,
                options,
                index_specs,
                natural,
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

/// Writes one document into `{db}_marker` (outside the restored databases) and returns its
/// oplog timestamp: a restore point after every write acknowledged before the call.
pub async fn marker_point(client: &Client, db: &str) -> mc_core::format::OplogTs {
    let mut session = client.start_session().await.expect("a session");
    client
        .database(&format!("{db}_marker"))
        .collection::<Document>("m")
        .insert_one(doc! {"at": chrono::Utc::now().timestamp_millis()})
        .session(&mut session)
        .await
        .expect("marker write");
    let t = session
        .operation_time()
        .expect("the marker's operation time");
    mc_core::format::OplogTs::new(t.time, t.increment)
}

/// A document for a message: relaxed JSON cut to `max` characters.
pub fn show_document(bytes: &[u8], max: usize) -> String {
    let text = RawDocumentBuf::from_bytes(bytes.to_vec())
        .ok()
        .and_then(|d| Document::try_from(d.as_ref()).ok())
        .map(|d| {
            mongodb::bson::Bson::Document(d)
                .into_relaxed_extjson()
                .to_string()
        })
        .unwrap_or_else(|| format!("<{} bytes, not a document>", bytes.len()));
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}… ({} bytes)", bytes.len())
    }
}

/// Every difference between an expected and a restored state, at most one line per collection
/// (the first difference found: presence, kind, options, index specifications, document count,
/// the first differing document in `_id` order, then natural order for capped collections), each
/// starting with the collection's name. Empty when the states are equal. Compares more than
/// [`assert_same_state`]: options, full index specifications and natural order too.
pub fn state_differences(expected: &DbState, actual: &DbState) -> Vec<String> {
    let mut out = Vec::new();
    for name in actual.keys().filter(|n| !expected.contains_key(*n)) {
        out.push(format!("{name}: restored but absent from the source"));
    }
    for (name, want) in expected {
        let Some(got) = actual.get(name) else {
            out.push(format!("{name}: missing from the restored database"));
            continue;
        };
        // The first differing document (in `what` order) of two lists of equal prefix.
        let first_doc = |what: &str, want: &[Vec<u8>], got: &[Vec<u8>]| -> Option<String> {
            (0..want.len().min(got.len()))
                .find(|&i| got[i] != want[i])
                .map(|i| {
                    format!(
                        "{what} document #{i} differs:\n    expected {}\n    restored {}",
                        show_document(&want[i], 400),
                        show_document(&got[i], 400)
                    )
                })
        };
        let diff = if got.kind != want.kind {
            Some(format!("kind {:?} expected, {:?} restored", want.kind, got.kind))
        } else if got.options != want.options {
            Some(format!(
                "options differ:\n    expected {}\n    restored {}",
                want.options, got.options
            ))
        } else if got.index_specs != want.index_specs {
            let missing: Vec<_> = want
                .index_specs
                .iter()
                .filter(|s| !got.index_specs.contains(s))
                .collect();
            let extra: Vec<_> = got
                .index_specs
                .iter()
                .filter(|s| !want.index_specs.contains(s))
                .collect();
            Some(format!(
                "indexes differ:\n    expected but not restored {missing:?}\n    restored but not expected {extra:?}"
            ))
        } else if got.documents.len() != want.documents.len() {
            Some(format!(
                "{} documents expected, {} restored{}",
                want.documents.len(),
                got.documents.len(),
                first_doc("; first difference in _id order:", &want.documents, &got.documents)
                    .unwrap_or_default()
            ))
        } else {
            first_doc("_id order:", &want.documents, &got.documents).or_else(|| {
                (got.natural != want.natural)
                    .then(|| {
                        first_doc("natural order:", &want.natural, &got.natural).unwrap_or_else(
                            || {
                                format!(
                                    "natural order: {} documents expected, {} restored",
                                    want.natural.len(),
                                    got.natural.len()
                                )
                            },
                        )
                    })
            })
        }
        .map(|d| format!("{name}: {d}"));
        out.extend(diff);
    }
    out
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
