//! Incremental AES-GCM (128- and 256-bit keys, 12- or 16-byte nonces) over AWS-LC's `EVP_CIPHER` interface.
//!
//! Nextcloud appends a 16-byte tag to one GCM stream that covers a whole file, and its desktop and mobile
//! clients use 16-byte nonces. Neither the one-shot AEAD API of `aws-lc-rs` (12-byte nonces, whole buffers)
//! nor RustCrypto's `aes-gcm` (whole buffers) can process such a stream in bounded memory, so this module
//! wraps the streaming `EVP_aes_*_gcm` cipher of AWS-LC, which uses AES-NI/VAES and carry-less multiply.
//!
//! The unsafe surface is kept to this file. Callers above it never see unverified plaintext unless they
//! ask for it through [`GcmDecryptor::update_unverified`], whose name says what it returns.

use std::os::raw::{c_int, c_void};
use std::ptr;

use aws_lc_sys as ffi;

/// Length of the GCM authentication tag, in bytes, everywhere in Nextcloud's format.
pub const TAG_LEN: usize = 16;

/// The largest amount of data handed to AWS-LC in one call (its length parameters are `int`).
const MAX_CHUNK: usize = 1 << 30;

/// GCM may encrypt at most 2^39 - 256 bits under one key and nonce (NIST SP 800-38D).
pub const MAX_MESSAGE_LEN: u64 = (1u64 << 36) - 32;

/// Errors from the GCM layer. They carry no data: a tag mismatch is all the caller may learn.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GcmError {
    /// The authentication tag did not match: the key, nonce, ciphertext or tag is wrong or was altered.
    #[error("authentication tag mismatch: data was altered or the key is wrong")]
    TagMismatch,
    /// The key or nonce has a length this module does not accept.
    #[error("invalid AES-GCM parameter: {0}")]
    InvalidParameter(&'static str),
    /// The message exceeds the GCM limit for one key and nonce.
    #[error("message too long for one AES-GCM operation")]
    MessageTooLong,
    /// AWS-LC reported an internal failure (allocation or similar).
    #[error("AES-GCM backend failure in {0}")]
    Backend(&'static str),
}

enum Direction {
    Encrypt,
    Decrypt,
}

/// Owns one `EVP_CIPHER_CTX`; freeing it also cleanses the expanded key schedule inside AWS-LC.
struct Context {
    raw: *mut ffi::EVP_CIPHER_CTX,
    processed: u64,
}

// SAFETY: an EVP_CIPHER_CTX has no thread affinity; `Context` is not `Sync` and is only used through `&mut`.
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: `raw` came from EVP_CIPHER_CTX_new and is freed exactly once here.
        unsafe { ffi::EVP_CIPHER_CTX_free(self.raw) };
    }
}

impl Context {
    fn new(direction: Direction, key: &[u8], nonce: &[u8]) -> Result<Self, GcmError> {
        let cipher = match key.len() {
            // SAFETY: the cipher getters return pointers to static tables.
            16 => unsafe { ffi::EVP_aes_128_gcm() },
            // SAFETY: as above.
            32 => unsafe { ffi::EVP_aes_256_gcm() },
            _ => return Err(GcmError::InvalidParameter("key must be 16 or 32 bytes")),
        };
        if nonce.len() != 12 && nonce.len() != 16 {
            return Err(GcmError::InvalidParameter("nonce must be 12 or 16 bytes"));
        }
        // SAFETY: plain allocation; checked for NULL below.
        let raw = unsafe { ffi::EVP_CIPHER_CTX_new() };
        if raw.is_null() {
            return Err(GcmError::Backend("EVP_CIPHER_CTX_new"));
        }
        let context = Context { raw, processed: 0 };
        let init = match direction {
            Direction::Encrypt => ffi::EVP_EncryptInit_ex,
            Direction::Decrypt => ffi::EVP_DecryptInit_ex,
        };
        // SAFETY: `raw` is a fresh context, `cipher` is static; key and nonce pointers are valid for the
        // lengths the cipher reads (checked above), and the IV length is set before the IV is supplied.
        unsafe {
            if init(raw, cipher, ptr::null_mut(), ptr::null(), ptr::null()) != 1 {
                return Err(GcmError::Backend("EVP_CipherInit_ex"));
            }
            if ffi::EVP_CIPHER_CTX_ctrl(raw, ffi::EVP_CTRL_GCM_SET_IVLEN, nonce.len() as c_int, ptr::null_mut()) != 1 {
                return Err(GcmError::Backend("EVP_CTRL_GCM_SET_IVLEN"));
            }
            if init(raw, ptr::null(), ptr::null_mut(), key.as_ptr(), nonce.as_ptr()) != 1 {
                return Err(GcmError::Backend("EVP_CipherInit_ex(key, iv)"));
            }
        }
        Ok(context)
    }

