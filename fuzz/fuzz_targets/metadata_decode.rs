//! Fuzzes the whole verifying decoder of a top folder and of a sub-folder: any input must give `Ok` or a
//! typed error, never a panic, a hang or unbounded memory.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use cloakfs::crypto::{MetadataKey, PrivateIdentity, UserCertificate};
use cloakfs::metadata::{decode_sub_folder, decode_top_folder, Reader, ServerKeyTrust, TreeKeys, TrustedUser};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    server: PrivateIdentity,
    user: PrivateIdentity,
    certificate: UserCertificate,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let server = PrivateIdentity::generate().unwrap();
        let user = PrivateIdentity::generate().unwrap();
        let request = user.certificate_request_pem("alice").unwrap();
        let certificate = server.issue_certificate(&request, "alice", Duration::from_secs(86400)).unwrap();
        Fixture { server, user, certificate }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    // Input: metadata JSON, a 0xff byte, then the signature text.
    let (json, signature) = match data.iter().position(|&byte| byte == 0xff) {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (data, &b""[..]),
    };
    let (Ok(json), Ok(signature)) = (std::str::from_utf8(json), std::str::from_utf8(signature)) else { return };
    let trust = ServerKeyTrust { server_key: fixture.server.public_key() };
    let _ = decode_top_folder(json, signature, Reader { user_id: "alice", identity: &fixture.user }, &trust, Some(1));
    let tree = TreeKeys {
        metadata_key: MetadataKey::from_slice(&[7; 16]).unwrap(),
        users: vec![TrustedUser { user_id: "alice".into(), certificate: fixture.certificate.clone() }],
    };
    let _ = decode_sub_folder(json, signature, &tree, None);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(json) {
        let _ = cloakfs::metadata::codec::signed_bytes(&value);
    }
});
