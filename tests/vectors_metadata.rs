//! Nextcloud's metadata 2.0 vectors: key unwrap, decryption, signatures, trust, rollback.

mod common;

use cloakfs::crypto::cms_signature::{verify_detached, SignatureError};
use cloakfs::crypto::{PrivateIdentity, PublicKey, UserCertificate};
use cloakfs::metadata::codec::{decrypt_block_to_json, signed_bytes};
use cloakfs::metadata::{
    decode_sub_folder, decode_top_folder, DecodedTopFolder, MetadataDocument, MetadataError, Reader, ServerKeyTrust,
};
use common::{b64, text, v2};
use serde_json::Value;

fn identity(vectors: &Value, user: &str) -> PrivateIdentity {
    PrivateIdentity::from_pkcs8_pem(text(vectors, &format!("/users/{user}/expected_private_key_pem"))).unwrap()
}

fn server_key(vectors: &Value, name: &str) -> PublicKey {
    PublicKey::from_pem(text(vectors, &format!("/server_public_key_pem/{name}"))).unwrap()
}

fn decode_root_as(vectors: &Value, user: &str, user_id: &str, json: &str) -> Result<DecodedTopFolder, MetadataError> {
    let identity = identity(vectors, user);
    let key = server_key(vectors, "consts");
    decode_top_folder(
        json,
        text(vectors, "/root_folder_metadata_signature_b64"),
        Reader { user_id, identity: &identity },
        &ServerKeyTrust { server_key: &key },
        None,
    )
}

#[test]
fn the_metadata_key_unwraps_for_admin_and_alice_but_not_bob() {
    let vectors = v2();
    let document: MetadataDocument = serde_json::from_value(vectors["root_folder_metadata"].clone()).unwrap();
    let users = document.users.unwrap();
    for user in users {
        let holder = if user.user_id == "admin" { "admin" } else { "alice" };
        let key = identity(&vectors, holder).unwrap_metadata_key(&b64(&user.encrypted_metadata_key)).unwrap();
        assert_eq!(&*key.to_base64(), text(&vectors, "/root_metadata_key_b64"));
        assert_eq!(key.sha256_hex(), text(&vectors, "/root_metadata_key_sha256_hex"));
        assert!(identity(&vectors, "bob").unwrap_metadata_key(&b64(&user.encrypted_metadata_key)).is_err());
    }
}

#[test]
fn root_folder_decodes_byte_for_byte_and_verifies_with_admin() {
    let vectors = v2();
    let json = text(&vectors, "/root_folder_metadata_json");
    for (user, user_id) in [("admin", "admin"), ("alice", "alice")] {
        let top = decode_root_as(&vectors, user, user_id, json).unwrap();
        assert_eq!(top.decoded.signed_by, "admin");
        let signed_at = top.decoded.signed_at.unwrap();
        assert_eq!(signed_at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 1_736_178_361); // 2025-01-06T15:46:01Z
        let folder = &top.decoded.folder;
        assert_eq!(folder.counter, 5);
        assert_eq!(folder.deleted, None, "no deleted field in this fixture");
        assert_eq!(&*folder.files["ad3b12554e0d4364854ae3e21b170152"].filename, "test.txt");
        assert_eq!(folder.files["ad3b12554e0d4364854ae3e21b170152"].mimetype, "text/plain");
        assert_eq!(&*folder.folders["fa666d819a6c4315abba421172f0a0b1"], "Test");
        assert_eq!(folder.key_checksums.as_ref().unwrap().len(), 2);
        assert_eq!(&*top.tree.metadata_key.to_base64(), text(&vectors, "/root_metadata_key_b64"));
        let plaintext = decrypt_block_to_json(&top.decoded.document.metadata, &top.tree.metadata_key).unwrap();
        assert_eq!(std::str::from_utf8(&plaintext).unwrap(), text(&vectors, "/root_folder_expected_plaintext_json"));
    }
}

#[test]
fn a_user_not_in_the_folder_has_no_access() {
    let vectors = v2();
    let result = decode_root_as(&vectors, "bob", "bob", text(&vectors, "/root_folder_metadata_json"));
    assert!(matches!(result, Err(MetadataError::NoAccess { .. })), "{result:?}");
}

#[test]
fn a_reader_whose_key_differs_from_its_listed_certificate_is_refused() {
    let vectors = v2();
    // Bob's key presented as "alice": the certificate listed for alice is not bob's key.
    let result = decode_root_as(&vectors, "bob", "alice", text(&vectors, "/root_folder_metadata_json"));
    assert!(matches!(result, Err(MetadataError::NotOurKey { .. })), "{result:?}");
}

#[test]
fn certificates_from_another_server_key_are_untrusted() {
    let vectors = v2();
    let identity = identity(&vectors, "admin");
    let wrong = server_key(&vectors, "fixtures_server");
    let result = decode_top_folder(
        text(&vectors, "/root_folder_metadata_json"),
        text(&vectors, "/root_folder_metadata_signature_b64"),
        Reader { user_id: "admin", identity: &identity },
        &ServerKeyTrust { server_key: &wrong },
        None,
    );
    assert!(matches!(result, Err(MetadataError::UntrustedCertificate { .. })), "{result:?}");
}

