//! Fuzzes what a hostile server controls in a Cryptomator vault: the configuration (JWT), the masterkey
//! file, encrypted names, file contents (headers and chunks) in both cipher combinations, the sizes it
//! lists. Whatever the input, parsing and decryption return an error or a value, never panic; a forged
//! content never decrypts (the key is fixed here and the input cannot know it).
#![no_main]

use cloakfs::cryptomator::config::UnverifiedConfig;
use cloakfs::cryptomator::{CipherCombo, ContentCryptor, Masterkey, MasterkeyFile, NameCryptor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let masterkey = Masterkey::from_parts(&[0x11; 32], &[0x22; 32]);
    match selector % 5 {
        0 => {
            if let Ok(config) = UnverifiedConfig::parse(rest) {
                let _ = config.masterkey_file();
                let _ = config.claimed_format();
                assert!(config.verify(&masterkey).is_err(), "a forged configuration verified");
            }
        }
        1 => {
            // Parsing only: unlocking runs scrypt, whose cost the parser bounds (tested in the library).
            let _ = MasterkeyFile::parse(rest, "masterkey.cryptomator");
        }
        2 => {
            let names = NameCryptor::new(&masterkey);
            let text = String::from_utf8_lossy(rest);
            let (dir_id, name) = text.split_once('/').unwrap_or(("", &text));
            assert!(names.decrypt_name(dir_id, name, "fuzz").is_err(), "a forged name decrypted");
        }
        combo => {
            let combo = if combo == 3 { CipherCombo::SivGcm } else { CipherCombo::SivCtrMac };
            let content = ContentCryptor::new(&masterkey, combo);
            let size = u64::from_le_bytes(rest.get(..8).and_then(|bytes| bytes.try_into().ok()).unwrap_or([0; 8]));
            let _ = content.cleartext_size(size, "fuzz");
            let _ = content.ciphertext_size(size >> 8);
            if content.decrypt_header(rest, "fuzz").is_ok() {
                panic!("a forged header decrypted");
            }
            assert!(rest.len() < content.header_len() || content.decrypt_file(rest, "fuzz").is_err());
        }
    }
});
