//! Locked memory for key material: small buffers carved from a few dedicated pages that are locked in RAM
//! (`mlock`, or `VirtualLock` on Windows, so they never reach swap), left out of core dumps (`MADV_DONTDUMP`;
//! on Windows excluded from Windows Error Reporting's dumps), wiped in a forked child (`MADV_WIPEONFORK`),
//! and zeroed when a buffer is dropped (src/platform/memory.rs).
//!
//! The pool grows in chunks of [`CHUNK_BYTES`] and never returns them to the system (freed slots are zeroed
//! and reused). If the `RLIMIT_MEMLOCK` limit does not allow another chunk, the chunk is still used, unlocked,
//! and one warning is logged; buffers larger than a block fall back to ordinary (zeroized) heap memory.
//! The RSA private key is kept here as PKCS#8 DER; AWS-LC key objects built from it live only for one
//! operation (AWS-LC wipes its allocations when it frees them).

use std::fmt;
use std::ptr::NonNull;
use std::sync::Mutex;

use zeroize::Zeroize;

/// Bytes mapped (and locked, when allowed) at a time.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Bytes of one block; each block is cut into slots of one size class.
const BLOCK_BYTES: usize = 4096;
/// Slot sizes: 32 bytes up to one block.
const CLASSES: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];

/// What the pool has done so far, for `cloakfs status` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockedMemoryStats {
    /// Bytes mapped for key material.
    pub mapped_bytes: usize,
    /// Of those, bytes locked in RAM.
    pub locked_bytes: usize,
    /// Buffers that did not fit a block and live in ordinary heap memory.
    pub heap_fallbacks: usize,
}

struct Pool {
    /// Free slot addresses, by size class.
    free: [Vec<usize>; CLASSES.len()],
    /// Blocks not yet given to a size class.
    spare_blocks: Vec<usize>,
    stats: LockedMemoryStats,
    warned: bool,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: [const { Vec::new() }; CLASSES.len()],
    spare_blocks: Vec::new(),
    stats: LockedMemoryStats { mapped_bytes: 0, locked_bytes: 0, heap_fallbacks: 0 },
    warned: false,
});

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // A poisoned pool still holds valid free lists (every update is a single push or pop).
    POOL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    /// Maps one chunk, marks it, tries to lock it, and adds its blocks to the spares.
    fn grow(&mut self) -> bool {
        let Some(mapping) = crate::platform::memory::map_anonymous(CHUNK_BYTES) else { return false };
        crate::platform::memory::mark_secret(mapping, CHUNK_BYTES, true);
        match crate::platform::memory::lock_in_ram(mapping, CHUNK_BYTES) {
            Ok(()) => self.stats.locked_bytes += CHUNK_BYTES,
            Err(error) if !self.warned => {
                self.warned = true;
                tracing::warn!(
                    %error,
                    locked_bytes = self.stats.locked_bytes,
                    "cannot lock key memory in RAM: keys may be written to swap; raise the limit \
                     (Unix: RLIMIT_MEMLOCK, ulimit -l) or use encrypted swap"
                );
            }
            Err(_) => {}
        }
        let address = mapping.as_ptr();
        self.stats.mapped_bytes += CHUNK_BYTES;
        let base = address as usize;
        self.spare_blocks.extend((0..CHUNK_BYTES / BLOCK_BYTES).rev().map(|block| base + block * BLOCK_BYTES));
        true
    }

    fn take(&mut self, class: usize) -> Option<usize> {
        if self.free[class].is_empty() {
            if self.spare_blocks.is_empty() && !self.grow() {
                return None;
            }
            let block = self.spare_blocks.pop()?;
            let size = CLASSES[class];
            self.free[class].extend((0..BLOCK_BYTES / size).rev().map(|slot| block + slot * size));
        }
        self.free[class].pop()
    }
}

/// The pool's counters so far.
pub fn stats() -> LockedMemoryStats {
    pool().stats
}

enum Storage {
    /// A slot of the pool, of size class `class`.
    Pooled { address: NonNull<u8>, class: usize },
    /// Too large (or no mapping possible): ordinary heap memory, wiped on drop.
    Heap(Box<[u8]>),
}

/// A fixed-length byte buffer for key material, in locked memory where possible; zeroed on drop;
/// `Debug` shows only the length.
pub struct LockedBytes {
    storage: Storage,
    len: usize,
}

