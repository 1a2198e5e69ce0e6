//! Names and directory ids: a clear name is encrypted with AES-SIV (RFC 5297; key = MAC key followed by
//! encryption key) with its parent directory's id as associated data, then base64url with `.c9r`; a
//! directory id is found under `d/XX/YYYY…`, the base32 of SHA-1 of the id's AES-SIV encryption (no
//! associated data). Encrypted names longer than the vault's threshold are stored as
//! `base64url(SHA-1(name)).c9s` with the full name inside (`name.c9s`).

use aes_siv::siv::Aes256Siv;
use aes_siv::KeyInit as _;
use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use unicode_normalization::UnicodeNormalization as _;

use super::{CryptomatorError, Masterkey};
use crate::crypto::locked::LockedBytes;

/// The suffix of an encrypted name.
pub const NAME_SUFFIX: &str = ".c9r";
/// The suffix of a shortened entry.
pub const SHORT_SUFFIX: &str = ".c9s";
/// The root directory's id.
pub const ROOT_DIR_ID: &str = "";
/// The longest directory id accepted from a `dir.c9r` (Cryptomator writes 36-character UUIDs).
pub const MAX_DIR_ID_LEN: usize = 128;

/// Encrypts and decrypts names and directory ids of one vault. Holds the SIV key in locked memory.
pub struct NameCryptor {
    /// MAC key followed by encryption key (RFC 5297's K1 || K2).
    siv_key: LockedBytes,
}

impl std::fmt::Debug for NameCryptor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("NameCryptor(..)")
    }
}

impl NameCryptor {
    /// The name cryptor of `masterkey`.
    pub fn new(masterkey: &Masterkey) -> Self {
        let mut siv_key = LockedBytes::zeroed(64);
        siv_key.as_mut_slice()[..32].copy_from_slice(masterkey.mac_key());
        siv_key.as_mut_slice()[32..].copy_from_slice(masterkey.encryption_key());
        Self { siv_key }
    }

    fn siv(&self) -> Aes256Siv {
        Aes256Siv::new(aes_siv::aead::generic_array::GenericArray::from_slice(self.siv_key.as_slice()))
    }

    /// The encrypted form of `clear_name` (normalized to NFC, as Cryptomator does) in the directory
    /// `dir_id`, with `.c9r`.
    pub fn encrypt_name(&self, dir_id: &str, clear_name: &str) -> String {
        let normalized: String = clear_name.nfc().collect();
        let sealed =
            self.siv().encrypt([dir_id.as_bytes()], normalized.as_bytes()).expect("SIV encryption cannot fail");
        format!("{}{NAME_SUFFIX}", URL_SAFE.encode(sealed))
    }

    /// The clear name of `encrypted` (with `.c9r`) in the directory `dir_id`; `path` names the ciphertext
    /// in errors. A name moved from another directory does not authenticate.
    pub fn decrypt_name(&self, dir_id: &str, encrypted: &str, path: &str) -> Result<String, CryptomatorError> {
        let body = encrypted
            .strip_suffix(NAME_SUFFIX)
            .ok_or_else(|| CryptomatorError::malformed(path, "an encrypted name ends in .c9r"))?;
        let sealed = URL_SAFE
            .decode(body)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body))
            .map_err(|_| CryptomatorError::malformed(path, "the name is not base64url"))?;
        if sealed.len() < 16 {
            return Err(CryptomatorError::malformed(path, "the name is shorter than its SIV tag"));
        }
        let clear = self
            .siv()
            .decrypt([dir_id.as_bytes()], &sealed)
            .map_err(|_| CryptomatorError::tampered(path, "the encrypted name"))?;
        let name = String::from_utf8(clear).map_err(|_| CryptomatorError::malformed(path, "the name is not UTF-8"))?;
        if !is_valid_name(&name) {
            return Err(CryptomatorError::malformed(path, "the decrypted name is not a valid file name"));
        }
        Ok(name)
    }

    /// The 32-character base32 hash under which the directory `dir_id`'s entries are stored.
    pub fn dir_hash(&self, dir_id: &str) -> String {
        let no_headers: [&[u8]; 0] = [];
        let sealed = self.siv().encrypt(no_headers, dir_id.as_bytes()).expect("SIV encryption cannot fail");
        base32(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &sealed).as_ref())
    }

    /// The storage path of the directory `dir_id`: `d`, the hash's first two characters, the other 30.
    pub fn dir_path(&self, dir_id: &str) -> Vec<String> {
        let hash = self.dir_hash(dir_id);
        vec!["d".into(), hash[..2].to_owned(), hash[2..].to_owned()]
    }
}

