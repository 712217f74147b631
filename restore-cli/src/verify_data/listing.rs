//! The namespaces each side holds now (`listCollections` of every database but the server's
//! own), and the source name of a target namespace.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Client;

use super::VerifyDataError;
use crate::namespaces::{is_buckets, NamespaceMap, SYSTEM_DATABASES};

/// One collection as `listCollections` shows it now.
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub(super) kind: String,
    pub(super) options: Document,
}

/// Every collection of every database but the server's own (system collections left out,
/// buckets collections kept), by namespace.
pub(super) async fn list_collections(
    client: &Client,
    side: &'static str,
) -> Result<BTreeMap<String, Listed>, VerifyDataError> {
    let err = |what: String| {
        move |source| VerifyDataError::Command {
            side,
            what,
            error: source,
        }
    };
    let mut out = BTreeMap::new();
    for db in client
        .list_database_names()
        .await
        .map_err(err("listDatabases".into()))?
    {
        if SYSTEM_DATABASES.contains(&db.as_str()) {
            continue;
        }
        let mut cursor = client
            .database(&db)
            .run_cursor_command(doc! {"listCollections": 1})
            .await
            .map_err(err(format!("listCollections on {db}")))?;
        while let Some(info) = cursor
            .try_next()
            .await
            .map_err(err(format!("listCollections on {db}")))?
        {
            let name = info.get_str("name").unwrap_or_default();
            if name.is_empty()
                || name.starts_with("system.") && !name.starts_with("system.buckets.")
            {
                continue;
            }
            out.insert(
                format!("{db}.{name}"),
                Listed {
                    kind: info.get_str("type").unwrap_or("collection").to_owned(),
                    options: info.get_document("options").cloned().unwrap_or_default(),
                },
            );
        }
    }
    Ok(out)
}

/// The source name of target namespace `tns` (the inverse of [`NamespaceMap::target`],
/// buckets included).
pub(super) fn source_of(map: &NamespaceMap, tns: &str) -> String {
    if is_buckets(tns) {
        let (db, coll) = tns.split_once('.').unwrap_or((tns, ""));
        let view = format!("{db}.{}", coll.trim_start_matches("system.buckets."));
        let s = map.source(&view);
        let (sdb, scoll) = s.split_once('.').unwrap_or((&s, ""));
        format!("{sdb}.system.buckets.{scoll}")
    } else {
        map.source(tns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_map_back_to_their_source() {
        let map = NamespaceMap::new(
            vec![],
            vec![],
            Some("shop.metrics".into()),
            Some("lab.m2".into()),
        )
        .unwrap();
        assert_eq!(
            source_of(&map, "lab.system.buckets.m2"),
            "shop.system.buckets.metrics"
        );
        assert_eq!(source_of(&map, "lab.m2"), "shop.metrics");
        let db = NamespaceMap::new(vec![], vec![], Some("shop".into()), Some("s2".into())).unwrap();
        assert_eq!(
            source_of(&db, "s2.system.buckets.x"),
            "shop.system.buckets.x"
        );
    }
}
