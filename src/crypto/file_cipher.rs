//! File content encryption: one AES-128-GCM stream per file version, the 16-byte tag appended to the blob.
//!
//! Both directions stream in bounded working memory ([`CHUNK_LEN`] per step). Decryption hands plaintext
//! only to a [`PlaintextSink`], which must keep it unreleased until [`PlaintextSink::commit`] and wipe it on
//! [`PlaintextSink::discard`]: plaintext whose tag has not verified never reaches a reader.

use std::io::{self, Read, Write};

use zeroize::Zeroizing;

use super::gcm::{GcmDecryptor, GcmEncryptor, GcmError, TAG_LEN};
use super::secret::{constant_time_eq, FileKey, Nonce};

/// Bytes processed per step when streaming.
pub const CHUNK_LEN: usize = 256 * 1024;

/// What the folder metadata must record about one encrypted file version.
#[derive(Debug, Clone)]
pub struct SealedFile {
    /// The random per-version key.
    pub key: FileKey,
    /// The random nonce.
    pub nonce: Nonce,
    /// The GCM tag, also the last 16 bytes of the blob.
    pub tag: [u8; TAG_LEN],
    /// Length of the plaintext in bytes (the blob is 16 bytes longer).
    pub plaintext_len: u64,
}

/// Errors while encrypting or decrypting file content.
#[derive(Debug, thiserror::Error)]
pub enum FileCipherError {
    /// The blob is shorter than a tag: it was truncated.
    #[error("encrypted blob is truncated ({len} bytes; at least {TAG_LEN} expected)")]
    Truncated {
        /// Observed blob length.
        len: u64,
    },
    /// The blob's appended tag differs from the tag recorded in the signed metadata (swapped or replaced blob).
    #[error("the blob's tag differs from the tag in the folder metadata: blob replaced or swapped")]
    TagDiffersFromMetadata,
    /// Authentication failed: content altered, or wrong key or nonce.
    #[error("file content failed authentication: {0}")]
    Authentication(#[from] GcmError),
    /// Reading the ciphertext or writing the output failed.
    #[error("I/O error while streaming file content: {0}")]
    Io(#[from] io::Error),
}

/// Receives decrypted bytes that are NOT yet authenticated.
pub trait PlaintextSink {
    /// Takes the next piece of unverified plaintext. Must not release it to any reader yet.
    fn write_unverified(&mut self, plaintext: &[u8]) -> io::Result<()>;
    /// Grows the sink by `len` bytes and returns them, for the decryption to write the next piece of
    /// unverified plaintext straight into the sink's memory (no copy through a scratch buffer). `None`
    /// when the sink cannot (the piece then goes through [`write_unverified`](Self::write_unverified)).
    /// The same rules hold: nothing is released before [`commit`](Self::commit).
    fn unverified_tail(&mut self, _len: usize) -> io::Result<Option<&mut [u8]>> {
        Ok(None)
    }
    /// The tag verified: everything written may now be released.
    fn commit(&mut self) -> io::Result<()>;
    /// Authentication (or reading) failed: wipe everything written.
    fn discard(&mut self);
}

/// A sink that collects plaintext in a buffer wiped on drop, released only by [`decrypt_to_vec`].
#[derive(Default)]
pub struct BufferSink {
    buffer: Zeroizing<Vec<u8>>,
}

impl PlaintextSink for BufferSink {
    fn write_unverified(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.buffer.extend_from_slice(plaintext);
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&mut self) {
        // Zeroizing wipes the initialised part; clear() keeps the allocation, so wipe explicitly first.
        zeroize::Zeroize::zeroize(&mut *self.buffer);
    }
}

/// Encrypts `reader` into `writer` under a fresh random key and nonce; writes `ciphertext || tag`.
pub fn encrypt_stream<R: Read, W: Write>(reader: R, writer: W) -> Result<SealedFile, FileCipherError> {
    encrypt_stream_with(FileKey::generate(), Nonce::generate(), reader, writer)
}

/// Encrypts with a given key and nonce. Never reuse a (key, nonce) pair: callers outside tests want
/// [`encrypt_stream`].
pub fn encrypt_stream_with<R: Read, W: Write>(
    key: FileKey,
    nonce: Nonce,
    mut reader: R,
    mut writer: W,
) -> Result<SealedFile, FileCipherError> {
    let mut encryptor = GcmEncryptor::new(key.as_bytes(), nonce.as_bytes())?;
    let mut buffer = Zeroizing::new(vec![0u8; CHUNK_LEN]);
    let mut plaintext_len = 0u64;
    loop {
        let filled = read_full(&mut reader, &mut buffer)?;
        if filled == 0 {
            break;
        }
        encryptor.update_in_place(&mut buffer[..filled])?;
        writer.write_all(&buffer[..filled])?;
        plaintext_len += filled as u64;
    }
    let tag = encryptor.finish()?;
    writer.write_all(&tag)?;
    writer.flush()?;
    Ok(SealedFile { key, nonce, tag, plaintext_len })
}

/// Encrypts a whole buffer under a fresh key and nonce into a new blob (`ciphertext || tag`); returns the
/// blob and what the metadata records.
pub fn encrypt_buffer(plaintext: &[u8]) -> Result<(Vec<u8>, SealedFile), FileCipherError> {
    let mut blob = Vec::with_capacity(plaintext.len() + TAG_LEN);
    let sealed = encrypt_buffer_into(plaintext, &mut blob)?;
    Ok((blob, sealed))
}

/// Like [`encrypt_buffer`], into a caller's (reusable) vector, which is cleared first. Each piece is
/// appended and then encrypted while it is still in the CPU cache: one pass over memory, no zero-filling.
pub fn encrypt_buffer_into(plaintext: &[u8], blob: &mut Vec<u8>) -> Result<SealedFile, FileCipherError> {
    let key = FileKey::generate();
    let nonce = Nonce::generate();
    let mut encryptor = GcmEncryptor::new(key.as_bytes(), nonce.as_bytes())?;
    blob.clear();
    blob.reserve(plaintext.len() + TAG_LEN);
    for chunk in plaintext.chunks(CHUNK_LEN) {
        let start = blob.len();
        blob.extend_from_slice(chunk);
        encryptor.update_in_place(&mut blob[start..])?;
    }
    let tag = encryptor.finish()?;
    blob.extend_from_slice(&tag);
    Ok(SealedFile { key, nonce, tag, plaintext_len: plaintext.len() as u64 })
}

/// Incremental decryption of a blob that arrives in pieces (e.g. an HTTP body): each piece is decrypted
/// straight into the sink, the last 16 bytes are held back as the tag.
///
/// On any error the sink has been told to [`discard`](PlaintextSink::discard) before the error returns.
pub struct BlobDecryptor {
    decryptor: GcmDecryptor,
    expected_tag: Option<[u8; TAG_LEN]>,
    held: [u8; TAG_LEN],
    held_len: usize,
    scratch: Zeroizing<Vec<u8>>,
    plaintext_len: u64,
}

impl BlobDecryptor {
    /// Starts decrypting a blob made with `key` and `nonce`; `expected_tag` is the tag recorded in the
    /// signed metadata, which the blob's appended tag must equal.
    pub fn new(key: &FileKey, nonce: &Nonce, expected_tag: Option<&[u8; TAG_LEN]>) -> Result<Self, FileCipherError> {
        Ok(Self {
            decryptor: GcmDecryptor::new(key.as_bytes(), nonce.as_bytes())?,
            expected_tag: expected_tag.copied(),
            held: [0; TAG_LEN],
            held_len: 0,
            scratch: Zeroizing::new(vec![0u8; CHUNK_LEN]),
            plaintext_len: 0,
        })
    }

    /// Feeds the next piece of the blob.
    pub fn feed<S: PlaintextSink>(&mut self, data: &[u8], sink: &mut S) -> Result<(), FileCipherError> {
        let result = self.feed_inner(data, sink);
        if result.is_err() {
            sink.discard();
        }
        result
    }

    fn feed_inner<S: PlaintextSink>(&mut self, data: &[u8], sink: &mut S) -> Result<(), FileCipherError> {
        let total = self.held_len + data.len();
        if total <= TAG_LEN {
            self.held[self.held_len..total].copy_from_slice(data);
            self.held_len = total;
            return Ok(());
        }
        let ciphertext_len = total - TAG_LEN;
        // Held-back bytes that are now known to be ciphertext.
        let from_held = ciphertext_len.min(self.held_len);
        if from_held > 0 {
            let mut small = Zeroizing::new([0u8; TAG_LEN]);
            self.decryptor.update_unverified_into(&self.held[..from_held], &mut small[..from_held])?;
            sink.write_unverified(&small[..from_held])?;
        }
        let from_data = ciphertext_len - from_held;
        if from_data > 0 {
            if let Some(output) = sink.unverified_tail(from_data)? {
                self.decryptor.update_unverified_into(&data[..from_data], output)?;
            } else {
                for chunk in data[..from_data].chunks(CHUNK_LEN) {
                    let output = &mut self.scratch[..chunk.len()];
                    self.decryptor.update_unverified_into(chunk, output)?;
                    sink.write_unverified(output)?;
                }
            }
        }
        self.plaintext_len += ciphertext_len as u64;
        // The new tail: what is left of the held bytes, then the rest of `data`; exactly TAG_LEN bytes.
        let mut tail = [0u8; TAG_LEN];
        let rest_held = self.held_len - from_held;
        tail[..rest_held].copy_from_slice(&self.held[from_held..self.held_len]);
        tail[rest_held..].copy_from_slice(&data[from_data..]);
        self.held = tail;
        self.held_len = TAG_LEN;
        Ok(())
    }

    /// Checks the tag; on success commits the sink and returns the plaintext length.
    pub fn finish<S: PlaintextSink>(self, sink: &mut S) -> Result<u64, FileCipherError> {
        let result = self.finish_inner(sink);
        if result.is_err() {
            sink.discard();
        }
        result
    }

    fn finish_inner<S: PlaintextSink>(self, sink: &mut S) -> Result<u64, FileCipherError> {
        if self.held_len < TAG_LEN {
            return Err(FileCipherError::Truncated { len: self.held_len as u64 });
        }
        if let Some(expected) = &self.expected_tag {
            if !constant_time_eq(expected, &self.held) {
                return Err(FileCipherError::TagDiffersFromMetadata);
            }
        }
        self.decryptor.finish(&self.held)?;
        sink.commit()?;
        Ok(self.plaintext_len)
    }
}

/// Decrypts the blob read from `reader` into `sink`, checking the appended tag and, when given, that it
/// equals `expected_tag` from the signed metadata. Returns the plaintext length.
///
/// On any failure the sink's `discard` has been called before the error is returned.
pub fn decrypt_stream<R: Read, S: PlaintextSink>(
    key: &FileKey,
    nonce: &Nonce,
    expected_tag: Option<&[u8; TAG_LEN]>,
    mut reader: R,
    sink: &mut S,
) -> Result<u64, FileCipherError> {
    let mut blob_decryptor = BlobDecryptor::new(key, nonce, expected_tag)?;
    let mut buffer = vec![0u8; CHUNK_LEN];
    loop {
        let filled = match read_full(&mut reader, &mut buffer) {
            Ok(filled) => filled,
            Err(error) => {
                sink.discard();
                return Err(error.into());
            }
        };
        if filled == 0 {
            break;
        }
        blob_decryptor.feed(&buffer[..filled], sink)?;
    }
    blob_decryptor.finish(sink)
}

/// Decrypts a blob into a buffer that is wiped on drop; returns it only after the tag has verified.
pub fn decrypt_to_vec<R: Read>(
    key: &FileKey,
    nonce: &Nonce,
    expected_tag: Option<&[u8; TAG_LEN]>,
    reader: R,
) -> Result<Zeroizing<Vec<u8>>, FileCipherError> {
    let mut sink = BufferSink::default();
    decrypt_stream(key, nonce, expected_tag, reader, &mut sink)?;
    Ok(std::mem::take(&mut sink.buffer))
}

/// Reads until `buffer` is full or the reader is at end of file; retries on `Interrupted`.
fn read_full<R: Read>(reader: &mut R, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
