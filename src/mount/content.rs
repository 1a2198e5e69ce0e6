//! The plaintext of one file at the mount: in RAM ([`PlainBuffer`]: page-aligned, left out of core dumps,
//! wiped on growth, truncation and drop), or, above the spill threshold, in a [`SpillFile`]: an anonymous
//! unlinked temporary file (`O_TMPFILE`) that holds only AES-256-GCM ciphertext under a random per-mount key
//! kept in locked RAM. Once the process is gone the spill file no longer exists, and while it runs its
//! blocks are unreadable without that key.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::file_cipher::PlaintextSink;
use crate::crypto::locked::LockedBytes;
use crate::crypto::secret::random_bytes;

/// Alignment (and growth unit) of RAM buffers: the page size on common systems.
const PAGE: usize = 4096;
/// Plaintext bytes per encrypted block of a spill file.
pub const SPILL_BLOCK: usize = 64 * 1024;
const TAG: usize = 16;

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

/// Where and above which size file contents spill to disk, and the per-mount key that encrypts them.
pub struct Spill {
    key: LockedBytes,
    next_nonce: AtomicU64,
    next_file_id: AtomicU64,
    directory: PathBuf,
    threshold: u64,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Spill").field("directory", &self.directory).field("threshold", &self.threshold).finish()
    }
}

impl Spill {
    /// Spill contents larger than `threshold` bytes into anonymous files in `directory`, under a fresh key.
    pub fn new(directory: PathBuf, threshold: u64) -> Self {
        let mut key = LockedBytes::zeroed(32);
        random_bytes(key.as_mut_slice());
        Self { key, next_nonce: AtomicU64::new(1), next_file_id: AtomicU64::new(1), directory, threshold }
    }

    /// Contents above this many bytes live in a spill file.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// Checks that spill files can be created in the directory (creates one and drops it).
    pub fn check(&self) -> io::Result<()> {
        self.create_file().map(drop)
    }

    /// Spill files created so far.
    pub fn files_created(&self) -> u64 {
        self.next_file_id.load(Ordering::Relaxed) - 1
    }

    /// The directory spill files are created in.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, self.key.as_slice()).expect("a 32-byte AES-256 key"))
    }

    /// A fresh nonce: a per-mount counter, so no (key, nonce) pair repeats.
    fn nonce(&self) -> [u8; 12] {
        let counter = self.next_nonce.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&counter.to_le_bytes());
        nonce
    }

    /// Opens a new anonymous spill file: `O_TMPFILE` (no name ever exists); where the file system lacks it,
    /// a random name that is unlinked at once.
    fn create_file(&self) -> io::Result<File> {
        crate::platform::create_anonymous_file(&self.directory)
    }
}

/// The nonce and tag of one encrypted block (kept in RAM only).
#[derive(Clone, Copy)]
struct BlockSeal {
    nonce: [u8; 12],
    tag: [u8; TAG],
}

/// One file's plaintext as encrypted blocks of [`SPILL_BLOCK`] bytes in an anonymous temporary file.
/// Blocks never written read as zeros; each block is bound to this file and its position.
pub struct SpillFile {
    file: File,
    id: u64,
    len: u64,
    seals: Vec<Option<BlockSeal>>,
    spill: Arc<Spill>,
}

impl SpillFile {
    fn new(spill: &Arc<Spill>) -> io::Result<Self> {
        Ok(Self {
            file: spill.create_file()?,
            id: spill.next_file_id.fetch_add(1, Ordering::Relaxed),
            len: 0,
            seals: Vec::new(),
            spill: spill.clone(),
        })
    }

    fn aad(&self, index: usize) -> [u8; 16] {
        let mut aad = [0u8; 16];
        aad[..8].copy_from_slice(&self.id.to_le_bytes());
        aad[8..].copy_from_slice(&(index as u64).to_le_bytes());
        aad
    }

    /// Block `index`'s plaintext (zeros if never written), in `block` (SPILL_BLOCK + TAG bytes).
    fn read_block(&self, index: usize, block: &mut [u8]) -> io::Result<()> {
        let Some(seal) = self.seals.get(index).copied().flatten() else {
            block.zeroize();
            return Ok(());
        };
        crate::platform::read_exact_at(&self.file, &mut block[..SPILL_BLOCK], (index * SPILL_BLOCK) as u64)?;
        block[SPILL_BLOCK..].copy_from_slice(&seal.tag);
        let opened = self.spill.cipher().open_in_place(
            Nonce::assume_unique_for_key(seal.nonce),
            Aad::from(self.aad(index)),
            block,
        );
        if opened.is_err() {
            block.zeroize();
            return Err(io::Error::new(io::ErrorKind::InvalidData, "a spill block failed authentication"));
        }
        Ok(())
    }