    /// Runs `buffer` through the cipher in place (GCM is a stream mode: output length = input length).
    fn update_in_place(&mut self, direction: &Direction, buffer: &mut [u8]) -> Result<(), GcmError> {
        let data = buffer.as_mut_ptr();
        // SAFETY: `buffer` is valid for reads and writes of its length; AWS-LC's GCM update supports exact
        // in-place operation (in == out).
        unsafe { self.update_raw(direction, data, data, buffer.len()) }
    }

    /// Runs `input` through the cipher into `output` (distinct buffers of equal length).
    fn update_into(&mut self, direction: &Direction, input: &[u8], output: &mut [u8]) -> Result<(), GcmError> {
        assert_eq!(input.len(), output.len(), "GCM output must be as long as its input");
        // SAFETY: both slices are valid for their (equal) length and cannot overlap (a shared and a
        // mutable borrow).
        unsafe { self.update_raw(direction, input.as_ptr(), output.as_mut_ptr(), input.len()) }
    }

    /// # Safety
    /// `input` must be valid for reads and `output` for writes of `len` bytes; they are either identical or
    /// do not overlap.
    unsafe fn update_raw(
        &mut self,
        direction: &Direction,
        input: *const u8,
        output: *mut u8,
        len: usize,
    ) -> Result<(), GcmError> {
        self.processed = self.processed.saturating_add(len as u64);
        if self.processed > MAX_MESSAGE_LEN {
            return Err(GcmError::MessageTooLong);
        }
        let update = match direction {
            Direction::Encrypt => ffi::EVP_EncryptUpdate,
            Direction::Decrypt => ffi::EVP_DecryptUpdate,
        };
        let mut offset = 0;
        while offset < len {
            let step = (len - offset).min(MAX_CHUNK);
            let mut written: c_int = 0;
            // SAFETY: `offset + step <= len`, so both pointers stay inside the caller's buffers; `step` fits
            // in c_int (MAX_CHUNK); GCM writes exactly as many bytes as it reads in an update.
            let ok = unsafe { update(self.raw, output.add(offset), &mut written, input.add(offset), step as c_int) };
            if ok != 1 || written as usize != step {
                return Err(GcmError::Backend("EVP_CipherUpdate"));
            }
            offset += step;
        }
        Ok(())
    }
}

/// Streaming AES-GCM encryption. Produces ciphertext of the same length as the input, then a 16-byte tag.
pub struct GcmEncryptor {
    context: Context,
}

impl GcmEncryptor {
    /// Starts an encryption under `key` (16 or 32 bytes) and `nonce` (12 or 16 bytes).
    pub fn new(key: &[u8], nonce: &[u8]) -> Result<Self, GcmError> {
        Ok(Self { context: Context::new(Direction::Encrypt, key, nonce)? })
    }

    /// Encrypts `buffer` in place.
    pub fn update_in_place(&mut self, buffer: &mut [u8]) -> Result<(), GcmError> {
        self.context.update_in_place(&Direction::Encrypt, buffer)
    }

    /// Encrypts `plaintext` into `ciphertext` (same length).
    pub fn update(&mut self, plaintext: &[u8], ciphertext: &mut [u8]) -> Result<(), GcmError> {
        self.context.update_into(&Direction::Encrypt, plaintext, ciphertext)
    }

