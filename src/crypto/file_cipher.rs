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

/// Encrypts a whole buffer; returns the blob (`ciphertext || tag`) and what the metadata records.
pub fn encrypt_buffer(plaintext: &[u8]) -> Result<(Vec<u8>, SealedFile), FileCipherError> {
    let mut blob = Vec::with_capacity(plaintext.len() + TAG_LEN);
    let sealed = encrypt_stream(plaintext, &mut blob)?;
    Ok((blob, sealed))
}

/// Decrypts the blob read from `reader` into `sink`, checking the appended tag and, when given, that it
/// equals `expected_tag` from the signed metadata. Returns the plaintext length.
///
/// On any failure the sink's `discard` has been called before the error is returned.
pub fn decrypt_stream<R: Read, S: PlaintextSink>(
    key: &FileKey,
    nonce: &Nonce,
    expected_tag: Option<&[u8; TAG_LEN]>,
    reader: R,
    sink: &mut S,
) -> Result<u64, FileCipherError> {
    let result = decrypt_stream_inner(key, nonce, expected_tag, reader, sink);
    match result {
        Ok(len) => match sink.commit() {
            Ok(()) => Ok(len),
            Err(error) => {
                sink.discard();
                Err(error.into())
            }
        },
        Err(error) => {
            sink.discard();
            Err(error)
        }
    }
}

fn decrypt_stream_inner<R: Read, S: PlaintextSink>(
    key: &FileKey,
    nonce: &Nonce,
    expected_tag: Option<&[u8; TAG_LEN]>,
    mut reader: R,
    sink: &mut S,
) -> Result<u64, FileCipherError> {
    let mut decryptor = GcmDecryptor::new(key.as_bytes(), nonce.as_bytes())?;
    // `window` holds up to TAG_LEN held-back bytes followed by newly read bytes.
    let mut window = Zeroizing::new(vec![0u8; CHUNK_LEN + TAG_LEN]);
    let mut held_back = 0usize;
    let mut total_read = 0u64;
    let mut plaintext_len = 0u64;
    loop {
        let filled = read_full(&mut reader, &mut window[held_back..])?;
        total_read += filled as u64;
        let available = held_back + filled;
        if filled == 0 {
            held_back = available;
            break;
        }
        // Everything but the last TAG_LEN bytes is certainly ciphertext.
        let ciphertext_len = available.saturating_sub(TAG_LEN);
        if ciphertext_len > 0 {
            decryptor.update_unverified(&mut window[..ciphertext_len])?;
            sink.write_unverified(&window[..ciphertext_len])?;
            plaintext_len += ciphertext_len as u64;
            window.copy_within(ciphertext_len..available, 0);
        }
        held_back = available - ciphertext_len;
    }
    if held_back < TAG_LEN {
        return Err(FileCipherError::Truncated { len: total_read });
    }
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&window[..TAG_LEN]);
    if let Some(expected) = expected_tag {
        if !constant_time_eq(expected, &tag) {
            return Err(FileCipherError::TagDiffersFromMetadata);
        }
    }
    decryptor.finish(&tag)?;
    Ok(plaintext_len)
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
