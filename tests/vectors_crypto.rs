//! Nextcloud's own test vectors, checked against cloakfs's crypto layer.

mod common;

use cloakfs::crypto::file_cipher::{decrypt_to_vec, FileCipherError};
use cloakfs::crypto::private_key_wrap::{unwrap_private_key, PrivateKeyKdf, PrivateKeyWrapError};
use cloakfs::crypto::{FileKey, Mnemonic, Nonce, PrivateIdentity, PublicKey, UserCertificate};
use common::{b64, text, v2};

fn kdf_named(name: &str) -> PrivateKeyKdf {
    match name {
        "pbkdf2-sha256-600000" => PrivateKeyKdf::Sha256Iter600k,
        "pbkdf2-sha1-1024" => PrivateKeyKdf::Sha1Iter1024,
        "pbkdf2-sha1-600000" => PrivateKeyKdf::Sha1Iter600k,
        other => panic!("unknown KDF {other}"),
    }
}

const USERS: [&str; 4] = ["admin", "alice", "alice_v2", "bob"];

#[test]
fn kdf_password_is_lowercased_words_without_whitespace() {
    let vectors = v2();
    for user in USERS {
        let mnemonic = Mnemonic::parse(text(&vectors, &format!("/users/{user}/mnemonic"))).unwrap();
        assert_eq!(&*mnemonic.kdf_password(), text(&vectors, &format!("/users/{user}/kdf_password")), "{user}");
        // Upper case, extra whitespace and 4-letter prefixes give the same password.
        let typed: Vec<String> =
            mnemonic.phrase().split(' ').map(|word| word.chars().take(4).collect::<String>().to_uppercase()).collect();
        let retyped = Mnemonic::parse(&format!("  {}\t\n", typed.join("   "))).unwrap();
        assert_eq!(*retyped.kdf_password(), *mnemonic.kdf_password(), "{user} typed as prefixes");
    }
}

#[test]
fn each_kdf_derives_the_expected_key() {
    let vectors = v2();
    for user in USERS {
        let kdf = kdf_named(text(&vectors, &format!("/users/{user}/expected_kdf")));
        let salt = b64(text(&vectors, &format!("/users/{user}/encrypted_private_key/salt_b64")));
        let password = text(&vectors, &format!("/users/{user}/kdf_password"));
        let key = kdf.derive(password.as_bytes(), &salt);
        assert_eq!(hex::encode(*key), text(&vectors, &format!("/users/{user}/expected_derived_key_hex")), "{user}");
    }
}

#[test]
fn private_keys_unwrap_with_the_right_kdf_and_match_their_certificates() {
    let vectors = v2();
    for user in USERS {
        let mnemonic = Mnemonic::parse(text(&vectors, &format!("/users/{user}/mnemonic"))).unwrap();
        let stored = text(&vectors, &format!("/users/{user}/server_private_key_string"));
        let (identity, kdf) = unwrap_private_key(stored, &mnemonic).unwrap();
        assert_eq!(kdf, kdf_named(text(&vectors, &format!("/users/{user}/expected_kdf"))), "{user}");
        let expected =
            PrivateIdentity::from_pkcs8_pem(text(&vectors, &format!("/users/{user}/expected_private_key_pem")))
                .unwrap();
        assert_eq!(*identity.to_pkcs8_pem(), *expected.to_pkcs8_pem(), "{user}");
        let certificate = UserCertificate::from_pem(text(&vectors, &format!("/users/{user}/certificate_pem"))).unwrap();
        assert!(identity.matches_certificate(&certificate), "{user}");
        // The KDFs listed as failing must indeed fail the GCM check.
        for wrong in vectors.pointer(&format!("/users/{user}/kdfs_that_must_fail")).unwrap().as_array().unwrap() {
            let kdf = kdf_named(wrong.as_str().unwrap());
            let salt = b64(text(&vectors, &format!("/users/{user}/encrypted_private_key/salt_b64")));
            let key = kdf.derive(mnemonic.kdf_password().as_bytes(), &salt);
            let iv = b64(text(&vectors, &format!("/users/{user}/encrypted_private_key/iv_b64")));
            let sealed = b64(text(&vectors, &format!("/users/{user}/encrypted_private_key/ciphertext_b64")));
            assert!(cloakfs::crypto::gcm::open(&*key, &iv, &sealed).is_err(), "{user}: {kdf:?} must fail");
        }
    }
}

#[test]
fn a_wrong_mnemonic_is_reported_as_such() {
    let vectors = v2();
    let stored = text(&vectors, "/users/bob/server_private_key_string");
    let alice = Mnemonic::parse(text(&vectors, "/users/alice_v2/mnemonic")).unwrap();
    assert!(matches!(unwrap_private_key(stored, &alice), Err(PrivateKeyWrapError::WrongMnemonic)));
}