// SAFETY: a LockedBytes exclusively owns its slot; the pool hands out each slot to one owner at a time.
unsafe impl Send for LockedBytes {}
// SAFETY: shared access is read-only (`&self` gives `&[u8]`).
unsafe impl Sync for LockedBytes {}

impl LockedBytes {
    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        let class = CLASSES.iter().position(|&size| size >= len);
        let slot = class.and_then(|class| pool().take(class).map(|address| (address, class)));
        let storage = match slot {
            Some((address, class)) => {
                // SAFETY: the slot is CLASSES[class] >= len bytes inside a live mapping; slots are zeroed
                // when freed and mappings start zeroed.
                Storage::Pooled { address: NonNull::new(address as *mut u8).expect("mmap never returns 0"), class }
            }
            None => {
                pool().stats.heap_fallbacks += 1;
                Storage::Heap(vec![0u8; len].into_boxed_slice())
            }
        };
        Self { storage, len }
    }

    /// A buffer holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut buffer = Self::zeroed(bytes.len());
        buffer.as_mut_slice().copy_from_slice(bytes);
        buffer
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.storage {
            // SAFETY: the slot holds at least `len` initialised bytes and is owned by `self`.
            Storage::Pooled { address, .. } => unsafe { std::slice::from_raw_parts(address.as_ptr(), self.len) },
            Storage::Heap(bytes) => bytes,
        }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.storage {
            // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
            Storage::Pooled { address, .. } => unsafe { std::slice::from_raw_parts_mut(address.as_ptr(), self.len) },
            Storage::Heap(bytes) => bytes,
        }
    }

    /// Whether this buffer lives in the locked pool (rather than the heap fallback).
    pub fn is_pooled(&self) -> bool {
        matches!(self.storage, Storage::Pooled { .. })
    }
}

impl Zeroize for LockedBytes {
    fn zeroize(&mut self) {
        self.as_mut_slice().zeroize();
    }
}

impl Drop for LockedBytes {
    fn drop(&mut self) {
        self.zeroize();
        if let Storage::Pooled { address, class } = self.storage {
            // Zero the whole slot, not only `len`, before it is reused.
            // SAFETY: the slot is CLASSES[class] bytes owned by `self`.
            unsafe { std::slice::from_raw_parts_mut(address.as_ptr(), CLASSES[class]) }.zeroize();
            pool().free[class].push(address.as_ptr() as usize);
        }
    }
}

impl Clone for LockedBytes {
    fn clone(&self) -> Self {
        Self::from_slice(self.as_slice())
    }
}

impl PartialEq for LockedBytes {
    fn eq(&self, other: &Self) -> bool {
        super::secret::constant_time_eq(self.as_slice(), other.as_slice())
    }
}

impl Eq for LockedBytes {}

impl fmt::Debug for LockedBytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "LockedBytes({} bytes, redacted)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_pooled_reused_zeroed_and_distinct() {
        let first = LockedBytes::from_slice(&[7u8; 16]);
        assert!(first.is_pooled());
        assert_eq!(first.as_slice(), &[7u8; 16]);
        let address = first.as_slice().as_ptr() as usize;
        drop(first);
        // SAFETY: pool mappings are never unmapped; the freed slot is still readable.
        let freed = unsafe { std::slice::from_raw_parts(address as *const u8, 32) };
        assert_eq!(freed, &[0u8; 32], "a dropped buffer was not wiped");
        // Slots are reused LIFO per class, and a reused slot starts zeroed.
        let again = LockedBytes::zeroed(16);
        assert_eq!(again.as_slice(), &[0u8; 16]);
        let many: Vec<LockedBytes> = (0..300u32).map(|index| LockedBytes::from_slice(&index.to_le_bytes())).collect();
        for (index, buffer) in many.iter().enumerate() {
            assert_eq!(buffer.as_slice(), &(index as u32).to_le_bytes());
        }
        let mut addresses: Vec<usize> = many.iter().map(|buffer| buffer.as_slice().as_ptr() as usize).collect();
        addresses.push(again.as_slice().as_ptr() as usize);
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), 301, "slots handed out twice");
        let der = LockedBytes::from_slice(&[1u8; 1217]);
        assert!(der.is_pooled());
        let large = LockedBytes::from_slice(&[2u8; 5000]);
        assert!(!large.is_pooled());
        assert_eq!(large.as_slice().len(), 5000);
        assert!(stats().mapped_bytes >= CHUNK_BYTES);
        assert_eq!(der.clone(), der);
        assert_ne!(LockedBytes::from_slice(b"a"), LockedBytes::from_slice(b"b"));
    }
}
