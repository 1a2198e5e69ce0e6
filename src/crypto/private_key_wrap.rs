//! The private key at rest, exactly as Nextcloud stores it on the server:
//! `base64(AES-256-GCM(key = PBKDF2(mnemonic), iv, plaintext = base64(PKCS#8 PEM)) || tag) | base64(iv) | base64(salt)`.
//!
//! Writing always uses PBKDF2-HMAC-SHA256 with 600 000 iterations, a 40-byte salt and a 12-byte IV (the only
//! shape a current Nextcloud server accepts). Reading also tries the legacy KDFs PBKDF2-HMAC-SHA1 with 1024
//! and with 600 000 iterations, and the old `fA==` separator.

use std::num::NonZeroU32;

use aws_lc_rs::pbkdf2;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::gcm;
use super::identity::{IdentityError, PrivateIdentity};
use super::mnemonic::Mnemonic;
use super::secret::random_bytes;

/// Salt length written (the server enforces 40).
pub const SALT_LEN: usize = 40;
/// IV length written (the server enforces 12).
pub const IV_LEN: usize = 12;

/// A key-derivation function Nextcloud clients have used for the private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateKeyKdf {
    /// PBKDF2-HMAC-SHA256, 600 000 iterations: current clients, and what cloakfs writes.
    Sha256Iter600k,
    /// PBKDF2-HMAC-SHA1, 1024 iterations: the original 2017 clients.
    Sha1Iter1024,
    /// PBKDF2-HMAC-SHA1, 600 000 iterations: an intermediate generation of clients.
    Sha1Iter600k,
}

impl PrivateKeyKdf {
    /// The order in which unwrapping tries the KDFs.
    pub const ALL: [PrivateKeyKdf; 3] = [Self::Sha256Iter600k, Self::Sha1Iter1024, Self::Sha1Iter600k];

    /// Derives the 32-byte AES-256 key from the mnemonic's KDF password and the salt.
    pub fn derive(self, password: &[u8], salt: &[u8]) -> Zeroizing<[u8; 32]> {
        let (algorithm, iterations) = match self {
            Self::Sha256Iter600k => (pbkdf2::PBKDF2_HMAC_SHA256, 600_000),
            Self::Sha1Iter1024 => (pbkdf2::PBKDF2_HMAC_SHA1, 1024),
            Self::Sha1Iter600k => (pbkdf2::PBKDF2_HMAC_SHA1, 600_000),
        };
        let mut key = Zeroizing::new([0u8; 32]);
        pbkdf2::derive(algorithm, NonZeroU32::new(iterations).expect("non-zero"), salt, password, &mut *key);
        key
    }
}

/// Errors while wrapping or unwrapping the private key.
#[derive(Debug, thiserror::Error)]
pub enum PrivateKeyWrapError {
    /// The stored string does not have the `ct|iv|salt` shape or its base64 is broken.
    #[error("the stored private key is malformed: {0}")]
    Malformed(&'static str),
    /// No KDF produced a key that authenticates: the mnemonic is wrong (or the stored key was altered).
    #[error("wrong mnemonic: it does not decrypt this account's private key (check the 12 words)")]
    WrongMnemonic,
    /// The decrypted content is not a usable RSA private key.
    #[error("the decrypted private key is unusable: {0}")]
    BadKey(#[from] IdentityError),
}

/// Encrypts the private key under the mnemonic in the current Nextcloud format.
pub fn wrap_private_key(identity: &PrivateIdentity, mnemonic: &Mnemonic) -> String {
    let mut salt = [0u8; SALT_LEN];
    random_bytes(&mut salt);
    let mut iv = [0u8; IV_LEN];
    random_bytes(&mut iv);
    let password = mnemonic.kdf_password();
    let key = PrivateKeyKdf::Sha256Iter600k.derive(password.as_bytes(), &salt);
    let pem = identity.to_pkcs8_pem();
    let plaintext = Zeroizing::new(BASE64.encode(pem.as_bytes()));
    let sealed = gcm::seal(&*key, &iv, plaintext.as_bytes()).expect("AES-256-GCM with valid parameters");
    format!("{}|{}|{}", BASE64.encode(sealed), BASE64.encode(iv), BASE64.encode(salt))
}

/// The three decoded parts of a stored private key.
struct StoredPrivateKey {
    sealed: Vec<u8>,
    iv: Vec<u8>,
    salt: Vec<u8>,
}

fn split_stored(stored: &str) -> Result<StoredPrivateKey, PrivateKeyWrapError> {
    let stored = stored.trim();
    let parts: Vec<&str> =
        if stored.contains('|') { stored.split('|').collect() } else { stored.split("fA==").collect() };
    if parts.len() != 3 {
        return Err(PrivateKeyWrapError::Malformed("expected three parts: ciphertext|iv|salt"));
    }
    let decode = |text: &str, what: &'static str| BASE64.decode(text).map_err(|_| PrivateKeyWrapError::Malformed(what));
    let stored = StoredPrivateKey {
        sealed: decode(parts[0], "ciphertext is not base64")?,
        iv: decode(parts[1], "iv is not base64")?,
        salt: decode(parts[2], "salt is not base64")?,
    };
    if stored.iv.len() != 12 && stored.iv.len() != 16 {
        return Err(PrivateKeyWrapError::Malformed("iv must be 12 or 16 bytes"));
    }
    if stored.sealed.len() <= gcm::TAG_LEN {
        return Err(PrivateKeyWrapError::Malformed("ciphertext is too short"));
    }
    if stored.salt.is_empty() || stored.salt.len() > 1024 {
        return Err(PrivateKeyWrapError::Malformed("salt has an implausible length"));
    }
    Ok(stored)
}

/// Decrypts a stored private key with the mnemonic, trying each known KDF in turn. Returns the key and the
/// KDF that worked (a caller may re-wrap keys found under a legacy KDF).
pub fn unwrap_private_key(
    stored: &str,
    mnemonic: &Mnemonic,
) -> Result<(PrivateIdentity, PrivateKeyKdf), PrivateKeyWrapError> {
    let parts = split_stored(stored)?;
    let password = mnemonic.kdf_password();
    for kdf in PrivateKeyKdf::ALL {
        let key = kdf.derive(password.as_bytes(), &parts.salt);
        let Ok(plaintext) = gcm::open(&*key, &parts.iv, &parts.sealed) else { continue };
        // The plaintext is base64 text of the PEM (older clients: the PEM itself).
        let pem_bytes = match BASE64.decode(plaintext.as_slice()) {
            Ok(decoded) => Zeroizing::new(decoded),
            Err(_) => plaintext,
        };
        let pem = std::str::from_utf8(&pem_bytes).map_err(|_| PrivateKeyWrapError::Malformed("key is not text"))?;
        return Ok((PrivateIdentity::from_pkcs8_pem(pem)?, kdf));
    }
    Err(PrivateKeyWrapError::WrongMnemonic)
}
