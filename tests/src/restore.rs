//! Helpers for restore tests: a source database's complete state (documents as raw bytes in
//! `_id` order, index definitions, collection kinds) to compare a restored target with, and
//! running `mc-restore` as operators do.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

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

/// stdout and stderr of a run, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
