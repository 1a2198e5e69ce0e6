//! Fuzzes what the client makes of an OCS answer: the envelope for any status and body, then the fields
//! it reads from `ocs.data` (lock token, certificates by user, the server key and certificate PEMs).
//! Any input must give `Ok` or a typed error, never a panic.
#![no_main]

use cloakfs::crypto::{PublicKey, UserCertificate};
use cloakfs::storage::nextcloud::ocs::{lock_token_of, parse_ocs, public_keys_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Input: two bytes of HTTP status (big endian), then the body.
    if data.len() < 2 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]);
    let body = String::from_utf8_lossy(&data[2..]);
    let Ok(value) = parse_ocs("fuzz", status, &body) else { return };
    let _ = lock_token_of(&value);
    if let Ok(keys) = public_keys_of(&value) {
        for pem in keys.values() {
            if let Ok(certificate) = UserCertificate::from_pem(pem) {
                let _ = certificate.common_name();
            }
        }
    }
    for field in ["public-key", "meta-data", "private-key"] {
        if let Some(text) = value.get(field).and_then(|field| field.as_str()) {
            let _ = PublicKey::from_pem(text);
            let _ = UserCertificate::from_pem(text);
        }
    }
});