    /// Encrypts `block[..SPILL_BLOCK]` in place and writes it as block `index`.
    fn write_block(&mut self, index: usize, block: &mut [u8]) -> io::Result<()> {
        let nonce = self.spill.nonce();
        let tag = self
            .spill
            .cipher()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(index)),
                &mut block[..SPILL_BLOCK],
            )
            .map_err(|_| io::Error::other("spill encryption failed"))?;
        crate::platform::write_all_at(&self.file, &block[..SPILL_BLOCK], (index * SPILL_BLOCK) as u64)?;
        if self.seals.len() <= index {
            self.seals.resize(index + 1, None);
        }
        let mut seal = BlockSeal { nonce, tag: [0; TAG] };
        seal.tag.copy_from_slice(tag.as_ref());
        self.seals[index] = Some(seal);
        Ok(())
    }

    fn scratch() -> Zeroizing<Vec<u8>> {
        Zeroizing::new(vec![0u8; SPILL_BLOCK + TAG])
    }

    fn read_at(&self, offset: u64, size: usize) -> io::Result<Zeroizing<Vec<u8>>> {
        let end = offset.saturating_add(size as u64).min(self.len);
        let mut out = Zeroizing::new(Vec::with_capacity(end.saturating_sub(offset) as usize));
        let mut block = Self::scratch();
        let mut position = offset;
        while position < end {
            let index = (position / SPILL_BLOCK as u64) as usize;
            let within = (position % SPILL_BLOCK as u64) as usize;
            let take = (SPILL_BLOCK - within).min((end - position) as usize);
            self.read_block(index, &mut block)?;
            out.extend_from_slice(&block[within..within + take]);
            position += take as u64;
        }
        Ok(out)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut block = Self::scratch();
        let mut written = 0usize;
        while written < data.len() {
            let position = offset + written as u64;
            let index = (position / SPILL_BLOCK as u64) as usize;
            let within = (position % SPILL_BLOCK as u64) as usize;
            let take = (SPILL_BLOCK - within).min(data.len() - written);
            if take < SPILL_BLOCK {
                self.read_block(index, &mut block)?;
            }
            block[within..within + take].copy_from_slice(&data[written..written + take]);
            self.write_block(index, &mut block)?;
            written += take;
        }
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if len < self.len {
            // Bytes past the new end must read as zeros if the file grows again.
            let index = (len / SPILL_BLOCK as u64) as usize;
            let within = (len % SPILL_BLOCK as u64) as usize;
            if within > 0 && self.seals.get(index).copied().flatten().is_some() {
                let mut block = Self::scratch();
                self.read_block(index, &mut block)?;
                block[within..SPILL_BLOCK].zeroize();
                self.write_block(index, &mut block)?;
            }
            let kept_blocks = (len as usize).div_ceil(SPILL_BLOCK);
            self.seals.truncate(kept_blocks);
            self.file.set_len((kept_blocks * SPILL_BLOCK) as u64)?;
        }
        self.len = len;
        Ok(())
    }
}

enum Repr {
    Ram(PlainBuffer),
    Spilled(SpillFile),
}

/// A file's plaintext: in RAM, or (above the spill threshold) encrypted in an anonymous temporary file.
pub struct Content(Repr);

impl std::fmt::Debug for Content {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Content({} bytes, spilled: {})", self.len(), self.is_spilled())
    }
}

impl Default for Content {
    fn default() -> Self {
        Self::empty()
    }
}

impl Content {
    /// An empty content in RAM.
    pub fn empty() -> Self {
        Self(Repr::Ram(PlainBuffer::new()))
    }

