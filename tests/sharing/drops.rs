//! What a membership change writes (checked against the protocol notes), file drops, the recovery key.

use super::*;

#[test]
fn file_drops_recovery_key_and_the_metadata_written_for_a_membership_change() {
    use cloakfs::metadata::canonical_json::to_canonical_string;

    let data = TempDir::new("drop-data");
    let server = TestServer::start(&data.0, &["alice", "bob", "dropper"]);
    let alice = User::new(&server, "alice");
    let bob = User::new(&server, "bob");
    let dropper = User::new(&server, "dropper");
    alice.ok(&["mkdir", "--encrypted", "/Vault"]);
    alice.ok(&["mkdir", "/Vault/sub"]);
    alice.put("alpha secret", "/Vault/a.txt");
    let (file_id, json_before, signature_before) = top_metadata(&server, "alice", "Vault");
    alice.share("/Vault", &bob, &[]);

    // What a membership change writes, checked against the protocol notes (PROTOCOL.md §2.2).
    let (_, json, signature) = top_metadata(&server, "alice", "Vault");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(to_canonical_string(&value), json, "not canonical (sorted keys, compact)");
    let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["metadata", "users", "version"]);
    assert_eq!(value["version"], "2.0");
    let metadata_keys: Vec<&str> = value["metadata"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(metadata_keys, ["authenticationTag", "ciphertext", "nonce"]);
    assert!(value["metadata"]["ciphertext"]
        .as_str()
        .unwrap()
        .ends_with(&format!("|{}", value["metadata"]["nonce"].as_str().unwrap())));
    let users = value["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    for user in users {
        let fields: Vec<&str> = user.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(fields, ["certificate", "encryptedMetadataKey", "userId"]);
    }
    let server_key = server_identity(&server).public_key().clone();
    let mut keys_seen = Vec::new();
    for (name, user) in [("alice", &alice), ("bob", &bob)] {
        let identity = user.identity(&server);
        let decoded = decode_as(&json, &signature, name, &identity, &server_key).unwrap();
        assert_eq!(decoded.decoded.signed_by, "alice");
        let checksums = decoded.decoded.folder.key_checksums.clone().unwrap();
        assert_eq!(checksums.len(), 2, "keyChecksums keeps the old key's checksum and adds the new one");
        assert_eq!(checksums[1], decoded.tree.metadata_key.sha256_hex());
        keys_seen.push(decoded.tree.metadata_key.sha256_hex());
    }
    assert_eq!(keys_seen[0], keys_seen[1], "every member gets the same new key");
    // The first entry of keyChecksums is the key of the version before the share.
    let alice_identity = alice.identity(&server);
    let before = decode_as(&json_before, &signature_before, "alice", &alice_identity, &server_key).unwrap();
    let checksums_now = value_checksums(&json, &signature, &alice_identity, &server_key);
    assert_eq!(checksums_now[0], before.tree.metadata_key.sha256_hex());
    assert_ne!(checksums_now[1], checksums_now[0]);
    // The sub-folder was re-encrypted under the new key, with no users.
    let sub: (String, String) = database(&server)
        .query_row(
            "SELECT m.json, m.signature FROM metadata m JOIN nodes n ON m.node = n.id WHERE n.parent = ?1",
            [file_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    let sub_value: serde_json::Value = serde_json::from_str(&sub.0).unwrap();
    assert!(sub_value.get("users").is_none() && sub_value["version"] == "2.0");
    let bob_identity = bob.identity(&server);
    let top = decode_as(&json, &signature, "bob", &bob_identity, &server_key).unwrap();
    cloakfs::metadata::decode_sub_folder(&sub.0, &sub.1, &top.tree, None).unwrap();

    // A file drop: the dropper cannot read the folder, but can add a file its members then see.
    alice.share("/Vault", &dropper, &["--permissions", "drop"]);
    refused(dropper.run(&["get", "/Vault/a.txt", "-"]), "");
    let local = dropper.config.0.join("report.txt");
    std::fs::write(&local, "dropped secret").unwrap();
    // The drop's key goes to every member: the dropper confirms them first.
    refused(dropper.run(&["drop", local.to_str().unwrap(), "/Vault"]), "never confirmed on this");
    dropper.confirm(&alice);
    dropper.confirm(&bob);
    dropper.ok(&["drop", local.to_str().unwrap(), "/Vault"]);
    let (_, with_drop, _) = top_metadata(&server, "alice", "Vault");
    assert!(with_drop.contains("\"filedrop\""));
    assert!(bob.ok(&["ls", "/Vault"]).contains("report.txt"));
    let (_, processed, _) = top_metadata(&server, "alice", "Vault");
    assert!(!processed.contains("\"filedrop\""), "the file drop was not moved into files");
    assert_eq!(alice.get("/Vault/report.txt"), "dropped secret");
    // A second drop of the same name is kept next to the first.
    dropper.ok(&["drop", local.to_str().unwrap(), "/Vault"]);
    assert!(alice.ok(&["ls", "/Vault"]).contains("report (dropped 2).txt"));
    // The `filedrop` section is not signed (by protocol), so a server can withhold a drop before any member
    // sees it: the members cannot refuse what they never saw, but the dropped blob is left without an entry
    // and `fsck` names it.
    let withheld = dropper.config.0.join("withheld.txt");
    std::fs::write(&withheld, "withheld secret").unwrap();
    dropper.ok(&["drop", withheld.to_str().unwrap(), "/Vault"]);
    database(&server)
        .execute("UPDATE metadata SET json = json_remove(json, '$.filedrop') WHERE node = ?1", [file_id])
        .unwrap();
    assert!(!alice.ok(&["ls", "/Vault"]).contains("withheld"));
    let fsck = alice.run(&["fsck", "/Vault"]);
    assert!(text(&fsck.stdout).contains("1 orphan(s)"), "{}", text(&fsck.stdout));
    alice.ok(&["fsck", "--repair", "/Vault"]);
    // A forged entry (garbage wrapped for alice) is left in place and named in the log; the folder stays usable.
    let forged = serde_json::json!({"0123456789abcdef0123456789abcdef": {
        "ciphertext": "AAAA", "nonce": "AAAAAAAAAAAAAAAA", "authenticationTag": "AAAAAAAAAAAAAAAAAAAAAA==",
        "users": [{"userId": "alice", "encryptedFiledropKey": "AAAA"}]}});
    database(&server)
        .execute(
            "UPDATE metadata SET json = json_set(json, '$.filedrop', json(?2)) WHERE node = ?1",
            rusqlite::params![file_id, forged.to_string()],
        )
        .unwrap();
    let listed = alice.run(&["ls", "/Vault"]);
    assert!(
        listed.status.success() && text(&listed.stderr).contains("file drop cannot be opened"),
        "{}",
        text(&listed.stderr)
    );

    // The offline recovery key: set up, then the next key rotation wraps for it and members are warned.
    let (key_file, init) = alice.recovery_init();
    assert!(text(&init.stderr).contains("recovery key SHA256"));
    // A key rotation (here: bob removed and added again) wraps the new key for the recovery key too.
    alice.ok(&["unshare", "/Vault", "bob"]);
    alice.share("/Vault", &bob, &[]);
    // The dropper becomes a reader: the file-drop share is replaced and they get the key.
    alice.share("/Vault", &dropper, &["--permissions", "read"]);
    assert_eq!(dropper.get("/Vault/a.txt"), "alpha secret");
    alice.ok(&["mkdir", "--encrypted", "/Safe"]);
    alice.put("safe secret", "/Safe/s.txt");
    let warned = bob.run(&["members", "/Vault"]);
    assert!(text(&warned.stdout).contains("WARNING: an offline recovery key"), "{}", text(&warned.stdout));
    let audit = bob.ok(&["audit", "/Vault"]);
    assert!(audit.contains("recovery key enabled"), "{audit}");
    // Opened with the recovery key alone (no mnemonic): every file, decrypted.
    for (folder, file, content) in [("/Vault", "a.txt", "alpha secret"), ("/Safe", "s.txt", "safe secret")] {
        let out = alice.config.0.join(format!("restored{}", folder.replace('/', "-")));
        ok(client(
            &server.url,
            "alice",
            &alice.config.0,
            &["recovery", "open", "--key", key_file.to_str().unwrap(), folder, out.to_str().unwrap()],
        ));
        assert_eq!(std::fs::read_to_string(out.join(file)).unwrap(), content);
    }
    // Another recovery key cannot open it.
    let other = PrivateIdentity::generate().unwrap();
    let other_file = alice.config.0.join("other.pem");
    std::fs::write(&other_file, other.to_pkcs8_pem().as_bytes()).unwrap();
    let out = alice.config.0.join("nothing");
    refused(
        client(
            &server.url,
            "alice",
            &alice.config.0,
            &["recovery", "open", "--key", other_file.to_str().unwrap(), "/Safe", out.to_str().unwrap()],
        ),
        "recovery key",
    );
}

fn value_checksums(
    json: &str,
    signature: &str,
    identity: &PrivateIdentity,
    server_key: &cloakfs::crypto::PublicKey,
) -> Vec<String> {
    decode_as(json, signature, "alice", identity, server_key).unwrap().decoded.folder.key_checksums.unwrap()
}
