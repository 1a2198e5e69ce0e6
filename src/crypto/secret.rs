//! Secret values: fixed-size keys that are wiped on drop and never shown by `Debug`, plus the random source.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::locked::LockedBytes;

/// Fills `buffer` from the operating system's CSPRNG (through AWS-LC).
///
/// # Panics
/// Only if the operating system's random source fails, in which case no key may be generated at all.
pub fn random_bytes(buffer: &mut [u8]) {
    aws_lc_rs::rand::fill(buffer).expect("the operating system's random number generator failed");
}

/// A symmetric key of `N` bytes, kept in locked memory ([`LockedBytes`]): wiped when dropped, not swapped
/// out where the memory-lock limit allows, left out of core dumps; `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct SymmetricKey<const N: usize>(LockedBytes);

impl<const N: usize> SymmetricKey<N> {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = LockedBytes::zeroed(N);
        random_bytes(bytes.as_mut_slice());
        Self(bytes)
    }

    /// Wraps raw key bytes; `None` unless `bytes` is exactly `N` long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        (bytes.len() == N).then(|| Self(LockedBytes::from_slice(bytes)))
    }

    /// Decodes a standard-base64 key; `None` on bad base64 or a wrong length.
    pub fn from_base64(text: &str) -> Option<Self> {
        let decoded = Zeroizing::new(BASE64.decode(text.trim()).ok()?);
        Self::from_slice(&decoded)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; N] {
        self.0.as_slice().try_into().expect("a SymmetricKey<N> holds exactly N bytes")
    }

    /// Standard base64 of the key, in a buffer that is wiped on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.0.as_slice()))
    }

    /// Lowercase hex SHA-256 of the raw key, as Nextcloud stores in `keyChecksums`.
    pub fn sha256_hex(&self) -> String {
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.0.as_slice()))
    }
}

impl<const N: usize> Zeroize for SymmetricKey<N> {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

/// Dropping wipes the bytes ([`LockedBytes`] zeroes its slot).
impl<const N: usize> ZeroizeOnDrop for SymmetricKey<N> {}

impl<const N: usize> fmt::Debug for SymmetricKey<N> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "SymmetricKey<{N}>(redacted)")
    }
}

/// The 16-byte AES-128-GCM key of one file version.
pub type FileKey = SymmetricKey<16>;
/// The 16-byte AES-128-GCM key that encrypts a folder tree's metadata.
pub type MetadataKey = SymmetricKey<16>;

/// An AES-GCM nonce as Nextcloud uses them: 12 bytes (web client, cloakfs) or 16 bytes (desktop, mobile).
#[derive(Clone, PartialEq, Eq)]
pub struct Nonce(Vec<u8>);

impl Nonce {
    /// The nonce length cloakfs writes: 12 bytes, the standard GCM nonce (see docs/FORMAT.md).
    pub const WRITTEN_LEN: usize = 12;

    /// A fresh random nonce of [`Nonce::WRITTEN_LEN`] bytes.
    pub fn generate() -> Self {
        Self::generate_with_len(Self::WRITTEN_LEN)
    }

    /// A fresh random nonce of `len` bytes (12 or 16).
    pub fn generate_with_len(len: usize) -> Self {
        assert!(len == 12 || len == 16, "AES-GCM nonces are 12 or 16 bytes here");
        let mut bytes = vec![0u8; len];
        random_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps nonce bytes; `None` unless 12 or 16 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        (bytes.len() == 12 || bytes.len() == 16).then(|| Self(bytes.to_vec()))
    }

    /// Decodes a standard-base64 nonce; `None` on bad base64 or a length other than 12 or 16.
    pub fn from_base64(text: &str) -> Option<Self> {
        Self::from_slice(&BASE64.decode(text.trim()).ok()?)
    }

    /// The raw nonce.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Standard base64 of the nonce.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.0)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Nonce({})", hex::encode(&self.0))
    }
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(left, right).is_ok()
}