    /// Content held in RAM.
    pub fn from_buffer(buffer: PlainBuffer) -> Self {
        Self(Repr::Ram(buffer))
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        match &self.0 {
            Repr::Ram(buffer) => buffer.len() as u64,
            Repr::Spilled(file) => file.len,
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the content lives in a spill file.
    pub fn is_spilled(&self) -> bool {
        matches!(self.0, Repr::Spilled(_))
    }

    /// Bytes of plaintext this content keeps in RAM.
    pub fn ram_bytes(&self) -> u64 {
        match &self.0 {
            Repr::Ram(buffer) => buffer.len() as u64,
            Repr::Spilled(_) => 0,
        }
    }

    /// Up to `size` bytes from `offset` (fewer at the end).
    pub fn read_at(&self, offset: u64, size: usize) -> io::Result<Zeroizing<Vec<u8>>> {
        match &self.0 {
            Repr::Ram(buffer) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(buffer.len());
                let end = start.saturating_add(size).min(buffer.len());
                Ok(Zeroizing::new(buffer.as_slice()[start..end].to_vec()))
            }
            Repr::Spilled(file) => file.read_at(offset, size),
        }
    }

    /// Calls `use_bytes` with up to `size` bytes from `offset` (fewer at the end): content in RAM is lent
    /// without a copy; spilled content is decrypted into a temporary that is wiped afterwards.
    pub fn with_range<T>(&self, offset: u64, size: usize, use_bytes: impl FnOnce(&[u8]) -> T) -> io::Result<T> {
        match &self.0 {
            Repr::Ram(buffer) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(buffer.len());
                let end = start.saturating_add(size).min(buffer.len());
                Ok(use_bytes(&buffer.as_slice()[start..end]))
            }
            Repr::Spilled(file) => Ok(use_bytes(&file.read_at(offset, size)?)),
        }
    }

    /// Moves RAM content into a spill file when `len` would pass the threshold.
    fn spill_if_above(&mut self, len: u64, spill: &Arc<Spill>) -> io::Result<()> {
        if let Repr::Ram(buffer) = &self.0 {
            if len > spill.threshold {
                let mut file = SpillFile::new(spill)?;
                file.write_at(0, buffer.as_slice())?;
                tracing::debug!(bytes = len, "content spilled to an encrypted temporary file");
                self.0 = Repr::Spilled(file);
            }
        }
        Ok(())
    }

    /// Writes `data` at `offset`, growing the content (zero-filled) if needed.
    pub fn write_at(&mut self, offset: u64, data: &[u8], spill: &Arc<Spill>) -> io::Result<()> {
        let end = offset.checked_add(data.len() as u64).ok_or_else(too_big)?;
        self.spill_if_above(end, spill)?;
        match &mut self.0 {
            Repr::Ram(buffer) => {
                let start = usize::try_from(offset).map_err(|_| too_big())?;
                let end = usize::try_from(end).map_err(|_| too_big())?;
                if end > buffer.len() {
                    buffer.resize(end);
                }
                buffer.as_mut_slice()[start..end].copy_from_slice(data);
                Ok(())
            }
            Repr::Spilled(file) => file.write_at(offset, data),
        }
    }

    /// Grows RAM content by `len` zero bytes and returns them, to be filled in place; `None` (nothing
    /// changed) when the content is spilled or would pass the spill threshold.
    pub fn append_in_place(&mut self, len: usize, spill: &Spill) -> Option<&mut [u8]> {
        let Repr::Ram(buffer) = &mut self.0 else { return None };
        let start = buffer.len();
        let end = start.checked_add(len)?;
        if end as u64 > spill.threshold {
            return None;
        }
        buffer.resize(end);
        Some(&mut buffer.as_mut_slice()[start..end])
    }

    /// Appends `data`.
    pub fn append(&mut self, data: &[u8], spill: &Arc<Spill>) -> io::Result<()> {
        self.write_at(self.len(), data, spill)
    }

    /// Truncates or extends (with zeros) to `len` bytes.
    pub fn set_len(&mut self, len: u64, spill: &Arc<Spill>) -> io::Result<()> {
        self.spill_if_above(len, spill)?;
        match &mut self.0 {
            Repr::Ram(buffer) => {
                buffer.resize(usize::try_from(len).map_err(|_| too_big())?);
                Ok(())
            }
            Repr::Spilled(file) => file.set_len(len),
        }
    }

    /// An independent copy (a new spill file for spilled content).
    pub fn try_clone(&self) -> io::Result<Self> {
        match &self.0 {
            Repr::Ram(buffer) => Ok(Self(Repr::Ram(PlainBuffer::from_slice(buffer.as_slice())))),
            Repr::Spilled(source) => {
                let mut copy = SpillFile::new(&source.spill)?;
                let mut position = 0;
                while position < source.len {
                    let piece = source.read_at(position, SPILL_BLOCK)?;
                    copy.write_at(position, &piece)?;
                    position += piece.len() as u64;
                }
                copy.len = source.len;
                Ok(Self(Repr::Spilled(copy)))
            }
        }
    }

    /// A reader over the whole content from the start (for encryption).
    pub fn reader(&self) -> ContentReader<'_> {
        ContentReader { content: self, position: 0 }
    }
}

