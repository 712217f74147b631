//! # mc-core: the mc-backup repository library
//!
//! Everything both binaries share lives here, one module per concern, in the order data flows
//! from a source to object storage:
//!
//! - [`format`]: segments, the immutable objects a repository is made of (records → zstd →
//!   STREAM-encrypted frames), and their plaintext headers.
//! - [`crypto`]: the keyring of key-encryption keys, per-segment data keys, STREAM frames.
//! - [`storage`]: raw object stores (local directory, S3) behind one trait, and repository URLs.
//! - [`catalog`]: object names, the index of segments, the `Timeline` of a source, verification.
//! - [`policy`]: the YAML backup policy of one protected system (`docs/policies.md`), its
//!   checks and its secret references.
//! - [`kafka`]: a small blocking Kafka client (groups, committed offsets, watermarks, commits)
//!   for the offset capture and the offset reset.
//! - [`secret`]: [`secret::Secret`], a resolved secret value that never prints itself; a leaf
//!   both `policy` and `kafka` use.
//! - [`logging`], [`cli`], [`process`]: what the binaries share at their edges (log setup,
//!   argument errors, malloc's tunables).
//!
//! The repository format is specified in `docs/format.md`; the way the pieces fit together is
//! drawn in `docs/architecture.md`.

pub mod authz;
pub mod catalog;
pub mod cli;
pub mod crypto;
pub mod format;
pub mod kafka;
pub mod logging;
pub mod policy;
pub mod process;
pub mod secret;
pub mod storage;
pub mod time;
