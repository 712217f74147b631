//! What the binaries set for their whole process before any work: glibc malloc's tunables,
//! which decide how much of what the process has freed stays resident (docs/performance.md,
//! "Memory: glibc's arenas and mmap threshold"). Each is a no-op off glibc, and an operator's
//! own `GLIBC_TUNABLES`, `MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` wins: then nothing is set.

/// Malloc arenas at most (glibc's default: 8 per core).
///
/// Each thread that meets a locked arena gets another, and a freed block is reused only by its
/// own arena: with tokio's workers, blocking readers and the driver's tasks passing buffers
/// between threads, a restore replaying 2 GB of oplog peaked at 465–489 MiB RSS; with 4 arenas
/// at 277 MiB, with 2 at 202 MiB, in the same time and CPU. A restore waits for the target, not
/// for the allocator.
pub const ARENAS: i32 = 2;

/// Largest block the agent takes from malloc's heaps; larger ones are mapped on their own and
/// unmapped on free.
///
/// By default glibc raises its mmap threshold to the size of the largest block freed (up to
/// 32 MiB), after which segment-sized buffers (cursor replies, batches, sealed output) are carved
/// from the heap and what they leave behind stays resident: catching up a backlog then ended with
/// twice the live heap as RSS. 1 MiB is above an oplog reply (typically under 1 MiB): with
/// 256 KiB every reply was mapped and its pages faulted in afresh, which cost catching up a
/// backlog about a fifth of the agent's CPU. Not for mc-restore: its 8 MiB `applyOps` batches,
/// mapped and faulted in afresh each time, cost a replay half again its CPU.
pub const AGENT_MMAP_THRESHOLD: i32 = 1 << 20;

/// Limits malloc to [`ARENAS`] arenas. Call first thing in `main`.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    set(libc::M_ARENA_MAX, ARENAS);
}

/// Fixes malloc's mmap threshold at [`AGENT_MMAP_THRESHOLD`]. Call first thing in `main`.
pub fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    set(libc::M_MMAP_THRESHOLD, AGENT_MMAP_THRESHOLD);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(param: i32, value: i32) {
    let overridden = [
        "GLIBC_TUNABLES",
        "MALLOC_ARENA_MAX",
        "MALLOC_MMAP_THRESHOLD_",
    ]
    .iter()
    .any(|var| std::env::var_os(var).is_some());
    if overridden {
        return;
    }
    // SAFETY: mallopt only changes allocator tunables, and is safe to call at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(param, value);
    }
}