#[test]
fn the_old_fa_separator_is_accepted() {
    let vectors = v2();
    let stored = text(&vectors, "/users/admin/server_private_key_string").replace('|', "fA==");
    let mnemonic = Mnemonic::parse(text(&vectors, "/users/admin/mnemonic")).unwrap();
    let (_, kdf) = unwrap_private_key(&stored, &mnemonic).unwrap();
    assert_eq!(kdf, PrivateKeyKdf::Sha1Iter1024);
}

#[test]
fn certificates_have_nextcloud_shape_and_verify_only_against_their_server_key() {
    let vectors = v2();
    for user in USERS {
        let certificate = UserCertificate::from_pem(text(&vectors, &format!("/users/{user}/certificate_pem"))).unwrap();
        let facts = vectors.pointer(&format!("/users/{user}/certificate_facts")).unwrap();
        assert_eq!(certificate.common_name().as_deref(), facts["subject_cn"].as_str());
        let tbs = &certificate.certificate().tbs_certificate;
        assert_eq!(tbs.issuer, tbs.subject, "{user}: issuer == subject");
        assert_eq!(tbs.serial_number.as_bytes(), &[0u8], "{user}: serial 0");
    }
    let trust = vectors["certificate_trust"].as_array().unwrap();
    assert_eq!(trust.len(), 8);
    for case in trust {
        let certificate_path = format!("/{}", case["certificate"].as_str().unwrap().replace('.', "/"));
        let server_path = format!("/{}", case["server_key"].as_str().unwrap().replace('.', "/"));
        let certificate = UserCertificate::from_pem(text(&vectors, &certificate_path)).unwrap();
        let server_key = PublicKey::from_pem(text(&vectors, &server_path)).unwrap();
        let expect_valid = case["expect_valid"].as_bool().unwrap();
        assert_eq!(certificate.verify_issued_by(&server_key).is_ok(), expect_valid, "{case}");
    }
}

#[test]
fn sha1_and_sha256_signed_certificates_verify_and_swapped_server_keys_fail() {
    let vectors = v2();
    let pairs = vectors["certificate_signature_vectors"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    let load = |pair: &serde_json::Value| {
        (
            UserCertificate::from_pem(pair["certificate_pem"].as_str().unwrap()).unwrap(),
            PublicKey::from_pem(pair["server_public_key_pem"].as_str().unwrap()).unwrap(),
        )
    };
    let (first_certificate, first_key) = load(&pairs[0]);
    let (second_certificate, second_key) = load(&pairs[1]);
    first_certificate.verify_for_user(&first_key, pairs[0]["subject_cn"].as_str().unwrap()).unwrap();
    second_certificate.verify_for_user(&second_key, pairs[1]["subject_cn"].as_str().unwrap()).unwrap();
    assert!(first_certificate.verify_issued_by(&second_key).is_err());
    assert!(second_certificate.verify_issued_by(&first_key).is_err());
    assert!(first_certificate.verify_for_user(&first_key, "someone-else").is_err());
}

#[test]
fn the_file_decrypts_to_test_content_and_a_changed_tag_fails() {
    let vectors = v2();
    let key = FileKey::from_base64(text(&vectors, "/file/key_b64")).unwrap();
    let nonce = Nonce::from_base64(text(&vectors, "/file/nonce_b64")).unwrap();
    assert_eq!(nonce.as_bytes().len(), 16);
    let blob = b64(text(&vectors, "/file/encrypted_content_b64"));
    assert_eq!(blob.len(), 29);
    let tag: [u8; 16] = b64(text(&vectors, "/file/authentication_tag_b64")).try_into().unwrap();
    assert_eq!(&blob[13..], &tag, "the appended tag equals the metadata tag");
    let plaintext = decrypt_to_vec(&key, &nonce, Some(&tag), blob.as_slice()).unwrap();
    assert_eq!(plaintext.as_slice(), b"test content\n");

    let mut altered = blob.clone();
    altered[28] ^= 1;
    assert!(matches!(decrypt_to_vec(&key, &nonce, None, altered.as_slice()), Err(FileCipherError::Authentication(_))));
    assert!(matches!(
        decrypt_to_vec(&key, &nonce, Some(&tag), altered.as_slice()),
        Err(FileCipherError::TagDiffersFromMetadata)
    ));
}

#[test]
fn key_checksum_vector() {
    let vectors = v2();
    let key = cloakfs::crypto::MetadataKey::from_base64(text(&vectors, "/key_checksum_vector/key_b64")).unwrap();
    assert_eq!(key.sha256_hex(), text(&vectors, "/key_checksum_vector/sha256_hex"));
}
