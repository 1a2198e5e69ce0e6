//! Round trips of metadata we produce, and every way a server could hand us bad metadata.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use cloakfs::crypto::cms_signature::SignatureError;
use cloakfs::crypto::{FileKey, MetadataKey, Nonce, PrivateIdentity, UserCertificate};
use cloakfs::metadata::canonical_json::to_canonical_string;
use cloakfs::metadata::codec::{check_key_history, decrypt_block, encrypt_block, sign_document, MAX_DOCUMENT_LEN};
use cloakfs::metadata::{
    decode_sub_folder, decode_top_folder, encode_sub_folder, encode_top_folder, EncryptedBlock, FileEntry,
    FolderMetadata, MetadataDocument, MetadataError, Reader, ServerKeyTrust, Signer, TrustedUser,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use zeroize::Zeroizing;

struct Party {
    user_id: &'static str,
    identity: PrivateIdentity,
    certificate: UserCertificate,
}

struct World {
    server: PrivateIdentity,
    alice: Party,
    bob: Party,
    /// Same server, but not a member of the folder.
    mallory: Party,
    /// A certificate for "alice" from another server key.
    foreign_alice: Party,
}

fn party(server: &PrivateIdentity, user_id: &'static str) -> Party {
    let identity = PrivateIdentity::generate().unwrap();
    let request = identity.certificate_request_pem(user_id).unwrap();
    let certificate = server.issue_certificate(&request, user_id, Duration::from_secs(86400)).unwrap();
    Party { user_id, identity, certificate }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let server = PrivateIdentity::generate().unwrap();
        let other_server = PrivateIdentity::generate().unwrap();
        World {
            alice: party(&server, "alice"),
            bob: party(&server, "bob"),
            mallory: party(&server, "mallory"),
            foreign_alice: party(&other_server, "alice"),
            server,
        }
    })
}

impl Party {
    fn trusted(&self) -> TrustedUser {
        TrustedUser { user_id: self.user_id.into(), certificate: self.certificate.clone() }
    }
    fn signer(&self) -> Signer<'_> {
        Signer { identity: &self.identity, certificate: &self.certificate }
    }
    fn reader(&self) -> Reader<'_> {
        Reader { user_id: self.user_id, identity: &self.identity }
    }
}

fn file_entry(name: &str) -> FileEntry {
    FileEntry {
        filename: Zeroizing::new(name.into()),
        mimetype: "text/plain".into(),
        key: FileKey::generate(),
        nonce: Nonce::generate(),
        authentication_tag: [9; 16],
        unknown: Default::default(),
    }
}

fn sample_folder(counter: u64) -> FolderMetadata {
    let mut folder = FolderMetadata { counter, ..Default::default() };
    folder.files.insert(cloakfs::crypto::server_name::random_server_name(), file_entry("Reisepass scan.pdf"));
    folder.files.insert(cloakfs::crypto::server_name::random_server_name(), file_entry("ümlaut & \"quotes\" 東京.txt"));
    folder.folders.insert(cloakfs::crypto::server_name::random_server_name(), Zeroizing::new("Steuern 2026".into()));
    folder
}

fn decode_as(party: &Party, json: &str, signature: &str) -> Result<cloakfs::metadata::DecodedTopFolder, MetadataError> {
    let trust = ServerKeyTrust { server_key: world().server.public_key() };
    decode_top_folder(json, signature, party.reader(), &trust, None)
}

#[test]
fn top_and_sub_folder_round_trip_for_every_member() {
    let world = world();
    let key = MetadataKey::generate();
    let folder = sample_folder(1);
    let users = [world.alice.trusted(), world.bob.trusted()];
    let encoded = encode_top_folder(&folder, &key, &users, None, world.alice.signer()).unwrap();
    for reader in [&world.alice, &world.bob] {
        let top = decode_as(reader, &encoded.json, &encoded.signature_base64).unwrap();
        assert_eq!(top.decoded.signed_by, "alice");
        assert_eq!(top.tree.metadata_key, key);
        assert_eq!(top.decoded.folder.files, folder.files);
        assert_eq!(top.decoded.folder.folders, folder.folders);
        assert_eq!(top.decoded.folder.key_checksums, Some(vec![key.sha256_hex()]));
        assert_eq!(top.decoded.document.version, json!("2.0"));
        // Sub-folder, signed by bob, readable with the tree's keys.
        let sub = sample_folder(3);
        let encoded_sub = encode_sub_folder(&sub, &key, None, world.bob.signer()).unwrap();
        let document: Value = serde_json::from_str(&encoded_sub.json).unwrap();
        assert!(document.get("users").is_none(), "sub-folders carry no users");
        let decoded = decode_sub_folder(&encoded_sub.json, &encoded_sub.signature_base64, &top.tree, Some(3)).unwrap();
        assert_eq!(decoded.folder, sub);
        assert_eq!(decoded.signed_by, "bob");
    }
    // Mallory, not a member, has no access.
    assert!(matches!(
        decode_as(&world.mallory, &encoded.json, &encoded.signature_base64),
        Err(MetadataError::NoAccess { .. })
    ));
}

