//! The plaintext of one file at the mount: in RAM ([`PlainBuffer`], src/content/buffer.rs), or above
//! the spill threshold in a [`SpillFile`] (src/content/spill.rs): an anonymous temporary file that
//! holds only AES-256-GCM ciphertext under a random per-mount key kept in locked RAM. Once the process is
//! gone the spill file no longer exists, and while it runs its blocks are unreadable without that key.
//! [`ContentSink`] (src/content/sink.rs) receives a download's plaintext.

mod buffer;
mod sink;
mod spill;

use std::io::{self, Read};
use std::sync::Arc;

use zeroize::Zeroizing;

pub use buffer::PlainBuffer;
pub use sink::ContentSink;
pub use spill::{Spill, SpillFile};

/// Alignment (and growth unit) of RAM buffers: the page size on common systems.
const PAGE: usize = 4096;
/// Plaintext bytes per encrypted block of a spill file.
pub const SPILL_BLOCK: usize = 64 * 1024;
const TAG: usize = 16;

pub(super) enum Repr {
    /// In RAM.
    Ram(PlainBuffer),
    /// Encrypted in a spill file.
    Spilled(SpillFile),
}

/// A file's plaintext: in RAM, or (above the spill threshold) encrypted in an anonymous temporary file.
pub struct Content(pub(super) Repr);

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
            if len > spill.threshold() {
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
        if end as u64 > spill.threshold() {
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

/// The error of a size beyond what this machine can address.
pub(super) fn too_big() -> io::Error {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::file_cipher::PlaintextSink as _;

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
