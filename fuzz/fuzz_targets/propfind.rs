//! Fuzzes the PROPFIND multistatus parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = cloakfs::storage::webdav::propfind::parse_multistatus(data) {
        for entry in entries {
            let _ = entry.name();
        }
    }
});
