//! Fuzzes what follows a successful GCM check: decompression (with its bomb limit), inner JSON parsing and
//! entry validation. The input is sealed under a fixed key so that the fuzzer reaches past authentication.
#![no_main]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use cloakfs::crypto::gcm;
use cloakfs::crypto::MetadataKey;
use cloakfs::metadata::codec::decrypt_block;
use cloakfs::metadata::EncryptedBlock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = MetadataKey::from_slice(&[3; 16]).unwrap();
    let nonce = [5u8; 12];
    let sealed = gcm::seal(key.as_bytes(), &nonce, data).unwrap();
    let block = EncryptedBlock {
        ciphertext: BASE64.encode(&sealed),
        nonce: BASE64.encode(nonce),
        authentication_tag: BASE64.encode(&sealed[sealed.len() - 16..]),
        unknown: Default::default(),
    };
    if let Ok(folder) = decrypt_block(&block, &key) {
        // Whatever parsed must encode again.
        let _ = cloakfs::metadata::codec::encrypt_block(&folder, &key).unwrap();
    }
});
