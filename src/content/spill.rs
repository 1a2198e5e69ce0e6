//! Plaintext above the spill threshold: an anonymous temporary file (no name, gone with the process) that
//! holds only AES-256-GCM ciphertext, in blocks of [`SPILL_BLOCK`] bytes, under a random per-mount key kept
//! in locked RAM; each block's nonce and tag stay in RAM.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::{Zeroize, Zeroizing};

use super::{SPILL_BLOCK, TAG};
use crate::crypto::locked::LockedBytes;
use crate::crypto::secret::random_bytes;

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

    pub(super) fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, self.key.as_slice()).expect("a 32-byte AES-256 key"))
    }

    /// A fresh nonce: a per-mount counter, so no (key, nonce) pair repeats.
    pub(super) fn nonce(&self) -> [u8; 12] {
        let counter = self.next_nonce.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&counter.to_le_bytes());
        nonce
    }

    /// Opens a new anonymous spill file: `O_TMPFILE` (no name ever exists); where the file system lacks it,
    /// a random name that is unlinked at once.
    pub(super) fn create_file(&self) -> io::Result<File> {
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
    pub(super) file: File,
    id: u64,
    pub(super) len: u64,
    seals: Vec<Option<BlockSeal>>,
    pub(super) spill: Arc<Spill>,
}

impl SpillFile {
    pub(super) fn new(spill: &Arc<Spill>) -> io::Result<Self> {
        Ok(Self {
            file: spill.create_file()?,
            id: spill.next_file_id.fetch_add(1, Ordering::Relaxed),
            len: 0,
            seals: Vec::new(),
            spill: spill.clone(),
        })
    }

    pub(super) fn aad(&self, index: usize) -> [u8; 16] {
        let mut aad = [0u8; 16];
        aad[..8].copy_from_slice(&self.id.to_le_bytes());
        aad[8..].copy_from_slice(&(index as u64).to_le_bytes());
        aad
    }

    /// Block `index`'s plaintext (zeros if never written), in `block` (SPILL_BLOCK + TAG bytes).
    pub(super) fn read_block(&self, index: usize, block: &mut [u8]) -> io::Result<()> {
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
    pub(super) fn write_block(&mut self, index: usize, block: &mut [u8]) -> io::Result<()> {
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

    pub(super) fn scratch() -> Zeroizing<Vec<u8>> {
        Zeroizing::new(vec![0u8; SPILL_BLOCK + TAG])
    }

    pub(super) fn read_at(&self, offset: u64, size: usize) -> io::Result<Zeroizing<Vec<u8>>> {
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

    pub(super) fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
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

    pub(super) fn set_len(&mut self, len: u64) -> io::Result<()> {
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
