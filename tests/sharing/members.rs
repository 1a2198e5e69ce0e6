//! Sharing, writing, unsharing and re-keying among two and three users; a member's new key pair.

use super::*;

#[test]
fn two_users_share_write_and_unshare_and_rekeyed_files_resist_old_keys() {
    let data = TempDir::new("share-data");
    let server = TestServer::start(&data.0, &["alice", "bob", "carol"]);
    let alice = User::new(&server, "alice");
    let bob = User::new(&server, "bob");
    let carol = User::new(&server, "carol");

    alice.ok(&["mkdir", "--encrypted", "/Vault"]);
    alice.ok(&["mkdir", "/Vault/sub"]);
    alice.put("alpha secret", "/Vault/a.txt");
    alice.put("beta secret", "/Vault/sub/b.txt");

    // Share: without a terminal and without the fingerprint nothing is shared; with bob's fingerprint (read
    // from his device) the folder appears in bob's tree.
    let message = refused(alice.run(&["share", "/Vault", "bob"]), "--fingerprint");
    assert!(message.contains("certificate of bob: SHA256 ") && message.contains("never seen"), "{message}");
    assert!(!bob.ok(&["ls", "/"]).contains("Vault"));
    let shared = alice.share("/Vault", &bob, &[]);
    assert!(shared.contains(&format!("certificate SHA256 {}", bob.fingerprint())), "{shared}");
    assert!(bob.ok(&["ls", "/"]).contains("Vault/  [encrypted]"));
    assert_eq!(bob.get("/Vault/a.txt"), "alpha secret");
    assert_eq!(bob.get("/Vault/sub/b.txt"), "beta secret");
    // Both write; each reads the other's changes (bob's are signed by bob and accepted by alice).
    bob.put("from bob", "/Vault/sub/bob.txt");
    assert_eq!(alice.get("/Vault/sub/bob.txt"), "from bob");
    alice.put("from alice", "/Vault/alice.txt");
    assert_eq!(bob.get("/Vault/alice.txt"), "from alice");
    bob.put("bob at the top", "/Vault/top-bob.txt");
    let members = alice.ok(&["members", "/Vault"]);
    assert!(members.contains("signed by bob"), "{members}");
    assert!(
        members.lines().any(|line| line.starts_with("alice ")) && members.lines().any(|line| line.starts_with("bob "))
    );
    // Carol sees nothing of it.
    assert!(!carol.ok(&["ls", "/"]).contains("Vault"));
    refused(carol.run(&["get", "/Vault/a.txt", "-"]), "");

    // A third member, then the audit trail as each member sees it.
    alice.share("/Vault", &carol, &["--permissions", "read"]);
    assert_eq!(carol.get("/Vault/a.txt"), "alpha secret");
    refused(carol.run(&["rm", "/Vault/a.txt"]), "");
    let audit = bob.ok(&["audit", "/Vault"]);
    assert!(
        audit.contains("folder created") && audit.contains("member added bob") && audit.contains("member added carol"),
        "{audit}"
    );
    assert!(audit.contains("3 entries, chain and signatures verified"), "{audit}");

    // What bob holds before he is removed: his private key and the key of a.txt.
    let (_, json, signature) = top_metadata(&server, "alice", "Vault");
    let server_key = server_identity(&server).public_key().clone();
    let bob_identity = bob.identity(&server);
    let old = decode_as(&json, &signature, "bob", &bob_identity, &server_key).unwrap();
    let (old_uid, old_entry) =
        old.decoded.folder.files.iter().find(|(_, entry)| entry.filename.as_str() == "a.txt").unwrap();
    let (old_uid, old_entry) = (old_uid.clone(), old_entry.clone());

    // Unshare bob: the server share goes, the key rotates; files keep their keys by default.
    let unshared = alice.ok(&["unshare", "/Vault", "bob"]);
    assert!(unshared.contains("bob removed from /Vault") && unshared.contains("--rekey-files"), "{unshared}");
    assert!(!bob.ok(&["ls", "/"]).contains("Vault"));
    refused(bob.run(&["get", "/Vault/a.txt", "-"]), "");
    assert_eq!(carol.get("/Vault/a.txt"), "alpha secret");
    assert_eq!(alice.get("/Vault/sub/bob.txt"), "from bob");
    let (_, json, signature) = top_metadata(&server, "alice", "Vault");
    let current = decode_as(&json, &signature, "bob", &bob_identity, &server_key);
    assert!(current.is_err(), "bob's key still opens the new metadata");
    // Without --rekey-files the blob of a.txt is unchanged: bob's old key still opens it (documented).
    let blob = blob_bytes(&server, &old_uid);
    assert!(cloakfs::crypto::file_cipher::decrypt_to_vec(
        &old_entry.key,
        &old_entry.nonce,
        Some(&old_entry.authentication_tag),
        &blob[..]
    )
    .is_ok());

    // --rekey-files, interrupted: the server fails every upload after the top folder's batch (3 files), so
    // the run stops in the sub-folder with an error, having finished the top folder.
    let sub_names = |server: &TestServer| -> Vec<String> {
        let database = database(server);
        let mut statement = database
            .prepare(
                "SELECT n.name FROM nodes n JOIN nodes p ON n.parent = p.id JOIN nodes t ON p.parent = t.id \
                      WHERE t.name = 'Vault' AND n.is_dir = 0 ORDER BY n.name",
            )
            .unwrap();
        statement.query_map([], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    let sub_before = sub_names(&server);
    let proxy = proxy::Proxy::start(&server.url);
    let uploads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = uploads.clone();
    proxy.after(move |seen, answer| {
        if seen.kind() == "PUT blob" && counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 3 {
            answer.status = 500;
            answer.body = b"storage failure".to_vec();
        }
    });
    let interrupted = client(
        &proxy.url,
        "alice",
        &alice.config.0,
        &["unshare", "/Vault", "bob", "--rekey-files", "--mnemonic-file", alice.mnemonic.to_str().unwrap()],
    );
    refused(interrupted, "re-keying /Vault");
    assert!(!blob_exists(&server, &old_uid), "the top folder's batch was not committed");
    assert_eq!(sub_names(&server), sub_before, "the failed sub-folder batch changed something");
    // Started again, it re-keys only what is left (the sub-folder's 2 files).
    let rekeyed = alice.ok(&["unshare", "/Vault", "bob", "--rekey-files"]);
    assert!(rekeyed.contains("2 files re-encrypted under fresh keys"), "{rekeyed}");
    assert!(sub_names(&server).iter().all(|name| !sub_before.contains(name)), "sub-folder files not re-keyed");
    assert!(!blob_exists(&server, &old_uid), "the old blob of a.txt is still on the server");
    let (_, json, signature) = top_metadata(&server, "alice", "Vault");
    let alice_identity = alice.identity(&server);
    let now = decode_as(&json, &signature, "alice", &alice_identity, &server_key).unwrap();
    let (new_uid, new_entry) =
        now.decoded.folder.files.iter().find(|(_, entry)| entry.filename.as_str() == "a.txt").unwrap();
    assert_ne!(*new_uid, old_uid);
    assert!(new_entry.key != old_entry.key);
    let blob = blob_bytes(&server, new_uid);
    assert!(cloakfs::crypto::file_cipher::decrypt_to_vec(&old_entry.key, &old_entry.nonce, None, &blob[..]).is_err());
    assert_eq!(alice.get("/Vault/a.txt"), "alpha secret");
    assert_eq!(alice.get("/Vault/sub/b.txt"), "beta secret");
    assert_eq!(carol.get("/Vault/sub/bob.txt"), "from bob");
    // Running it again re-keys nothing more (resumable: done files carry the epoch).
    let again = alice.ok(&["unshare", "/Vault", "bob", "--rekey-files"]);
    assert!(again.contains("0 files re-encrypted"), "{again}");
    let audit = carol.ok(&["audit", "/Vault"]);
    assert!(audit.contains("member removed bob") && audit.contains("files re-keyed"), "{audit}");
    // Nothing of this reached the server in the clear.
    server::assert_no_marker_below(&data.0, &[b"alpha secret", b"a.txt", b"from bob"]);
}

#[test]
fn a_member_with_a_new_key_pair_is_accepted_only_when_confirmed_and_others_follow_the_audit_trail() {
    let data = TempDir::new("newcert-data");
    let server = TestServer::start(&data.0, &["alice", "bob", "carol"]);
    let alice = User::new(&server, "alice");
    let bob = User::new(&server, "bob");
    let carol = User::new(&server, "carol");
    alice.ok(&["mkdir", "--encrypted", "/Vault"]);
    alice.put("alpha secret", "/Vault/a.txt");
    alice.share("/Vault", &bob, &[]);
    alice.share("/Vault", &carol, &[]);
    assert_eq!(carol.get("/Vault/a.txt"), "alpha secret");

    // Bob loses his keys and makes new ones on a new device (the server drops the old ones, as Nextcloud's
    // DELETE /public-key and /private-key do).
    let database = database(&server);
    database.execute("DELETE FROM public_keys WHERE user = 'bob'", []).unwrap();
    database.execute("DELETE FROM private_keys WHERE user = 'bob'", []).unwrap();
    let new_bob = User::new(&server, "bob");
    let new_fingerprint = {
        let pem: String =
            database.query_row("SELECT certificate FROM public_keys WHERE user = 'bob'", [], |row| row.get(0)).unwrap();
        cloakfs::crypto::UserCertificate::from_pem(&pem).unwrap().fingerprint()
    };
    refused(new_bob.run(&["ls", "/Vault"]), "a different certificate for user \"bob\"");
    // Alice's device refuses the new certificate until she confirms its fingerprint.
    let message = refused(alice.run(&["share", "/Vault", "bob"]), "CHANGED");
    assert!(message.contains(&new_fingerprint), "{message}");
    refused(alice.run(&["share", "/Vault", "bob", "--accept-new-certificate", &"0".repeat(64)]), "CHANGED");
    alice.ok(&["share", "/Vault", "bob", "--accept-new-certificate", &new_fingerprint]);
    assert_eq!(new_bob.get("/Vault/a.txt"), "alpha secret");
    // Carol's device pinned bob's old certificate; alice vouched for the new one in the audit trail.
    assert_eq!(carol.get("/Vault/a.txt"), "alpha secret");
    let audit = carol.ok(&["audit", "/Vault"]);
    assert!(audit.contains("new certificate bob"), "{audit}");
    // The old bob's device (old key) no longer opens it.
    refused(bob.run(&["get", "/Vault/a.txt", "-"]), "");
}
