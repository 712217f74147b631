//! Segments: the immutable objects a repository is made of (`docs/format.md` §3).
//!
//! A segment holds an ordered run of records of one stream. [`SegmentWriter`] turns records into
//! the object's bytes (preamble, then compressed and encrypted frames) and [`SegmentReader`]
//! turns them back, checking everything on the way. Both work on `std::io` streams with bounded
//! memory; async callers run them on a blocking thread.

mod header;
mod segment;

pub use header::PreambleError;
pub use header::{
    parse_preamble, OplogRange, OplogTs, OplogTsText, SegmentHeader, StreamKind, WriterInfo,
    FORMAT_VERSION, MAGIC, MAX_HEADER_LEN, PREAMBLE_FIXED_LEN,
};
pub use segment::{
    seal_to_file, seal_to_vec, FormatError, SealedSegment, SegmentReader, SegmentSpec,
    SegmentWriter, SpoolFile, MAX_RECORD_LEN,
};

#[cfg(test)]
mod tests;
