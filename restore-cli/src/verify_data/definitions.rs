//! Comparing definitions: the indexes of a collection (every option but `v` and `ns`), and the
//! definition of a view or the options of a time-series collection; option order does not
//! matter, key order and types do.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

use super::error::command_code;
use super::{CatalogChanges, Check, NamespaceResult, Status, VerifyDataError};
use crate::errors::NAMESPACE_NOT_FOUND;

/// Index definitions of one namespace, unless index changes since T make them not verifiable.
pub(super) async fn check_indexes(
    changes: &CatalogChanges,
    source: &Client,
    target: &Client,
    sns: &str,
    tns: &str,
    result: &mut NamespaceResult,
) -> Result<(), VerifyDataError> {
    let index_reasons = changes.index_reasons(sns);
    result.indexes = Some(if !index_reasons.is_empty() {
        Check {
            status: Status::NotVerifiable,
            details: index_reasons,
        }
    } else {
        let details = compare_indexes(source, target, sns, tns).await?;
        result.mismatches.extend(details.iter().cloned());
        Check {
            status: if details.is_empty() {
                Status::Match
            } else {
                Status::Mismatch
            },
            details,
        }
    });
    Ok(())
}

/// The definition of a view or the options of a time-series collection, compared in any option
/// order; a difference is also added to `mismatches`.
pub(super) fn compare_definition(
    source: &Document,
    target: &Document,
    mismatches: &mut Vec<String>,
) -> Check {
    let (a, b) = (sorted(source), sorted(target));
    if same(&a, &b) {
        Check {
            status: Status::Match,
            details: Vec::new(),
        }
    } else {
        let d = format!(
            "definition differs: source {} target {}",
            json(&a),
            json(&b)
        );
        mismatches.push(d.clone());
        Check {
            status: Status::Mismatch,
            details: vec![d],
        }
    }
}

/// A document for messages, fields in their order.
fn json(d: &Document) -> String {
    d.to_string()
}

/// Equal field by field, in order and with types (`Document`'s `==` ignores field order, which
/// matters for an index key).
fn same(a: &Document, b: &Document) -> bool {
    match (a.to_vec(), b.to_vec()) {
        (Ok(x), Ok(y)) => x == y,
        _ => format!("{a:?}") == format!("{b:?}"),
    }
}

/// `d` with its top-level fields in name order (option order is not meaningful).
fn sorted(d: &Document) -> Document {
    let mut fields: Vec<(&String, &Bson)> = d.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    fields
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Index definitions by name: everything but `v` and `ns`, options in name order.
async fn indexes(
    client: &Client,
    side: &'static str,
    ns: &str,
) -> Result<BTreeMap<String, Document>, VerifyDataError> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    let err = |source| VerifyDataError::Command {
        side,
        what: format!("listIndexes on {ns}"),
        error: source,
    };
    let mut out = BTreeMap::new();
    let mut cursor = match client
        .database(db)
        .run_cursor_command(doc! {"listIndexes": coll})
        .await
    {
        Ok(c) => c,
        Err(e) if command_code(&e) == Some(NAMESPACE_NOT_FOUND) => return Ok(out),
        Err(e) => return Err(err(e)),
    };
    while let Some(mut spec) = cursor.try_next().await.map_err(err)? {
        spec.remove("v");
        spec.remove("ns");
        let name = spec.get_str("name").unwrap_or_default().to_owned();
        out.insert(name, sorted(&spec));
    }
    Ok(out)
}

/// Differences between the index definitions, one line each (empty: equal).
async fn compare_indexes(
    source: &Client,
    target: &Client,
    sns: &str,
    tns: &str,
) -> Result<Vec<String>, VerifyDataError> {
    let (a, b) = (
        indexes(source, "source", sns).await?,
        indexes(target, "target", tns).await?,
    );
    let mut out = Vec::new();
    for (name, spec) in &a {
        match b.get(name) {
            None => out.push(format!("index {name} missing on the target")),
            Some(t) if !same(t, spec) => out.push(format!(
                "index {name} differs: source {} target {}",
                json(spec),
                json(t)
            )),
            Some(_) => {}
        }
    }
    for name in b.keys().filter(|n| !a.contains_key(*n)) {
        out.push(format!("index {name} only on the target"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_order_does_not_matter_but_key_order_and_types_do() {
        assert!(same(
            &sorted(&doc! {"b": 1, "a": {"y": 1, "x": 2}}),
            &sorted(&doc! {"a": {"y": 1, "x": 2}, "b": 1})
        ));
        assert!(!same(
            &sorted(&doc! {"key": {"a": 1, "b": 1}}),
            &sorted(&doc! {"key": {"b": 1, "a": 1}})
        ));
        assert!(!same(&doc! {"key": {"a": 1}}, &doc! {"key": {"a": 1.0}}));
    }
}