#[test]
fn what_we_write_has_the_nextcloud_shape() {
    let world = world();
    let key = MetadataKey::generate();
    let encoded =
        encode_top_folder(&sample_folder(1), &key, &[world.alice.trusted()], None, world.alice.signer()).unwrap();
    let document: Value = serde_json::from_str(&encoded.json).unwrap();
    assert_eq!(to_canonical_string(&document), encoded.json, "written compact with sorted keys");
    let block = &document["metadata"];
    let ciphertext = block["ciphertext"].as_str().unwrap();
    let (sealed, suffix) = ciphertext.split_once('|').unwrap();
    assert_eq!(suffix, block["nonce"].as_str().unwrap(), "ciphertext carries the |nonce suffix");
    let sealed = BASE64.decode(sealed).unwrap();
    assert_eq!(BASE64.encode(&sealed[sealed.len() - 16..]), block["authenticationTag"].as_str().unwrap());
    assert_eq!(BASE64.decode(block["nonce"].as_str().unwrap()).unwrap().len(), 12);
    let user = &document["users"][0];
    assert_eq!(user["userId"], "alice");
    assert!(user["certificate"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(BASE64.decode(user["encryptedMetadataKey"].as_str().unwrap()).unwrap().len(), 256);
    // The inner plaintext is gzip of JSON with Nextcloud's field names.
    let decrypted = cloakfs::metadata::codec::decrypt_block_to_json(
        &serde_json::from_value::<EncryptedBlock>(block.clone()).unwrap(),
        &key,
    )
    .unwrap();
    let inner: Value = serde_json::from_slice(&decrypted).unwrap();
    let file = inner["files"].as_object().unwrap().values().next().unwrap();
    for field in ["filename", "mimetype", "key", "nonce", "authenticationTag"] {
        assert!(file.get(field).is_some(), "file entry field {field}");
    }
    assert_eq!(inner["counter"], 1);
    assert!(inner["keyChecksums"].is_array());
}

#[test]
fn filedrop_and_unknown_fields_survive_a_rewrite() {
    let world = world();
    let key = MetadataKey::generate();
    let mut folder = sample_folder(1);
    folder.unknown.insert("futureInner".into(), json!({"x": [1, 2]}));
    let first = encode_top_folder(&folder, &key, &[world.alice.trusted()], None, world.alice.signer()).unwrap();
    // Another client adds a filedrop entry and a new top-level field and a per-user field.
    let mut document: Value = serde_json::from_str(&first.json).unwrap();
    document["filedrop"] = json!({"0123456789abcdef0123456789abcdef": {"ciphertext": "AAAA", "nonce": "BBBB", "authenticationTag": "CCCC", "users": [{"userId": "alice", "encryptedFiledropKey": "DDDD"}]}});
    document["futureOuter"] = json!("kept");
    document["users"][0]["futureUser"] = json!(true);
    let previous: MetadataDocument = serde_json::from_value(document.clone()).unwrap();
    // Re-sign as the other client would (filedrop is outside the signature).
    let resigned = sign_document(&previous, world.alice.signer()).unwrap();
    let top = decode_as(&world.alice, &resigned.json, &resigned.signature_base64).unwrap();
    assert_eq!(top.decoded.folder.unknown["futureInner"], json!({"x": [1, 2]}));
    // cloakfs rewrites the folder: everything it does not understand is still there.
    let mut changed = top.decoded.folder.clone();
    changed.counter += 1;
    let rewritten =
        encode_top_folder(&changed, &key, &top.tree.users, Some(&top.decoded.document), world.alice.signer()).unwrap();
    let after: Value = serde_json::from_str(&rewritten.json).unwrap();
    assert_eq!(after["filedrop"], document["filedrop"]);
    assert_eq!(after["futureOuter"], "kept");
    assert_eq!(after["users"][0]["futureUser"], true);
    let decoded = decode_as(&world.alice, &rewritten.json, &rewritten.signature_base64).unwrap();
    assert_eq!(decoded.decoded.folder.unknown["futureInner"], json!({"x": [1, 2]}));
    assert_eq!(decoded.decoded.folder.counter, 2);
    // A server that changes the filedrop section does not break the signature (it is not signed)...
    let mut with_other_filedrop = after.clone();
    with_other_filedrop["filedrop"] = json!({});
    assert!(decode_as(&world.alice, &with_other_filedrop.to_string(), &rewritten.signature_base64).is_ok());
}

fn resign_tampered(world: &World, mutate: impl FnOnce(&mut Value)) -> (String, String) {
    let key = MetadataKey::generate();
    let encoded = encode_top_folder(
        &sample_folder(1),
        &key,
        &[world.alice.trusted(), world.bob.trusted()],
        None,
        world.alice.signer(),
    )
    .unwrap();
    let mut document: Value = serde_json::from_str(&encoded.json).unwrap();
    mutate(&mut document);
    (document.to_string(), encoded.signature_base64)
}

#[test]
fn a_server_that_edits_signed_fields_is_caught() {
    let world = world();
    // Flip one character of the ciphertext, drop a user, swap a wrapped key, change the version.
    type Mutation = Box<dyn Fn(&mut Value)>;
    let mutations: Vec<Mutation> = vec![
        Box::new(|document| {
            let text = document["metadata"]["ciphertext"].as_str().unwrap().to_owned();
            let flipped = match text.strip_prefix('A') {
                Some(rest) => format!("B{rest}"),
                None => format!("A{}", &text[1..]),
            };
            document["metadata"]["ciphertext"] = Value::String(flipped);
        }),
        Box::new(|document| {
            document["users"].as_array_mut().unwrap().pop();
        }),
        Box::new(|document| {
            let first = document["users"][0]["encryptedMetadataKey"].clone();
            document["users"][1]["encryptedMetadataKey"] = first;
        }),
    ];
    for mutate in mutations {
        let (json, signature) = resign_tampered(world, mutate);
        let result = decode_as(&world.alice, &json, &signature);
        assert!(matches!(result, Err(MetadataError::Signature(SignatureError::DigestMismatch))), "{result:?}");
    }
}

#[test]
fn a_server_chosen_key_wrapped_to_the_user_is_refused() {
    // The server encrypts its own metadata under its own key, wraps that key to alice and signs as a user
    // it certified itself (mallory), who is not a member of the folder.
    let world = world();
    let server_key = MetadataKey::generate();
    let forged = encode_top_folder(
        &sample_folder(99),
        &server_key,
        &[world.alice.trusted(), world.bob.trusted()],
        None,
        world.mallory.signer(),
    )
    .unwrap();
    let result = decode_as(&world.alice, &forged.json, &forged.signature_base64);
    assert!(matches!(result, Err(MetadataError::Signature(SignatureError::UnknownSigner))), "{result:?}");
    // With a certificate for "alice" from a key other than the pinned server key: untrusted.
    let foreign = encode_top_folder(
        &sample_folder(1),
        &server_key,
        &[world.foreign_alice.trusted()],
        None,
        world.foreign_alice.signer(),
    )
    .unwrap();
    let result = decode_as(&world.alice, &foreign.json, &foreign.signature_base64);
    assert!(matches!(result, Err(MetadataError::UntrustedCertificate { .. })), "{result:?}");
    // A legitimately signed document whose inner checksum list does not hold its key.
    let key = MetadataKey::generate();
    let mut folder = sample_folder(1);
    folder.key_checksums = Some(vec!["00".repeat(32)]);
    let document = MetadataDocument {
        metadata: encrypt_block(&folder, &key).unwrap(),
        users: Some(vec![cloakfs::metadata::MetadataUser {
            user_id: "alice".into(),
            certificate: world.alice.certificate.to_pem(),
            encrypted_metadata_key: world.alice.certificate.wrap_metadata_key_base64(&key).unwrap(),
            unknown: Default::default(),
        }]),
        filedrop: None,
        version: json!("2.0"),
        unknown: Default::default(),
    };
    let signed = sign_document(&document, world.alice.signer()).unwrap();
    let result = decode_as(&world.alice, &signed.json, &signed.signature_base64);
    assert!(matches!(result, Err(MetadataError::KeyNotInChecksums)), "{result:?}");
    assert!(matches!(
        check_key_history(&["aa".into(), "bb".into()], &["bb".into()]),
        Err(MetadataError::KeyHistoryShrank)
    ));
    assert!(check_key_history(&["aa".into()], &["AA".into(), "bb".into()]).is_ok());
}

#[test]
fn malformed_documents_give_typed_errors() {
    let world = world();
    let key = MetadataKey::generate();
    let good =
        encode_top_folder(&sample_folder(1), &key, &[world.alice.trusted()], None, world.alice.signer()).unwrap();
    type Case = (String, &'static str, fn(&MetadataError) -> bool);
    let cases: Vec<Case> = vec![
        ("".into(), "empty", |e| matches!(e, MetadataError::Json(_))),
        ("{".into(), "truncated JSON", |e| matches!(e, MetadataError::Json(_))),
        ("[]".into(), "array", |e| matches!(e, MetadataError::Json(_))),
        (
            r#"{"version":"3.0","metadata":{}}"#.into(),
            "unknown version",
            |e| matches!(e, MetadataError::UnsupportedVersion(v) if v == "3.0"),
        ),
        (r#"{"version":true}"#.into(), "version of wrong type", |e| matches!(e, MetadataError::UnsupportedVersion(_))),
        (
            r#"{"metadata":{"version":1.2,"metadataKey":"x"},"files":{}}"#.into(),
            "legacy",
            |e| matches!(e, MetadataError::LegacyVersion(v) if v == "1.2"),
        ),
        (r#"{"metadata":{}}"#.into(), "no version", |e| matches!(e, MetadataError::Malformed { .. })),
        (
            r#"{"version":"2.0","metadata":{"ciphertext":"A","nonce":"B","authenticationTag":"C"}}"#.into(),
            "no users",
            |e| matches!(e, MetadataError::Malformed { field: "users", .. }),
        ),
        (r#"{"version":"2.0","metadata":{"ciphertext":1}}"#.into(), "wrong field type", |e| {
            matches!(e, MetadataError::Json(_))
        }),
    ];
    for (json, what, expected) in cases {
        let result = decode_as(&world.alice, &json, &good.signature_base64);
        let error = result.err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(expected(&error), "{what}: {error:?}");
    }
    // The real document with a broken or missing signature.
    assert!(matches!(decode_as(&world.alice, &good.json, ""), Err(MetadataError::MissingSignature)));
    assert!(matches!(
        decode_as(&world.alice, &good.json, "%%%"),
        Err(MetadataError::Malformed { field: "signature", .. })
    ));
    assert!(matches!(
        decode_as(&world.alice, &good.json, "AAAA"),
        Err(MetadataError::Signature(SignatureError::Malformed(_)))
    ));
    // An absurdly large document is refused before parsing.
    let huge = format!("{{\"pad\":\"{}\"}}", "a".repeat(MAX_DOCUMENT_LEN));
    assert!(matches!(decode_as(&world.alice, &huge, &good.signature_base64), Err(MetadataError::TooLarge { .. })));
}

fn sealed_block(key: &MetadataKey, plaintext: &[u8]) -> EncryptedBlock {
    let nonce = Nonce::generate();
    let sealed = cloakfs::crypto::gcm::seal(key.as_bytes(), nonce.as_bytes(), plaintext).unwrap();
    EncryptedBlock {
        ciphertext: BASE64.encode(&sealed),
        nonce: nonce.to_base64(),
        authentication_tag: BASE64.encode(&sealed[sealed.len() - 16..]),
        unknown: Default::default(),
    }
}

fn gzip(data: impl Read) -> Vec<u8> {
    let mut compressed = Vec::new();
    flate2::read::GzEncoder::new(data, flate2::Compression::best()).read_to_end(&mut compressed).unwrap();
    compressed
}

#[test]
fn broken_inner_metadata_gives_typed_errors() {
    let key = MetadataKey::generate();
    let good = encrypt_block(&sample_folder(1), &key).unwrap();
    assert!(decrypt_block(&good, &key).is_ok());
    // Wrong key.
    assert!(matches!(decrypt_block(&good, &MetadataKey::generate()), Err(MetadataError::Decryption)));
    // Tag field inconsistent with the ciphertext, nonce suffix inconsistent with the nonce field.
    let mut bad_tag = good.clone();
    bad_tag.authentication_tag = BASE64.encode([0u8; 16]);
    assert!(matches!(decrypt_block(&bad_tag, &key), Err(MetadataError::Malformed { field: "authenticationTag", .. })));
    let mut bad_suffix = good.clone();
    bad_suffix.ciphertext = format!("{}|{}", good.ciphertext.split('|').next().unwrap(), Nonce::generate().to_base64());
    assert!(matches!(decrypt_block(&bad_suffix, &key), Err(MetadataError::Malformed { field: "ciphertext", .. })));
    // Not base64, too short, bad nonce.
    let mut not_base64 = good.clone();
    not_base64.ciphertext = "@@@@".into();
    assert!(matches!(decrypt_block(&not_base64, &key), Err(MetadataError::Malformed { .. })));
    let mut short = good.clone();
    short.ciphertext = BASE64.encode([1u8; 5]);
    assert!(matches!(decrypt_block(&short, &key), Err(MetadataError::Malformed { .. })));
    let mut bad_nonce = good.clone();
    bad_nonce.nonce = BASE64.encode([1u8; 5]);
    assert!(matches!(decrypt_block(&bad_nonce, &key), Err(MetadataError::Malformed { field: "nonce", .. })));
    // Authentic but not gzip; gzip but not JSON; JSON of the wrong shape.
    assert!(matches!(decrypt_block(&sealed_block(&key, b"not gzip"), &key), Err(MetadataError::Decompression(_))));
    assert!(matches!(decrypt_block(&sealed_block(&key, &gzip(&b"not json"[..])), &key), Err(MetadataError::Json(_))));
    assert!(matches!(
        decrypt_block(&sealed_block(&key, &gzip(&b"{\"counter\":\"x\"}"[..])), &key),
        Err(MetadataError::Json(_))
    ));
    let bad_key = br#"{"counter":1,"files":{"0123456789abcdef0123456789abcdef":{"filename":"a","mimetype":"b","key":"c2hvcnQ=","nonce":"AAAAAAAAAAAAAAAA","authenticationTag":"AAAAAAAAAAAAAAAAAAAAAA=="}}}"#;
    assert!(matches!(decrypt_block(&sealed_block(&key, &gzip(&bad_key[..])), &key), Err(MetadataError::Json(_))));
    // A gzip bomb: 65 MiB of zeros in a few dozen KiB.
    let bomb = gzip(std::io::repeat(0).take((64 << 20) + 1024));
    assert!(bomb.len() < 1 << 20);
    assert!(matches!(decrypt_block(&sealed_block(&key, &bomb), &key), Err(MetadataError::TooLarge { .. })));
}

#[test]
fn entries_that_could_escape_a_folder_are_refused() {
    let world = world();
    let key = MetadataKey::generate();
    let users = [world.alice.trusted()];
    for (uid, name) in [
        ("../../../../etc/passwd0000000000", "x"),
        ("0123456789abcdef0123456789abcdef", "a/b"),
        ("0123456789abcdef0123456789abcdef", ".."),
        ("0123456789abcdef0123456789abcdef", ""),
        ("0123456789abcdef0123456789abcdef", "nul\0byte"),
    ] {
        let mut folder = FolderMetadata { counter: 1, ..Default::default() };
        folder.files.insert(uid.into(), file_entry(name));
        let result = encode_top_folder(&folder, &key, &users, None, world.alice.signer());
        assert!(matches!(result, Err(MetadataError::InvalidEntry { .. })), "{uid} {name:?}: {result:?}");
        // The same entry arriving from a server (signed by a member) is refused on decode.
        let mut document = serde_json::from_str::<MetadataDocument>(
            &encode_top_folder(
                &FolderMetadata { counter: 1, ..Default::default() },
                &key,
                &users,
                None,
                world.alice.signer(),
            )
            .unwrap()
            .json,
        )
        .unwrap();
        folder.key_checksums = Some(vec![key.sha256_hex()]);
        document.metadata = encrypt_block(&folder, &key).unwrap();
        let signed = sign_document(&document, world.alice.signer()).unwrap();
        let result = decode_as(&world.alice, &signed.json, &signed.signature_base64);
        assert!(matches!(result, Err(MetadataError::InvalidEntry { .. })), "{uid} {name:?}: {result:?}");
    }
}

fn arbitrary_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._()äöüß東京-]{1,40}".prop_filter("not . or ..", |name| name != "." && name != "..")
}

fn arbitrary_folder() -> impl Strategy<Value = FolderMetadata> {
    (
        any::<u64>(),
        proptest::collection::btree_map("[0-9a-f]{32}", arbitrary_name(), 0..8),
        proptest::collection::btree_map("[0-9a-f]{32}", arbitrary_name(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(counter, files, folders, deleted)| {
            let files: BTreeMap<String, FileEntry> =
                files.into_iter().map(|(uid, name)| (uid, file_entry(&name))).collect();
            let folders = folders
                .into_iter()
                .filter(|(uid, _)| !files.contains_key(uid))
                .map(|(uid, name)| (uid, Zeroizing::new(name)))
                .collect();
            FolderMetadata {
                counter,
                files,
                folders,
                key_checksums: None,
                deleted: deleted.then_some(false),
                unknown: Default::default(),
            }
        })
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|number| json!(number)),
        "[ -~é/\\\\\"]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z_]{1,8}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn inner_metadata_round_trips(folder in arbitrary_folder()) {
        let key = MetadataKey::generate();
        let block = encrypt_block(&folder, &key).unwrap();
        prop_assert_eq!(decrypt_block(&block, &key).unwrap(), folder);
    }

    #[test]
    fn canonical_json_ignores_input_order_and_whitespace(value in arbitrary_json()) {
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let reparsed: Value = serde_json::from_str(&pretty).unwrap();
        let canonical = to_canonical_string(&value);
        prop_assert_eq!(&to_canonical_string(&reparsed), &canonical);
        let back: Value = serde_json::from_str(&canonical).unwrap();
        prop_assert_eq!(back, value);
        prop_assert!(!has_escaped_slash(&canonical), "'/' must not be escaped: {}", canonical);
    }
}

/// Whether JSON text contains the escape sequence `\/` (a backslash that starts an escape, followed by
/// `/`), as opposed to an escaped backslash followed by a plain `/`.
fn has_escaped_slash(json: &str) -> bool {
    let mut characters = json.chars();
    while let Some(character) = characters.next() {
        if character == '\\' && characters.next() == Some('/') {
            return true;
        }
    }
    false
}

#[test]
fn the_escaped_slash_check_tells_escapes_apart() {
    assert!(has_escaped_slash(r#""a\/b""#));
    assert!(!has_escaped_slash(r#""a\\/b""#));
    assert!(!has_escaped_slash(r#""a/b""#));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn signed_top_folders_round_trip(folder in arbitrary_folder()) {
        let world = world();
        let key = MetadataKey::generate();
        let encoded = encode_top_folder(&folder, &key, &[world.bob.trusted(), world.alice.trusted()], None, world.bob.signer()).unwrap();
        let top = decode_as(&world.alice, &encoded.json, &encoded.signature_base64).unwrap();
        let mut expected = folder.clone();
        expected.key_checksums = Some(vec![key.sha256_hex()]);
        prop_assert_eq!(top.decoded.folder, expected);
        prop_assert_eq!(top.decoded.signed_by, "bob");
    }
}

#[test]
fn debug_output_never_shows_names_or_keys() {
    let world = world();
    let folder = sample_folder(1);
    let key = MetadataKey::generate();
    let top = {
        let encoded = encode_top_folder(&folder, &key, &[world.alice.trusted()], None, world.alice.signer()).unwrap();
        decode_as(&world.alice, &encoded.json, &encoded.signature_base64).unwrap()
    };
    let entry = folder.files.values().next().unwrap();
    let printed = [
        format!("{folder:?}"),
        format!("{entry:?}"),
        format!("{top:?}"),
        format!("{:?}", world.alice.identity),
        format!("{key:?}"),
        format!("{:?}", cloakfs::crypto::Mnemonic::generate()),
    ]
    .join("\n");
    for secret in [
        "Reisepass".to_owned(),
        "Steuern".to_owned(),
        entry.key.to_base64().to_string(),
        key.to_base64().to_string(),
        hex::encode(key.as_bytes()),
        "PRIVATE KEY".to_owned(),
    ] {
        assert!(!printed.contains(&secret), "Debug output shows {secret:?}");
    }
}
