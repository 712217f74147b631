//! Splitting a large collection into ranges of `_id` read at the same time, each by its own
//! cursor into its own parts.
//!
//! Split points come from the server: a `$sample` of `_id`s sorted by the server (`$sort`,
//! with the collection's collation: the order of its `_id` index). Each range is read with
//! `hint: {_id: 1}` and the index bounds `min` (inclusive) and `max` (exclusive), which, unlike
//! a `$gte`/`$lt` filter, have no type bracketing: the ranges `[-∞, b₁)`, `[b₁, b₂)`, …,
//! `[bₙ, +∞]` cover every key of the index exactly once whatever the `_id` types, mixed types
//! included (the last range reads the `_id` MaxKey apart: an open `max` stops before it). A bound that is not above the one before (the server checks) is an error, never a
//! document read twice or missed.
//!
//! Only plain collections with an `_id` index are split; capped collections keep their natural
//! order (restore inserts them in it), and clustered and time-series collections are read whole.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, RawDocumentBuf};
use mongodb::options::ReadConcern;

use super::src;
use crate::capture::CaptureError;

/// Documents below which a collection is read by one cursor without sampling it.
const MIN_SPLIT_DOCUMENTS: u64 = 2_000;
/// Sampled `_id`s per range: more gives ranges of more even sizes.
const SAMPLES_PER_RANGE: u64 = 32;
/// What one server reply should hold, about: the batch size is chosen from the documents'
/// mean size. Below the agent's mmap threshold (`mc_core::process::AGENT_MMAP_THRESHOLD`),
/// so reply buffers are reused from the heap instead of being mapped and faulted in afresh
/// each time (that cost a fifth of the snapshot's CPU with 2.2 MB replies).
pub const REPLY_BYTES: u64 = 768 << 10;

/// How one collection is read.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPlan {
    /// The `_id` bounds between ranges, ascending; empty: one cursor in natural order.
    pub bounds: Vec<Bson>,
    /// Documents per reply (`batchSize`), when the documents' size is known.
    pub batch_size: Option<u32>,
    /// The collection's raw BSON bytes, estimated (count × the sample's mean size), when
    /// sampled.
    pub bytes: Option<u64>,
}

impl ReadPlan {
    /// One cursor over the whole collection in natural order.
    pub fn whole() -> Self {
        Self {
            bounds: Vec::new(),
            batch_size: None,
            bytes: None,
        }
    }

    /// The ranges to read: `bounds.len() + 1` of them.
    pub fn ranges(&self) -> Vec<IdRange> {
        if self.bounds.is_empty() {
            return vec![IdRange::All];
        }
        let mut ranges = Vec::with_capacity(self.bounds.len() + 1);
        let mut min = None;
        for b in &self.bounds {
            ranges.push(IdRange::between(min.replace(b.clone()), Some(b.clone())));
        }
        ranges.push(IdRange::between(min, None));
        ranges
    }
}

/// What one cursor reads.
#[derive(Debug, Clone, PartialEq)]
pub enum IdRange {
    /// The whole collection, natural order.
    All,
    /// A range of `_id` index keys.
    Between(Box<Bounds>),
}

/// `_id` index keys from `min` (inclusive; none: from the first) to `max` (exclusive; none:
/// through the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    pub min: Option<Bson>,
    pub max: Option<Bson>,
}

impl IdRange {
    fn between(min: Option<Bson>, max: Option<Bson>) -> Self {
        Self::Between(Box::new(Bounds { min, max }))
    }
}

