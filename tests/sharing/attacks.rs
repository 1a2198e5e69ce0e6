//! A malicious server (through the rewriting proxy) and a malicious member against membership and the audit
//! trail.

use super::*;

/// Serves `json` and `signature` for every metadata request (listings lose their metadata properties, so
/// the client asks the OCS API, whose answers the hook rewrites).
fn serve_forged(proxy: &proxy::Proxy, file_id: i64, json: String, signature: String) {
    proxy.after(move |seen, answer| {
        if seen.method == "PROPFIND" {
            proxy::strip_metadata_properties(answer);
        }
        if seen.kind() == "GET meta-data" && seen.path.contains(&format!("meta-data/{file_id}")) {
            answer.body = serde_json::to_vec(&serde_json::json!({
                "ocs": {"meta": {"status": "ok", "statuscode": 200, "message": "OK"}, "data": {"meta-data": json}}
            }))
            .unwrap();
            answer.set_header("x-nc-e2ee-signature", &signature);
        }
    });
}

#[test]
fn a_malicious_server_or_member_cannot_change_members_or_the_audit_trail_unnoticed() {
    use cloakfs::crypto::{MetadataKey, UserCertificate};
    use cloakfs::metadata::{encode_top_folder, FolderMetadata, Signer, TrustedUser};

    let data = TempDir::new("evil-share-data");
    let server = TestServer::start(&data.0, &["alice", "bob", "mallory"]);
    // Alice reaches the server through a rewriting proxy from the start (her pins are for that URL).
    let proxy = proxy::Proxy::start(&server.url);
    let alice = User::new_at("alice", &proxy.url);
    let bob = User::new(&server, "bob");
    let _mallory = User::new(&server, "mallory");
    alice.ok(&["mkdir", "--encrypted", "/Vault"]);
    alice.put("alpha secret", "/Vault/a.txt");
    let (file_id, before_share_json, before_share_signature) = top_metadata(&server, "alice", "Vault");
    alice.share("/Vault", &bob, &[]);
    bob.put("from bob", "/Vault/b.txt");
    // Alice's device now trusts {alice, bob} and has seen the audit trail.
    alice.ok(&["members", "/Vault"]);

    let server_ca = server_identity(&server);
    let server_key = server_ca.public_key().clone();
    let (_, json, signature) = top_metadata(&server, "alice", "Vault");
    let document: serde_json::Value = serde_json::from_str(&json).unwrap();
    let certificate_of = |user: &str| {
        let users = document["users"].as_array().unwrap();
        let entry = users.iter().find(|entry| entry["userId"] == user).unwrap();
        UserCertificate::from_pem(entry["certificate"].as_str().unwrap()).unwrap()
    };
    let (alice_certificate, bob_certificate) = (certificate_of("alice"), certificate_of("bob"));
    let forge = |users: &[TrustedUser], signer: Signer<'_>, folder: &FolderMetadata, key: &MetadataKey| {
        let encoded = encode_top_folder(folder, key, users, None, signer).unwrap();
        (encoded.json, encoded.signature_base64)
    };
    let empty = FolderMetadata { counter: 1000, ..Default::default() };

    // 1. The server adds a member of its own (a real account with a certificate it issued), signed by it.
    let mallory_key = PrivateIdentity::generate().unwrap();
    let mallory_certificate = server_ca
        .issue_certificate(
            &mallory_key.certificate_request_pem("mallory").unwrap(),
            "mallory",
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    let key = MetadataKey::generate();
    let mut folder = empty.clone();
    // First with only its own key's checksum: the history alice's device saw is cut.
    folder.key_checksums = Some(vec![key.sha256_hex()]);
    let users_cut = [
        TrustedUser { user_id: "alice".into(), certificate: alice_certificate.clone() },
        TrustedUser { user_id: "bob".into(), certificate: bob_certificate.clone() },
    ];
    let (forged, forged_signature) = forge(
        &users_cut,
        Signer { identity: &alice.identity(&server), certificate: &alice_certificate },
        &folder,
        &key,
    );
    serve_forged(&proxy, file_id, forged, forged_signature);
    refused(alice.run(&["ls", "/Vault"]), "key checksum seen before has been removed");
    proxy.clear();
    // Then keeping the history.
    let current = decode_as(&json, &signature, "alice", &alice.identity(&server), &server_key).unwrap();
    let mut history = current.decoded.folder.key_checksums.clone().unwrap();
    history.push(key.sha256_hex());
    folder.key_checksums = Some(history);
    let users = [
        TrustedUser { user_id: "alice".into(), certificate: alice_certificate.clone() },
        TrustedUser { user_id: "bob".into(), certificate: bob_certificate.clone() },
        TrustedUser { user_id: "mallory".into(), certificate: mallory_certificate.clone() },
    ];
    let (forged, forged_signature) =
        forge(&users, Signer { identity: &mallory_key, certificate: &mallory_certificate }, &folder, &key);
    serve_forged(&proxy, file_id, forged, forged_signature);
    let message = refused(alice.run(&["ls", "/Vault"]), "without a member this device trusts");
    assert!(message.contains("\"mallory\"") || message.contains("mallory"), "{message}");
    proxy.clear();

    // 2. The server swaps bob's certificate for one over its own key, and signs as that "bob".
    let fake_bob_key = PrivateIdentity::generate().unwrap();
    let fake_bob = server_ca
        .issue_certificate(
            &fake_bob_key.certificate_request_pem("bob").unwrap(),
            "bob",
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    let users = [
        TrustedUser { user_id: "alice".into(), certificate: alice_certificate.clone() },
        TrustedUser { user_id: "bob".into(), certificate: fake_bob.clone() },
    ];
    let (forged, forged_signature) =
        forge(&users, Signer { identity: &fake_bob_key, certificate: &fake_bob }, &folder, &key);
    serve_forged(&proxy, file_id, forged, forged_signature);
    refused(alice.run(&["ls", "/Vault"]), "CHANGED");
    proxy.clear();

    // 3. The server replays the member list from before bob was added (genuine, signed by alice).
    serve_forged(&proxy, file_id, before_share_json.clone(), before_share_signature.clone());
    refused(alice.run(&["ls", "/Vault"]), "counter went backwards");
    proxy.clear();

    // 4. A member (bob, with his real key) rewrites the audit trail: an edited entry, then a cut one.
    let bob_identity = bob.identity(&server);
    let decoded = decode_as(&json, &signature, "bob", &bob_identity, &server_key).unwrap();
    let members = decoded.tree.users.clone();
    let bob_signer = Signer { identity: &bob_identity, certificate: &bob_certificate };
    for (case, expected) in [("edited", "signature by"), ("cut", "cut or rewritten")] {
        let mut folder = decoded.decoded.folder.clone();
        folder.counter += 100;
        let trail = folder.unknown.get_mut("cloakfsAudit").unwrap();
        let entries = trail["entries"].as_array_mut().unwrap();
        if case == "edited" {
            entries[1]["time"] = serde_json::json!(0);
        } else {
            entries.pop();
        }
        let (forged, forged_signature) = forge(&members, bob_signer, &folder, &decoded.tree.metadata_key);
        serve_forged(&proxy, file_id, forged, forged_signature);
        let message = refused(alice.run(&["ls", "/Vault"]), expected);
        eprintln!("{case}: {}", message.trim());
        proxy.clear();
    }
    // Through all of it nothing was written over the real metadata, and the real folder still reads.
    let (_, after, _) = top_metadata(&server, "alice", "Vault");
    assert_eq!(after, json);
    assert_eq!(alice.get("/Vault/b.txt"), "from bob");
}
