//! What a verify-data run finds: the [`DataReport`], one [`NamespaceResult`] per namespace and
//! the checks in it, each with its [`Status`]. Serialised as the JSON report.

use serde::Serialize;

use mc_core::format::OplogTs;

/// The verdict of one check, of one namespace, or of the whole report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Source at T and target are equal.
    Match,
    /// They differ; the details say where.
    Mismatch,
    /// The live source cannot prove what it held at T (a catalog change after T): neither a
    /// match nor a mismatch is claimed.
    NotVerifiable,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct DataReport {
    /// `mismatch` if anything differs, else `match` (even if some namespaces were not
    /// verifiable: see `not_verifiable`).
    pub status: Status,
    /// The point as given (`--at`).
    pub at: String,
    /// The cluster time the source was read at.
    pub cluster_time: OplogTs,
    /// Namespaces compared, in source-name order.
    pub namespaces: Vec<NamespaceResult>,
    /// Namespaces whose every check matched (indexes may be not verifiable; see below).
    pub matched: usize,
    pub mismatched: usize,
    /// Namespaces not verifiable against the live source.
    pub not_verifiable: usize,
    /// Matched namespaces whose indexes alone were not verifiable.
    pub indexes_not_verifiable: usize,
}

impl DataReport {
    /// The namespaces that differ.
    pub fn mismatches(&self) -> impl Iterator<Item = &NamespaceResult> {
        self.namespaces
            .iter()
            .filter(|n| n.status == Status::Mismatch)
    }
}

/// One namespace: its checks and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceResult {
    /// The name on the source.
    pub source_ns: String,
    /// The name on the target (`--ns-from/--ns-to` applied).
    pub target_ns: String,
    /// `collection`, `view`, `timeseries`, or `unknown` (gone from the source).
    pub kind: String,
    pub status: Status,
    /// Documents (collections and buckets collections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<DocumentsCheck>,
    /// Index definitions (collections and buckets collections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexes: Option<Check>,
    /// The definition of a view or the options of a time-series collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<Check>,
    /// What differs, one line each.
    pub mismatches: Vec<String>,
    /// Why (some of) it could not be verified.
    pub not_verifiable: Vec<String>,
}

/// Document count and hash of both sides.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentsCheck {
    pub status: Status,
    pub source_count: u64,
    pub target_count: u64,
    /// SHA-256 of every document's raw BSON, concatenated in `_id` order (hex).
    pub source_sha256: String,
    pub target_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<FirstDifference>,
}

/// Where the documents first differ in `_id` order.
#[derive(Debug, Clone, Serialize)]
pub struct FirstDifference {
    /// The `_id`, as relaxed extended JSON.
    pub id: String,
    /// `differs`, `missing on the target`, `only on the target`.
    pub what: String,
}

/// A check with its details.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: Status,
    pub details: Vec<String>,
}