/// The `.c9s` name that stands for `encrypted` (with `.c9r`) when it is longer than the threshold.
pub fn shortened_name(encrypted: &str) -> String {
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, encrypted.as_bytes());
    format!("{}{SHORT_SUFFIX}", URL_SAFE.encode(hash.as_ref()))
}

/// Whether `name` may be a clear name: not empty, not `.` or `..`, no `/` or NUL.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// RFC 4648 base32, upper case, without padding (a SHA-1 of 20 bytes is exactly 32 characters).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer = 0u64;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u64::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cryptor() -> NameCryptor {
        NameCryptor::new(&Masterkey::from_parts(&[1; 32], &[2; 32]))
    }

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(&[0xff; 20]).len(), 32);
    }

    #[test]
    fn aes_siv_matches_rfc_5297_appendix_a_1() {
        // RFC 5297 A.1 uses AES-128 (32-byte key); the 64-byte key of AES-SIV-256 runs the same code path.
        let key = hex::decode("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").unwrap();
        let ad = hex::decode("101112131415161718191a1b1c1d1e1f2021222324252627").unwrap();
        let plaintext = hex::decode("112233445566778899aabbccddee").unwrap();
        let mut siv = aes_siv::siv::Aes128Siv::new(aes_siv::aead::generic_array::GenericArray::from_slice(&key));
        let sealed = siv.encrypt([&ad], &plaintext).unwrap();
        assert_eq!(hex::encode(sealed), "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c");
    }

    /// Known answers computed independently (scripts/cryptomator-kat.py: pycryptodome's AES-SIV, following the
    /// specification): encryption key 00..1f, MAC key 20..3f.
    #[test]
    fn names_and_directory_hashes_match_independently_computed_values() {
        let names = NameCryptor::new(&Masterkey::from_parts(
            &std::array::from_fn(|index| index as u8),
            &std::array::from_fn(|index| 32 + index as u8),
        ));
        let uuid = "8c1b5b9e-1f24-4a5e-9d3e-4f1e2b3c4d5e";
        assert_eq!(names.dir_hash(ROOT_DIR_ID), "MN53XCQH5RFQJPKAFCMWDGELQHPPW2YQ");
        assert_eq!(names.dir_hash(uuid), "ODGT6V7CIUEKZA55JL3VAL52CSHPXEM3");
        assert_eq!(
            names.encrypt_name(ROOT_DIR_ID, "Reports 2026.pdf"),
            "5P-Sb16jODaSk5tejSbSO3_JHAewJp7lxb4TeUqAgbI=.c9r"
        );
        assert_eq!(names.encrypt_name(uuid, "notes.txt"), "aRFRB_zbSPrY8jMyd7OOxXrcz3ULu2pnKw==.c9r");
    }

    #[test]
    fn names_round_trip_in_their_directory_only() {
        let names = cryptor();
        let encrypted = names.encrypt_name("dir-a", "Report 2026.pdf");
        assert!(encrypted.ends_with(".c9r"));
        assert_eq!(names.decrypt_name("dir-a", &encrypted, "d/X/Y/n").unwrap(), "Report 2026.pdf");
        let moved = names.decrypt_name("dir-b", &encrypted, "d/X/Y/n").unwrap_err();
        assert!(matches!(moved, CryptomatorError::Tampered { .. }), "{moved}");
        assert_eq!(names.encrypt_name("dir-a", "cafe\u{301}"), names.encrypt_name("dir-a", "caf\u{e9}"));
    }

    #[test]
    fn directory_paths_are_two_and_thirty_base32_characters() {
        let path = cryptor().dir_path(ROOT_DIR_ID);
        assert_eq!(path[0], "d");
        assert_eq!((path[1].len(), path[2].len()), (2, 30));
        assert_ne!(cryptor().dir_path("other"), path);
    }

    #[test]
    fn shortened_names_are_sha1_base64url() {
        // SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d.
        assert_eq!(
            shortened_name("abc"),
            format!("{}.c9s", URL_SAFE.encode(hex::decode("a9993e364706816aba3e25717850c26c9cd0d89d").unwrap()))
        );
    }
}