    /// Finishes the stream and returns the authentication tag.
    pub fn finish(mut self) -> Result<[u8; TAG_LEN], GcmError> {
        let mut tag = [0u8; TAG_LEN];
        let mut written: c_int = 0;
        // SAFETY: GCM final writes no output bytes; the tag buffer holds TAG_LEN bytes.
        unsafe {
            if ffi::EVP_EncryptFinal_ex(self.context.raw, tag.as_mut_ptr(), &mut written) != 1 {
                return Err(GcmError::Backend("EVP_EncryptFinal_ex"));
            }
            if ffi::EVP_CIPHER_CTX_ctrl(
                self.context.raw,
                ffi::EVP_CTRL_GCM_GET_TAG,
                TAG_LEN as c_int,
                tag.as_mut_ptr() as *mut c_void,
            ) != 1
            {
                return Err(GcmError::Backend("EVP_CTRL_GCM_GET_TAG"));
            }
        }
        self.context.processed = 0;
        Ok(tag)
    }
}

/// Streaming AES-GCM decryption. Everything [`update_unverified`](Self::update_unverified) returns is
/// unauthenticated until [`finish`](Self::finish) has accepted the tag.
pub struct GcmDecryptor {
    context: Context,
}

impl GcmDecryptor {
    /// Starts a decryption under `key` (16 or 32 bytes) and `nonce` (12 or 16 bytes).
    pub fn new(key: &[u8], nonce: &[u8]) -> Result<Self, GcmError> {
        Ok(Self { context: Context::new(Direction::Decrypt, key, nonce)? })
    }

    /// Decrypts `buffer` in place. The result is NOT authenticated yet: it must be held back (and wiped on
    /// failure) until [`finish`](Self::finish) returns `Ok`.
    pub fn update_unverified(&mut self, buffer: &mut [u8]) -> Result<(), GcmError> {
        self.context.update_in_place(&Direction::Decrypt, buffer)
    }

    /// Decrypts `ciphertext` into `plaintext` (same length). The result is NOT authenticated yet.
    pub fn update_unverified_into(&mut self, ciphertext: &[u8], plaintext: &mut [u8]) -> Result<(), GcmError> {
        self.context.update_into(&Direction::Decrypt, ciphertext, plaintext)
    }

    /// Checks the tag over everything passed to [`update_unverified`](Self::update_unverified).
    pub fn finish(self, tag: &[u8]) -> Result<(), GcmError> {
        if tag.len() != TAG_LEN {
            return Err(GcmError::TagMismatch);
        }
        let mut tag_copy = [0u8; TAG_LEN];
        tag_copy.copy_from_slice(tag);
        let mut written: c_int = 0;
        let mut scratch = [0u8; TAG_LEN];
        // SAFETY: SET_TAG copies TAG_LEN bytes from a valid buffer; final writes no output for GCM.
        unsafe {
            if ffi::EVP_CIPHER_CTX_ctrl(
                self.context.raw,
                ffi::EVP_CTRL_GCM_SET_TAG,
                TAG_LEN as c_int,
                tag_copy.as_mut_ptr() as *mut c_void,
            ) != 1
            {
                return Err(GcmError::Backend("EVP_CTRL_GCM_SET_TAG"));
            }
            if ffi::EVP_DecryptFinal_ex(self.context.raw, scratch.as_mut_ptr(), &mut written) != 1 {
                return Err(GcmError::TagMismatch);
            }
        }
        Ok(())
    }
}

/// One-shot encryption: returns `ciphertext || tag`.
pub fn seal(key: &[u8], nonce: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, GcmError> {
    let mut encryptor = GcmEncryptor::new(key, nonce)?;
    let mut output = Vec::with_capacity(plaintext.len() + TAG_LEN);
    output.extend_from_slice(plaintext);
    encryptor.update_in_place(&mut output)?;
    output.extend_from_slice(&encryptor.finish()?);
    Ok(output)
}

/// One-shot decryption of `ciphertext || tag`. The plaintext is wiped and never returned if the tag fails.
pub fn open(key: &[u8], nonce: &[u8], sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, GcmError> {
    if sealed.len() < TAG_LEN {
        return Err(GcmError::TagMismatch);
    }
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let mut decryptor = GcmDecryptor::new(key, nonce)?;
    let mut plaintext = zeroize::Zeroizing::new(ciphertext.to_vec());
    decryptor.update_unverified(&mut plaintext)?;
    decryptor.finish(tag)?;
    Ok(plaintext)
}
