//! Plaintext in RAM: a page-aligned growable buffer, left out of core dumps, wiped on growth, truncation and
//! drop (on Linux an anonymous mapping that grows with `mremap`, so no old copy is left behind).

use std::ptr::NonNull;

use zeroize::Zeroize;

use super::PAGE;

/// A growable byte buffer for plaintext: page-aligned, marked `MADV_DONTDUMP`, and zeroed before its
/// memory is given back (on growth, truncation and drop), so freed heap never holds old plaintext.
pub struct PlainBuffer {
    start: NonNull<u8>,
    len: usize,
    capacity: usize,
}

// SAFETY: the buffer exclusively owns its allocation.
unsafe impl Send for PlainBuffer {}
// SAFETY: shared access is read-only.
unsafe impl Sync for PlainBuffer {}

impl PlainBuffer {
    /// An empty buffer (no allocation).
    pub fn new() -> Self {
        Self { start: NonNull::dangling(), len: 0, capacity: 0 }
    }

    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buffer = Self::new();
        buffer.reserve(capacity);
        buffer
    }

    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut buffer = Self::with_capacity(bytes.len());
        buffer.extend_from_slice(bytes);
        buffer
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` bytes from `start` are initialised (allocations are zeroed); dangling only when 0.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, exclusive through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }

    /// Makes room for `capacity` bytes in total. On Linux the buffer is an anonymous mapping that grows with
    /// `mremap`: its pages move, nothing is copied and no old copy is left behind. Elsewhere a larger
    /// allocation is made, the bytes copied and the old copy wiped.
    pub fn reserve(&mut self, capacity: usize) {
        if capacity <= self.capacity {
            return;
        }
        let new_capacity = capacity.max(self.capacity.saturating_mul(2)).div_ceil(PAGE) * PAGE;
        let layout = std::alloc::Layout::from_size_align(new_capacity, PAGE).expect("buffer too large");
        #[cfg(target_os = "linux")]
        let raw = {
            let mapped = if self.capacity == 0 {
                crate::platform::memory::map_anonymous(new_capacity)
            } else {
                // SAFETY: the remapping of the mapping `self` owns, with its current size; the kernel
                // zero-fills the new pages.
                unsafe { crate::platform::memory::remap(self.start, self.capacity, new_capacity) }
            };
            let Some(mapped) = mapped else { std::alloc::handle_alloc_error(layout) };
            // No MADV_HUGEPAGE: 2 MiB pages fault in fewer times, but measured on the benchmark machine a
            // 256 MiB write took 244–464 ms with them (compaction to find free huge pages) against a steady
            // 266–304 ms without.
            crate::platform::memory::mark_secret(mapped, new_capacity, false);
            mapped.as_ptr()
        };
        #[cfg(not(target_os = "linux"))]
        let raw = {
            // SAFETY: a non-zero size with a valid layout.
            let raw = unsafe { std::alloc::alloc_zeroed(layout) };
            if raw.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            // SAFETY: both regions are valid for `len` bytes and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(self.start.as_ptr(), raw, self.len) };
            let len = self.len;
            self.release();
            self.len = len;
            raw
        };
        let Some(start) = NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
        self.start = start;
        self.capacity = new_capacity;
    }

    /// Sets the length; new bytes are zero, cut bytes are wiped.
    pub fn resize(&mut self, len: usize) {
        if len > self.len {
            self.reserve(len);
            // The region past `len` is zero: allocations start zeroed and cut bytes are wiped.
        } else {
            self.as_mut_slice()[len..].zeroize();
        }
        self.len = len;
    }

    /// Appends `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let start = self.len;
        self.resize(start + bytes.len());
        self.as_mut_slice()[start..].copy_from_slice(bytes);
    }

    /// Wipes the bytes held and frees the memory (past `len` it is zero already: new memory starts zeroed
    /// and cut bytes are wiped).
    fn release(&mut self) {
        if self.capacity == 0 {
            return;
        }
        self.as_mut_slice().zeroize();
        self.release_allocation();
    }

    /// Frees the memory without wiping it.
    fn release_allocation(&mut self) {
        if self.capacity == 0 {
            return;
        }
        #[cfg(target_os = "linux")]
        // SAFETY: the mapping of `capacity` bytes that `self` owns.
        unsafe {
            crate::platform::memory::unmap(self.start, self.capacity);
        }
        #[cfg(not(target_os = "linux"))]
        {
            let layout = std::alloc::Layout::from_size_align(self.capacity, PAGE).expect("layout was valid");
            // SAFETY: allocated in `reserve` with this layout.
            unsafe { std::alloc::dealloc(self.start.as_ptr(), layout) };
        }
        self.start = NonNull::dangling();
        self.capacity = 0;
        self.len = 0;
    }
}

impl Default for PlainBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PlainBuffer {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for PlainBuffer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "PlainBuffer({} bytes)", self.len)
    }
}
