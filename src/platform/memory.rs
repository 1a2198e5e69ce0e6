//! Memory for secrets and plaintext: anonymous mappings (zero-filled by the system), locked in RAM where
//! the limit allows, left out of core dumps and wiped in forked children (Linux). Where a system offers
//! none of this here (Windows, until its adapter adds VirtualLock), [`map_anonymous`] answers `None` and
//! callers use ordinary heap memory, which they zero themselves.

use std::ptr::NonNull;

/// A fresh private anonymous mapping of `bytes` bytes (zero-filled), or `None` if refused or unavailable.
pub fn map_anonymous(bytes: usize) -> Option<NonNull<u8>> {
    #[cfg(unix)]
    {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(address.cast())
    }
    #[cfg(not(unix))]
    {
        let _ = bytes;
        None
    }
}

/// Marks a mapping made by [`map_anonymous`] as holding secrets: left out of core dumps, and (`wipe_on_fork`)
/// zero in a forked child. Linux only; elsewhere nothing (core dumps are off for the whole process).
pub fn mark_secret(address: NonNull<u8>, bytes: usize, wipe_on_fork: bool) {
    #[cfg(target_os = "linux")]
    // SAFETY: advice on a mapping the caller owns; failures only lose the extra protection.
    unsafe {
        libc::madvise(address.as_ptr().cast(), bytes, libc::MADV_DONTDUMP);
        if wipe_on_fork {
            libc::madvise(address.as_ptr().cast(), bytes, libc::MADV_WIPEONFORK);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (address, bytes, wipe_on_fork);
}

/// Locks a mapping made by [`map_anonymous`] in RAM (never swapped); the error says why not (Unix: over
/// `RLIMIT_MEMLOCK`).
pub fn lock_in_ram(address: NonNull<u8>, bytes: usize) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        // SAFETY: locking a mapping the caller owns.
        if unsafe { libc::mlock(address.as_ptr().cast(), bytes) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (address, bytes);
        Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no memory locking on this system yet"))
    }
}

/// Grows (or moves) a mapping made by [`map_anonymous`] from `old_bytes` to `new_bytes` without copying
/// (Linux `mremap`: the pages move, no old copy is left behind); the new pages are zero.
///
/// # Safety
/// `address` must be a mapping of `old_bytes` bytes that the caller owns; it is invalid afterwards.
#[cfg(target_os = "linux")]
pub unsafe fn remap(address: NonNull<u8>, old_bytes: usize, new_bytes: usize) -> Option<NonNull<u8>> {
    // SAFETY: the caller owns the mapping of `old_bytes` bytes.
    let raw = unsafe { libc::mremap(address.as_ptr().cast(), old_bytes, new_bytes, libc::MREMAP_MAYMOVE) };
    if raw == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(raw.cast())
}

/// Returns a mapping made by [`map_anonymous`] to the system.
///
/// # Safety
/// `address` must be a mapping of `bytes` bytes that the caller owns; it is invalid afterwards.
#[cfg(unix)]
pub unsafe fn unmap(address: NonNull<u8>, bytes: usize) {
    // SAFETY: the caller owns the mapping.
    unsafe {
        libc::munmap(address.as_ptr().cast(), bytes);
    }
}