fn too_big() -> io::Error {
    io::Error::from(io::ErrorKind::FileTooLarge)
}

/// Reads a [`Content`] sequentially.
pub struct ContentReader<'a> {
    content: &'a Content,
    position: u64,
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // RAM content is copied straight into `out` (no intermediate copy to allocate and wipe).
        let taken = match &self.content.0 {
            Repr::Ram(buffer) => {
                let start = usize::try_from(self.position).unwrap_or(usize::MAX).min(buffer.len());
                let end = start.saturating_add(out.len()).min(buffer.len());
                out[..end - start].copy_from_slice(&buffer.as_slice()[start..end]);
                end - start
            }
            Repr::Spilled(_) => {
                let piece = self.content.read_at(self.position, out.len())?;
                out[..piece.len()].copy_from_slice(&piece);
                piece.len()
            }
        };
        self.position += taken as u64;
        Ok(taken)
    }
}

/// Collects decrypted (not yet verified) plaintext into a [`Content`], spilling when it grows past the
/// threshold; the content is handed out only after the tag verified.
pub struct ContentSink {
    content: Content,
    spill: Arc<Spill>,
    verified: bool,
}

impl ContentSink {
    /// A sink expecting about `expected_len` bytes.
    pub fn new(expected_len: u64, spill: Arc<Spill>) -> io::Result<Self> {
        let mut content = Content::empty();
        content.spill_if_above(expected_len, &spill)?;
        if let Repr::Ram(buffer) = &mut content.0 {
            buffer.reserve(usize::try_from(expected_len).map_err(|_| too_big())?);
        }
        Ok(Self { content, spill, verified: false })
    }

    /// The verified content; `None` unless [`PlaintextSink::commit`] was called.
    pub fn into_verified(self) -> Option<Content> {
        self.verified.then_some(self.content)
    }
}