/// Decides how to read a collection: in at most `max_ranges` ranges of at least
/// `min_range_bytes` each, in replies of about [`REPLY_BYTES`]. Costs one `count` (from metadata) and,
/// for a collection of at least [`MIN_SPLIT_DOCUMENTS`], one `$sample` of a few thousand `_id`s
/// at most (the server's random cursor: no scan).
pub async fn plan(
    coll: &mongodb::Collection<RawDocumentBuf>,
    max_ranges: usize,
    min_range_bytes: u64,
) -> Result<ReadPlan, CaptureError> {
    let count = coll.estimated_document_count().await.map_err(src)?;
    if count < MIN_SPLIT_DOCUMENTS {
        return Ok(ReadPlan::whole());
    }
    // The server samples with a random cursor only below 5 % of the documents; above, it
    // would scan and sort the whole collection.
    let max_ranges = max_ranges.max(1) as u64;
    let size = (SAMPLES_PER_RANGE * max_ranges).min(count / 20).max(1);
    let sample: Vec<RawDocumentBuf> = coll
        .aggregate(vec![
            doc! {"$sample": {"size": size as i64}},
            doc! {"$project": {"_id": 1, "size": {"$bsonSize": "$$ROOT"}}},
            doc! {"$sort": {"_id": 1}},
        ])
        .with_type::<RawDocumentBuf>()
        .read_concern(ReadConcern::majority())
        .await
        .map_err(src)?
        .try_collect()
        .await
        .map_err(src)?;
    let sample: Vec<(Bson, u64)> = sample
        .iter()
        .filter_map(|d| {
            let id = Bson::try_from(d.get("_id").ok()??).ok()?;
            let size = match d.get("size").ok()?? {
                mongodb::bson::RawBsonRef::Int32(n) => u64::try_from(n).ok()?,
                mongodb::bson::RawBsonRef::Int64(n) => u64::try_from(n).ok()?,
                _ => return None,
            };
            Some((id, size))
        })
        .collect();
    if sample.is_empty() {
        return Ok(ReadPlan::whole());
    }
    let mean = sample.iter().map(|(_, s)| s).sum::<u64>() / sample.len() as u64;
    let batch_size = u32::try_from((REPLY_BYTES / mean.max(1)).clamp(16, 100_000)).ok();
    let bytes = count.saturating_mul(mean);
    let ranges = (bytes / min_range_bytes.max(1)).clamp(1, max_ranges);
    let bounds = pick_bounds(
        sample.into_iter().map(|(id, _)| id).collect(),
        ranges as usize,
    );
    Ok(ReadPlan {
        bounds,
        batch_size,
        bytes: Some(bytes),
    })
}

/// `ranges - 1` bounds taken at even steps through `sorted`, without repeats (the sample may
/// hold a document twice).
fn pick_bounds(sorted: Vec<Bson>, ranges: usize) -> Vec<Bson> {
    let mut bounds: Vec<Bson> = Vec::new();
    if ranges < 2 {
        return bounds;
    }
    for i in 1..ranges {
        let b = &sorted[i * sorted.len() / ranges];
        if bounds.last() != Some(b) {
            bounds.push(b.clone());
        }
    }
    // The first sampled `_id` as a bound would leave an (almost) empty first range.
    if bounds.first() == sorted.first() {
        bounds.remove(0);
    }
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_even_steps_without_repeats_or_the_first_key() {
        let ids: Vec<Bson> = (0..100).map(Bson::Int32).collect();
        assert_eq!(
            pick_bounds(ids.clone(), 4),
            vec![Bson::Int32(25), Bson::Int32(50), Bson::Int32(75)]
        );
        assert!(pick_bounds(ids.clone(), 1).is_empty());
        let repeated = vec![Bson::Int32(1); 10];
        assert!(pick_bounds(repeated, 4).is_empty());
        let few = vec![Bson::Int32(1), Bson::Int32(2)];
        assert_eq!(pick_bounds(few, 4), vec![Bson::Int32(2)]);
    }

    #[test]
    fn ranges_cover_everything_between_their_bounds() {
        let plan = ReadPlan {
            bounds: vec![Bson::Int32(5), Bson::String("m".into())],
            batch_size: None,
            bytes: None,
        };
        assert_eq!(
            plan.ranges(),
            vec![
                IdRange::between(None, Some(Bson::Int32(5))),
                IdRange::between(Some(Bson::Int32(5)), Some(Bson::String("m".into()))),
                IdRange::between(Some(Bson::String("m".into())), None),
            ]
        );
        assert_eq!(ReadPlan::whole().ranges(), vec![IdRange::All]);
    }
}