#[test]
fn the_signature_covers_re_serialised_sorted_json_not_the_received_text() {
    let vectors = v2();
    // Reverse every object's key order and add whitespace: the signature must still verify.
    fn reversed(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let entries: Vec<String> = map
                    .iter()
                    .rev()
                    .map(|(key, item)| format!("{} : {}", serde_json::to_string(key).unwrap(), reversed(item)))
                    .collect();
                format!("{{\n  {}\n}}", entries.join(" ,\n  "))
            }
            Value::Array(items) => format!("[ {} ]", items.iter().map(reversed).collect::<Vec<_>>().join(" , ")),
            other => other.to_string(),
        }
    }
    let original: Value = serde_json::from_str(text(&vectors, "/root_folder_metadata_json")).unwrap();
    let reordered = reversed(&original);
    assert_ne!(reordered, text(&vectors, "/root_folder_metadata_json"));
    assert!(reordered.find("\"version\"").unwrap() < reordered.find("\"metadata\"").unwrap());
    let top = decode_root_as(&vectors, "admin", "admin", &reordered).unwrap();
    assert_eq!(top.decoded.folder.counter, 5);
    assert_eq!(signed_bytes(&original).unwrap(), text(&vectors, "/root_folder_signed_data_b64"));
}

#[test]
fn signatures_fail_after_a_one_byte_change_or_with_the_wrong_certificate() {
    let vectors = v2();
    let admin = UserCertificate::from_pem(text(&vectors, "/users/admin/certificate_pem")).unwrap();
    let alice = UserCertificate::from_pem(text(&vectors, "/users/alice/certificate_pem")).unwrap();
    for folder in ["root_folder", "sub_folder"] {
        let signature = b64(text(&vectors, &format!("/{folder}_metadata_signature_b64")));
        let signed = text(&vectors, &format!("/{folder}_signed_data_b64")).as_bytes().to_vec();
        verify_detached(&signature, &signed, &[&admin]).unwrap();
        assert_eq!(verify_detached(&signature, &signed, &[&alice, &admin]).unwrap().signer_index, 1);
        assert!(matches!(verify_detached(&signature, &signed, &[&alice]), Err(SignatureError::UnknownSigner)));
        let mut changed = signed.clone();
        changed[10] ^= 1;
        assert!(matches!(verify_detached(&signature, &changed, &[&admin]), Err(SignatureError::DigestMismatch)));
        let mut bad_signature = signature.clone();
        let last = bad_signature.len() - 1;
        bad_signature[last] ^= 1;
        assert!(verify_detached(&bad_signature, &signed, &[&admin]).is_err());
    }
    // Changing the version inside the document breaks the root signature.
    let mut document: Value = serde_json::from_str(text(&vectors, "/root_folder_metadata_json")).unwrap();
    document["version"] = Value::String("2.1".into());
    let result = decode_root_as(&vectors, "admin", "admin", &document.to_string());
    assert!(matches!(result, Err(MetadataError::Signature(SignatureError::DigestMismatch))), "{result:?}");
}

#[test]
fn sub_folder_decodes_with_the_root_key_and_root_signers() {
    let vectors = v2();
    let top = decode_root_as(&vectors, "admin", "admin", text(&vectors, "/root_folder_metadata_json")).unwrap();
    let sub = decode_sub_folder(
        text(&vectors, "/sub_folder_metadata_json"),
        text(&vectors, "/sub_folder_metadata_signature_b64"),
        &top.tree,
        Some(5),
    )
    .unwrap();
    assert_eq!(sub.signed_by, "admin");
    assert_eq!(sub.folder.counter, 5);
    assert!(sub.folder.key_checksums.is_none());
    let mut names: Vec<&str> = sub.folder.files.values().map(|file| file.filename.as_str()).collect();
    names.sort();
    assert_eq!(names, ["07-09-2018 11.40.15.jpg", "subtest.txt", "test.txt"]);
    let plaintext = decrypt_block_to_json(&sub.document.metadata, &top.tree.metadata_key).unwrap();
    assert_eq!(std::str::from_utf8(&plaintext).unwrap(), text(&vectors, "/sub_folder_expected_plaintext_json"));
    // The sub folder's clear name comes from the root's folders map.
    assert_eq!(
        &*top.decoded.folder.folders[text(&vectors, "/sub_folder_uid")],
        text(&vectors, "/sub_folder_cleartext_name")
    );
    // Its signature does not verify under the root's signature (swapped documents are caught).
    let swapped = decode_sub_folder(
        text(&vectors, "/sub_folder_metadata_json"),
        text(&vectors, "/root_folder_metadata_signature_b64"),
        &top.tree,
        None,
    );
    assert!(matches!(swapped, Err(MetadataError::Signature(SignatureError::DigestMismatch))), "{swapped:?}");
}

#[test]
fn an_older_counter_than_last_seen_is_a_rollback() {
    let vectors = v2();
    let identity = identity(&vectors, "admin");
    let key = server_key(&vectors, "consts");
    let reader = Reader { user_id: "admin", identity: &identity };
    let trust = ServerKeyTrust { server_key: &key };
    let json = text(&vectors, "/root_folder_metadata_json");
    let signature = text(&vectors, "/root_folder_metadata_signature_b64");
    assert!(decode_top_folder(json, signature, reader, &trust, Some(5)).is_ok());
    let result = decode_top_folder(json, signature, reader, &trust, Some(6));
    assert!(matches!(result, Err(MetadataError::RolledBack { last_seen: 6, received: 5 })), "{result:?}");
}

#[test]
fn legacy_1_2_metadata_is_refused_naming_its_version() {
    let legacy = common::v1_2();
    let json = text(&legacy, "/metadata_json");
    let result = decode_root_as(&v2(), "admin", "admin", json);
    match result {
        Err(error @ MetadataError::LegacyVersion(_)) => {
            assert!(error.to_string().contains("1.2"), "{error}");
        }
        other => panic!("expected LegacyVersion, got {other:?}"),
    }
}