impl PlaintextSink for ContentSink {
    fn write_unverified(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.content.append(plaintext, &self.spill)
    }
    fn unverified_tail(&mut self, len: usize) -> io::Result<Option<&mut [u8]>> {
        Ok(self.content.append_in_place(len, &self.spill))
    }
    fn commit(&mut self) -> io::Result<()> {
        self.verified = true;
        Ok(())
    }
    fn discard(&mut self) {
        self.verified = false;
        self.content = Content::empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spill(threshold: u64) -> Arc<Spill> {
        Arc::new(Spill::new(std::env::temp_dir(), threshold))
    }

    #[test]
    fn plain_buffer_grows_shrinks_and_reads_zeros_after_a_cut() {
        let mut buffer = PlainBuffer::from_slice(b"hello world");
        assert_eq!(buffer.as_slice(), b"hello world");
        assert_eq!(buffer.as_slice().as_ptr() as usize % PAGE, 0);
        buffer.resize(5);
        buffer.resize(8);
        assert_eq!(buffer.as_slice(), b"hello\0\0\0");
        buffer.extend_from_slice(&[9u8; 10_000]);
        assert_eq!(buffer.len(), 10_008);
        assert_eq!(&buffer.as_slice()[..5], b"hello");
    }

    #[test]
    fn spilled_content_matches_a_ram_model_and_the_disk_holds_no_plaintext() {
        let spill = spill(100_000);
        let marker = b"SPILL-MARKER-0123456789";
        let mut content = Content::empty();
        let mut model: Vec<u8> = Vec::new();
        let mut apply = |content: &mut Content, offset: usize, data: &[u8]| {
            content.write_at(offset as u64, data, &spill).unwrap();
            if model.len() < offset + data.len() {
                model.resize(offset + data.len(), 0);
            }
            model[offset..offset + data.len()].copy_from_slice(data);
            model.clone()
        };
        let pattern: Vec<u8> = marker.iter().copied().cycle().take(250_000).collect();
        apply(&mut content, 0, &pattern[..50_000]);
        assert!(!content.is_spilled());
        apply(&mut content, 50_000, &pattern[50_000..]);
        assert!(content.is_spilled());
        apply(&mut content, 65_530, b"across a block boundary");
        let expected = apply(&mut content, 400_000, b"after a hole");
        assert_eq!(&*content.read_at(0, 1 << 20).unwrap(), &expected[..]);
        assert_eq!(&*content.read_at(65_530, 23).unwrap(), b"across a block boundary");
        // Truncate into a block, grow again: the cut bytes read as zeros.
        content.set_len(100_003, &spill).unwrap();
        content.set_len(100_010, &spill).unwrap();
        let tail = content.read_at(100_000, 100).unwrap();
        assert_eq!(&tail[..3], &expected[100_000..100_003]);
        assert_eq!(&tail[3..], &[0u8; 7]);
        let copy = content.try_clone().unwrap();
        let mut read_back = Vec::new();
        copy.reader().read_to_end(&mut read_back).unwrap();
        assert_eq!(read_back, *content.read_at(0, 1 << 20).unwrap());
        // What is on disk is ciphertext: the marker does not appear in the spill file.
        let Repr::Spilled(file) = &content.0 else { unreachable!() };
        let mut on_disk = Vec::new();
        (&file.file).read_to_end(&mut on_disk).unwrap();
        assert!(on_disk.len() >= 100_000);
        assert!(!on_disk.windows(marker.len()).any(|window| window == marker));
        // A flipped bit on disk is an error, not garbage.
        let mut byte = [0u8; 1];
        crate::platform::read_exact_at(&file.file, &mut byte, 10).unwrap();
        crate::platform::write_all_at(&file.file, &[byte[0] ^ 1], 10).unwrap();
        assert_eq!(content.read_at(0, 20).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    /// Decrypts `blob` into a fresh sink expecting `expected_len` bytes, in pieces of `piece_lens` (cycled),
    /// as a download would.
    fn decrypt_in_pieces(
        expected_len: u64,
        blob: &[u8],
        sealed: &crate::crypto::file_cipher::SealedFile,
        piece_lens: &[usize],
        spill: &Arc<Spill>,
    ) -> Result<Content, crate::crypto::file_cipher::FileCipherError> {
        use crate::crypto::file_cipher::BlobDecryptor;
        let mut sink = ContentSink::new(expected_len, spill.clone()).unwrap();
        let mut decryptor = BlobDecryptor::new(&sealed.key, &sealed.nonce, Some(&sealed.tag))?;
        let mut offset = 0;
        for len in piece_lens.iter().cycle() {
            if offset == blob.len() {
                break;
            }
            let end = (offset + len).min(blob.len());
            decryptor.feed(&blob[offset..end], &mut sink)?;
            offset = end;
        }
        decryptor.finish(&mut sink)?;
        Ok(sink.into_verified().expect("verified"))
    }

    #[test]
    fn downloads_decrypt_in_place_spill_midway_and_release_nothing_forged() {
        use crate::crypto::file_cipher::encrypt_buffer;
        let plaintext: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let (blob, sealed) = encrypt_buffer(&plaintext).unwrap();
        // Odd piece sizes: pieces shorter than the tag, pieces that end inside the tag, big ones.
        let pieces = [1, 15, 16, 17, 4096, 70_001, 3];
        // All in RAM: decrypted in place into the content's buffer.
        let len = plaintext.len() as u64;
        let in_ram = decrypt_in_pieces(len, &blob, &sealed, &pieces, &spill(1 << 20)).unwrap();
        assert!(!in_ram.is_spilled());
        assert_eq!(in_ram.len(), plaintext.len() as u64);
        assert_eq!(&*in_ram.read_at(0, plaintext.len()).unwrap(), &plaintext[..]);
        // Bigger than the spill threshold: straight to the encrypted spill file; or, when the length was
        // announced short, in place up to the threshold and spilled midway.
        for expected_len in [len, 1000] {
            let spilled = decrypt_in_pieces(expected_len, &blob, &sealed, &pieces, &spill(100_000)).unwrap();
            assert!(spilled.is_spilled());
            assert_eq!(&*spilled.read_at(0, plaintext.len()).unwrap(), &plaintext[..]);
        }
        // One flipped ciphertext bit: an authentication error, no content.
        let mut forged = blob.clone();
        forged[123_456] ^= 1;
        assert!(decrypt_in_pieces(len, &forged, &sealed, &pieces, &spill(1 << 20)).is_err());
    }

    #[test]
    fn the_sink_releases_only_verified_content() {
        let spill = spill(10);
        let mut sink = ContentSink::new(30, spill.clone()).unwrap();
        sink.write_unverified(&[1u8; 30]).unwrap();
        sink.discard();
        assert!(sink.into_verified().is_none());
        let mut sink = ContentSink::new(30, spill).unwrap();
        sink.write_unverified(&[1u8; 30]).unwrap();
        sink.commit().unwrap();
        let content = sink.into_verified().unwrap();
        assert!(content.is_spilled());
        assert_eq!(&*content.read_at(0, 100).unwrap(), &[1u8; 30]);
    }
}
