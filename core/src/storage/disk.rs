//! Facts about a local file system that errors need to be clear: how much space is free, and
//! whether an I/O error means the disk (or the user's quota) is full. Used for the agent's
//! spool directory, where a full disk must say which directory and how much is left.

use std::io;
use std::path::Path;

/// Bytes an unprivileged writer may still write on the file system holding `path`
/// (`statvfs`: available blocks × fragment size).
#[allow(unsafe_code)]
// fsblkcnt_t and c_ulong are u64 here, u32 on some targets: the casts are needed there.
#[allow(clippy::unnecessary_cast)]
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and `stat` points to
    // memory of the type statvfs fills; it only writes there.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// True when `error` says there is no space left (ENOSPC) or the quota is exhausted (EDQUOT).
pub fn is_full(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull
        || matches!(
            error.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        )
}

/// The first [`io::Error`] in `error`'s chain of sources that says the disk is full.
pub fn full_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if is_full(io) {
                return Some(io);
            }
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_of_a_directory_and_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        let err = free_bytes(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn no_space_is_full_and_is_found_in_a_chain() {
        let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(is_full(&enospc));
        assert!(!is_full(&io::Error::from_raw_os_error(libc::EACCES)));
        #[derive(Debug, thiserror::Error)]
        #[error("sealing: {0}")]
        struct Outer(#[source] io::Error);
        let outer = Outer(enospc);
        assert!(full_in(&outer).is_some());
        let other = Outer(io::Error::from_raw_os_error(libc::EIO));
        assert!(full_in(&other).is_none());
    }
}
