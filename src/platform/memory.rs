//! Memory for secrets and plaintext: anonymous mappings (zero-filled by the system), locked in RAM where
//! the limit allows, left out of core dumps and wiped in forked children (Linux). On Windows the mapping is
//! `VirtualAlloc`ed, locked with `VirtualLock` (the working-set minimum is raised when it is too small) and
//! registered with `WerRegisterExcludedMemoryBlock`, so Windows Error Reporting leaves it out of crash
//! dumps. Where a system offers none of this, [`map_anonymous`] answers `None` and callers use ordinary
//! heap memory, which they zero themselves.

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
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Memory::{VirtualAlloc, MEM_COMMIT, MEM_RESERVE, PAGE_READWRITE};
        // SAFETY: a fresh committed read-write region with no address hint; the result is checked.
        let address = unsafe { VirtualAlloc(std::ptr::null(), bytes, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE) };
        NonNull::new(address.cast())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = bytes;
        None
    }
}

/// Marks a mapping made by [`map_anonymous`] as holding secrets: left out of core dumps, and (`wipe_on_fork`)
/// zero in a forked child. Linux: both; Windows: left out of Windows Error Reporting's dumps (no fork);
/// macOS: nothing (core dumps are off for the whole process).
pub fn mark_secret(address: NonNull<u8>, bytes: usize, wipe_on_fork: bool) {
    #[cfg(target_os = "linux")]
    // SAFETY: advice on a mapping the caller owns; failures only lose the extra protection.
    unsafe {
        libc::madvise(address.as_ptr().cast(), bytes, libc::MADV_DONTDUMP);
        if wipe_on_fork {
            libc::madvise(address.as_ptr().cast(), bytes, libc::MADV_WIPEONFORK);
        }
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::ErrorReporting::WerRegisterExcludedMemoryBlock;
        let _ = wipe_on_fork;
        // Regions over 4 GiB cannot be registered (the size is a u32); none is that large.
        if let Ok(size) = u32::try_from(bytes) {
            // SAFETY: registers a region the caller owns for the life of the process; a failure (WER's
            // limit on registered blocks) only loses the exclusion.
            let result = unsafe { WerRegisterExcludedMemoryBlock(address.as_ptr().cast(), size) };
            if result < 0 {
                tracing::debug!(hresult = result, "a secret region could not be excluded from crash dumps");
            }
        }
    }
    #[cfg(not(any(target_os = "linux", windows)))]
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
    #[cfg(windows)]
    {
        windows_lock(address, bytes)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (address, bytes);
        Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no memory locking on this system"))
    }
}

/// `VirtualLock`, raising the process's minimum working set by `bytes` once when Windows answers that the
/// quota is used up (a process may lock only what its minimum working set holds).
#[cfg(windows)]
fn windows_lock(address: NonNull<u8>, bytes: usize) -> std::io::Result<()> {
    use windows_sys::Win32::Foundation::ERROR_WORKING_SET_QUOTA;
    use windows_sys::Win32::System::Memory::VirtualLock;
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, GetProcessWorkingSetSize, SetProcessWorkingSetSize,
    };
    // SAFETY: locking a region the caller owns.
    let lock = || unsafe { VirtualLock(address.as_ptr().cast(), bytes) } != 0;
    if lock() {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() != Some(ERROR_WORKING_SET_QUOTA as i32) {
        return Err(error);
    }
    let (mut minimum, mut maximum) = (0usize, 0usize);
    // SAFETY: the pseudo handle of this process and two valid out pointers; then a plain setter.
    let raised = unsafe {
        let process = GetCurrentProcess();
        GetProcessWorkingSetSize(process, &mut minimum, &mut maximum) != 0
            && SetProcessWorkingSetSize(process, minimum + bytes, maximum.max(minimum + bytes)) != 0
    };
    if raised && lock() {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
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
#[cfg(windows)]
pub unsafe fn unmap(address: NonNull<u8>, bytes: usize) {
    use windows_sys::Win32::System::Memory::{VirtualFree, MEM_RELEASE};
    let _ = bytes;
    // SAFETY: the caller owns the region; MEM_RELEASE frees all of it (the size must be 0).
    unsafe {
        VirtualFree(address.as_ptr().cast(), 0, MEM_RELEASE);
    }
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
