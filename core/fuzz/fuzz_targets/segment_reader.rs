//! Fuzz target: an arbitrary object handed to `SegmentReader` must never panic.
//!
//! The input is the whole stored object (preamble, header JSON, frames). Any `Err` is an
//! acceptable answer; a panic, abort, hang or runaway allocation is a bug. Mutations rarely get
//! past frame authentication, so this target mostly exercises the preamble, the header and the
//! frame layer; `segment_body` reaches the zstd and record layers behind it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mc_core::format::SegmentReader;
use mc_core_fuzz::{fixed_keyring, NAME};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static RING: OnceLock<mc_core::crypto::Keyring> = OnceLock::new();
    let ring = RING.get_or_init(fixed_keyring);
    let Ok(mut reader) = SegmentReader::open(data, NAME, ring) else {
        return;
    };
    let mut buf = Vec::new();
    // Read to the end (or the first error): the end is where the trailer and truncation are
    // checked, so stopping early would skip that code.
    while let Ok(true) = reader.next_record(&mut buf) {}
});
