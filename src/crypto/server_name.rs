//! Server-side names: what the server sees instead of a file or folder name.

use super::secret::random_bytes;

/// A fresh random server-side name: a UUIDv4 as 32 lowercase hex digits, no dashes (Nextcloud's form).
pub fn random_server_name() -> String {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    hex::encode(bytes)
}

/// Whether `name` is a valid server-side name: exactly 32 hex digits. Anything else (a path separator,
/// `..`, a suffix like `.e2e-to-save`) is refused before it reaches a URL or a file system.
pub fn is_server_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// A fresh random UUIDv4 in its usual form, `8-4-4-4-12` lowercase hex digits (Cryptomator's directory ids
/// and vault ids).
pub fn random_uuid() -> String {
    let hex = random_server_name();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}
