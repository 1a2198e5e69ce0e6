//! Trust on first use against a malicious server, end to end on `cloakfs serve` (its database stands for
//! what a malicious server stores and answers; the proxy rewrites answers in flight): a substituted
//! certificate on a first share, a member added for a fresh device, a forged file drop, a recovery key added
//! behind the trail's back, a `recovery-used` entry meant to move a pin beyond its folder, and a trail
//! dropped by another client's rewrite. Each is one of the attacks in docs/THREAT-MODEL.md §"Share with
//! Care".

use cloakfs::crypto::{MetadataKey, UserCertificate};
use cloakfs::metadata::codec::sign_document;
use cloakfs::metadata::{MetadataDocument, MetadataUser, Signer};

use super::*;

/// Stores `json` and `signature` as the committed metadata of folder `file_id` (a malicious server).
fn store_metadata(server: &TestServer, file_id: i64, json: &str, signature: &str) {
    database(server)
        .execute(
            "UPDATE metadata SET json = ?2, signature = ?3 WHERE node = ?1",
            rusqlite::params![file_id, json, signature],
        )
        .unwrap();
}

/// A key pair and a certificate for `user` issued by the server's key (what a malicious server can make for
/// any user id).
fn server_made(server: &TestServer, user: &str) -> (PrivateIdentity, UserCertificate) {
    let identity = PrivateIdentity::generate().unwrap();
    let certificate = server_identity(server)
        .issue_certificate(&identity.certificate_request_pem(user).unwrap(), user, std::time::Duration::from_secs(3600))
        .unwrap();
    (identity, certificate)
}

impl User {
    /// Another device of this user: a fresh configuration (no pins) with the same mnemonic, reaching `url`.
    fn new_device(&self, url: &str) -> User {
        let config = TempDir::new(&format!("device-{}", self.name));
        let mnemonic = config.0.join("words");
        std::fs::copy(&self.mnemonic, &mnemonic).unwrap();
        User { url: url.to_owned(), name: self.name.clone(), config, mnemonic }
    }
}

/// The `user.cloakfs.origin` extended attribute of `path`, if it has one.
fn origin_xattr(path: &std::path::Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut value = [0u8; 64];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let length = unsafe {
        libc::getxattr(path.as_ptr(), c"user.cloakfs.origin".as_ptr(), value.as_mut_ptr().cast(), value.len())
    };
    if length < 0 {
        let error = std::io::Error::last_os_error();
        assert_eq!(error.raw_os_error(), Some(libc::ENODATA), "getxattr: {error}");
        return None;
    }
    Some(String::from_utf8_lossy(&value[..length as usize]).into_owned())
}

#[test]
fn a_first_share_wraps_no_key_for_a_certificate_the_server_substituted() {
    let data = TempDir::new("tofu-share-data");
    let server = TestServer::start(&data.0, &["alice", "bob"]);
    let proxy = proxy::Proxy::start(&server.url);
    let alice = User::new_at("alice", &proxy.url);
    let bob = User::new(&server, "bob");
    alice.ok(&["mkdir", "--encrypted", "/Vault"]);
    alice.put("alpha secret", "/Vault/a.txt");
    let (_, json_before, _) = top_metadata(&server, "alice", "Vault");
    let real = bob.fingerprint();
    // `cloakfs share /Vault bob` as alice, on a terminal of its own.
    let share_command = || {
        let mut command = server::cloakfs();
        command
            .args(["share", "/Vault", "bob", "--server", &proxy.url, "--user", "alice"])
            .args(["--mnemonic-file", alice.mnemonic.to_str().unwrap()])
            .env("XDG_CONFIG_HOME", &alice.config.0)
            .env("CLOAKFS_PASSWORD", server::PASSWORD);
        command
    };

    // The server answers alice's request for bob's certificate with one over a key of its own.
    let (_, fake) = server_made(&server, "bob");
    let fake_pem = fake.to_pem();
    proxy.after(move |seen, answer| {
        if seen.kind() == "GET public-key" && seen.path.contains("bob") {
            answer.body = serde_json::to_vec(&serde_json::json!({"ocs": {
                "meta": {"status": "ok", "statuscode": 200, "message": "OK"},
                "data": {"public-keys": {"bob": fake_pem}}}}))
            .unwrap();
        }
    });
    // Without a terminal and without a fingerprint: refused, the fake fingerprint shown.
    let message = refused(alice.run(&["share", "/Vault", "bob"]), "--fingerprint");
    assert!(message.contains(&fake.fingerprint()), "{message}");
    // With bob's real fingerprint (read out by bob): refused, nothing shared.
    let message = refused(alice.run(&["share", "/Vault", "bob", "--fingerprint", &real]), "not the");
    assert!(message.contains(&fake.fingerprint()) && message.contains(&real), "{message}");
    // On a terminal, answering no: refused, nothing shared.
    let mut terminal = pty::Terminal::spawn(share_command());
    assert!(terminal.wait_for("Does it match?", std::time::Duration::from_secs(30)), "{}", terminal.output());
    assert!(terminal.output().contains(&fake.fingerprint()));
    terminal.type_line("no");
    let status = terminal.wait(std::time::Duration::from_secs(30)).expect("share ends");
    assert!(!status.success() && terminal.output().contains("nothing was shared"), "{}", terminal.output());
    drop(terminal);
    let (_, json_after, _) = top_metadata(&server, "alice", "Vault");
    assert_eq!(json_after, json_before, "the folder's metadata changed: a key was wrapped");
    let shares: i64 = database(&server).query_row("SELECT count(*) FROM shares", [], |row| row.get(0)).unwrap_or(0);
    assert_eq!(shares, 0, "a server share was made");
    assert!(!bob.ok(&["ls", "/"]).contains("Vault"));

    // The real certificate, confirmed on the terminal with a yes: shared.
    proxy.clear();
    let mut terminal = pty::Terminal::spawn(share_command());
    assert!(terminal.wait_for("Does it match?", std::time::Duration::from_secs(30)), "{}", terminal.output());
    assert!(terminal.output().contains(&real));
    terminal.type_line("yes");
    let status = terminal.wait(std::time::Duration::from_secs(60)).expect("share ends");
    assert!(status.success(), "{}", terminal.output());
    assert_eq!(bob.get("/Vault/a.txt"), "alpha secret");
}

#[test]
fn a_fresh_device_refuses_a_member_or_recovery_key_the_trail_does_not_record() {
    let data = TempDir::new("tofu-member-data");
    let server = TestServer::start(&data.0, &["alice", "bob", "mallory"]);
    let alice = User::new(&server, "alice");
    let bob = User::new(&server, "bob");
    let _mallory = User::new(&server, "mallory");
    alice.ok(&["mkdir", "--encrypted", "/Vault"]);
    alice.put("alpha secret", "/Vault/a.txt");
    alice.share("/Vault", &bob, &[]);
    let (file_id, json, signature) = top_metadata(&server, "alice", "Vault");

    // A new laptop of alice's sees the genuine folder: bob vouched for by the trail, the first sight noted.
    let laptop = alice.new_device(&server.url);
    let members = laptop.run(&["members", "/Vault"]);
    let (stdout, stderr) = (text(&members.stdout), text(&members.stderr));
    assert!(members.status.success(), "{stderr}");
    assert!(stdout.contains("vouched for by the audit trail"), "{stdout}");
    assert!(stderr.contains("first sight of this folder"), "{stderr}");

    // The server adds mallory (a certificate it issued) to the unchanged metadata and signs as mallory.
    let (mallory_key, mallory_certificate) = server_made(&server, "mallory");
    let mut document: MetadataDocument = serde_json::from_str(&json).unwrap();
    document.users.as_mut().unwrap().push(MetadataUser {
        user_id: "mallory".into(),
        certificate: mallory_certificate.to_pem(),
        encrypted_metadata_key: mallory_certificate.wrap_metadata_key_base64(&MetadataKey::generate()).unwrap(),
        unknown: Default::default(),
    });
    let forged =
        sign_document(&document, Signer { identity: &mallory_key, certificate: &mallory_certificate }).unwrap();
    store_metadata(&server, file_id, &forged.json, &forged.signature_base64);
    // A second fresh device, and the laptop, and alice's usual device: all refuse it, and write nothing.
    let fresh = alice.new_device(&server.url);
    let message = refused(fresh.run(&["ls", "/Vault"]), "differ from what its audit trail records");
    assert!(message.contains("mallory"), "{message}");
    refused(laptop.run(&["ls", "/Vault"]), "");
    refused(alice.run(&["ls", "/Vault"]), "");
    let local = fresh.config.0.join("new.txt");
    std::fs::write(&local, "new secret").unwrap();
    refused(fresh.run(&["put", local.to_str().unwrap(), "/Vault/new.txt"]), "");
    let (_, stored, _) = top_metadata(&server, "alice", "Vault");
    assert_eq!(stored, forged.json, "a device wrote over the forged metadata (wrapping the key for mallory)");

    // Same counter, another document: a device that saw the genuine one at this counter refuses it even
    // signed by a member (here the server re-signs with a member's key it does not have: bob's own device
    // re-signing the same content with a reordered user list stands for any other document).
    store_metadata(&server, file_id, &json, &signature);
    assert_eq!(bob.get("/Vault/a.txt"), "alpha secret");
    let bob_identity = bob.identity(&server);
    let bob_certificate = UserCertificate::from_pem(
        &document.users.as_ref().unwrap().iter().find(|user| user.user_id == "bob").unwrap().certificate,
    )
    .unwrap();
    let mut reordered: MetadataDocument = serde_json::from_str(&json).unwrap();
    reordered.users.as_mut().unwrap().reverse();
    let resigned =
        sign_document(&reordered, Signer { identity: &bob_identity, certificate: &bob_certificate }).unwrap();
    store_metadata(&server, file_id, &resigned.json, &resigned.signature_base64);
    refused(bob.run(&["ls", "/Vault"]), "different metadata under counter");

    // A recovery key added without a trail entry: by the server (signing as a "bob" it issued a certificate
    // for) or by a member's rogue client (bob's real key). Both refused on fresh and pinned devices.
    let recovery = PrivateIdentity::generate().unwrap();
    let (fake_bob_key, fake_bob) = server_made(&server, "bob");
    for (case, signer_key, signer_certificate, swap_bob) in
        [("server", &fake_bob_key, &fake_bob, true), ("rogue member", &bob_identity, &bob_certificate, false)]
    {
        let mut document: MetadataDocument = serde_json::from_str(&json).unwrap();
        if swap_bob {
            let entry = document.users.as_mut().unwrap().iter_mut().find(|user| user.user_id == "bob").unwrap();
            entry.certificate = fake_bob.to_pem();
        }
        document.metadata.unknown.insert(
            "cloakfsRecovery".into(),
            serde_json::json!({
                "publicKey": recovery.public_key().to_pem(),
                "encryptedMetadataKey": "AAAA",
            }),
        );
        let forged =
            sign_document(&document, Signer { identity: signer_key, certificate: signer_certificate }).unwrap();
        store_metadata(&server, file_id, &forged.json, &forged.signature_base64);
        let fresh = alice.new_device(&server.url);
        let message = refused(fresh.run(&["ls", "/Vault"]), "audit trail records");
        eprintln!("{case}: {}", message.trim());
        refused(alice.run(&["ls", "/Vault"]), "");
        let (_, stored, _) = top_metadata(&server, "alice", "Vault");
        assert_eq!(stored, forged.json, "{case}: a device wrote the folder's key for the recovery key");
    }
    store_metadata(&server, file_id, &json, &signature);
}

#[test]
fn file_drops_are_taken_in_only_with_a_drop_share_marked_and_left_pending_for_readers() {
    use cloakfs::metadata::filedrop::seal_entry;
    use cloakfs::metadata::{FileEntry, TrustedUser};

    let data = TempDir::new("tofu-drop-data");
    let server = TestServer::start(&data.0, &["alice", "bob", "carol", "dropper"]);
    let alice = User::new(&server, "alice");
    let bob = User::new(&server, "bob");
    let carol = User::new(&server, "carol");
    let dropper = User::new(&server, "dropper");
    alice.ok(&["mkdir", "--encrypted", "/Vault"]);
    alice.put("alpha secret", "/Vault/a.txt");
    alice.share("/Vault", &bob, &[]);
    alice.share("/Vault", &carol, &["--permissions", "read"]);
    let (file_id, json, _) = top_metadata(&server, "alice", "Vault");

    // The server drops a well-formed file (wrapping needs only the members' public keys) into a folder no
    // member gave a drop share: it is listed as pending, never taken into the folder, and not readable.
    let document: MetadataDocument = serde_json::from_str(&json).unwrap();
    let members: Vec<TrustedUser> = document
        .users
        .unwrap()
        .into_iter()
        .map(|user| TrustedUser {
            user_id: user.user_id,
            certificate: UserCertificate::from_pem(&user.certificate).unwrap(),
        })
        .collect();
    let entry = FileEntry {
        filename: zeroize::Zeroizing::new("invoice.pdf".into()),
        mimetype: "application/pdf".into(),
        key: cloakfs::crypto::FileKey::generate(),
        nonce: cloakfs::crypto::Nonce::generate(),
        authentication_tag: [0; 16],
        unknown: Default::default(),
    };
    let forged = seal_entry(&entry, &members).unwrap();
    let section = serde_json::json!({ "0123456789abcdef0123456789abcdef": forged });
    database(&server)
        .execute(
            "UPDATE metadata SET json = json_set(json, '$.filedrop', json(?2)) WHERE node = ?1",
            rusqlite::params![file_id, section.to_string()],
        )
        .unwrap();
    let listed = alice.ok(&["ls", "/Vault"]);
    let line = listed.lines().find(|line| line.contains("invoice.pdf")).unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("[pending file drop]"), "{listed}");
    let (_, stored, _) = top_metadata(&server, "alice", "Vault");
    assert!(stored.contains("\"filedrop\""), "the forged drop was taken into the folder");
    refused(alice.run(&["get", "/Vault/invoice.pdf", "-"]), "");
    database(&server)
        .execute("UPDATE metadata SET json = json_remove(json, '$.filedrop') WHERE node = ?1", [file_id])
        .unwrap();

    // With a drop share (recorded in the trail), a real drop is taken in and stays marked as dropped.
    alice.share("/Vault", &dropper, &["--permissions", "drop"]);
    assert!(alice.ok(&["audit", "/Vault"]).contains("file-drop share given to dropper"));
    dropper.confirm(&alice);
    dropper.confirm(&bob);
    dropper.confirm(&carol);
    let local = dropper.config.0.join("report.txt");
    std::fs::write(&local, "dropped secret").unwrap();
    dropper.ok(&["drop", local.to_str().unwrap(), "/Vault"]);
    // Carol may only read: she cannot take the lock, so she sees the drop as pending, and her ls works.
    let listed = carol.ok(&["ls", "/Vault"]);
    assert!(listed.lines().any(|line| line.contains("report.txt") && line.contains("[pending file drop]")), "{listed}");
    // Bob (a writer) takes it in; everyone then sees it marked.
    let listed = bob.ok(&["ls", "/Vault"]);
    assert!(listed.lines().any(|line| line.contains("report.txt") && line.contains("[dropped]")), "{listed}");
    let listed = carol.ok(&["ls", "/Vault"]);
    assert!(listed.lines().any(|line| line.contains("report.txt") && line.contains("[dropped]")), "{listed}");
    assert!(listed.lines().any(|line| line.contains("a.txt") && !line.contains("dropped")), "{listed}");
    assert_eq!(carol.get("/Vault/report.txt"), "dropped secret");
    assert!(carol.ok(&["audit", "/Vault"]).contains("file drop taken in: report.txt"));
    // In bob's mount the dropped file carries `user.cloakfs.origin = file-drop`; a member's file has none.
    let (mountpoint, mut child, runtime_dir) = mount_as(&bob, "/Vault", &[]);
    assert_eq!(origin_xattr(&mountpoint.0.join("report.txt")).as_deref(), Some("file-drop"));
    assert_eq!(origin_xattr(&mountpoint.0.join("a.txt")), None);
    assert_eq!(std::fs::read_to_string(mountpoint.0.join("report.txt")).unwrap(), "dropped secret");
    ok(server::cloakfs().arg("unmount").arg(&mountpoint.0).env("XDG_RUNTIME_DIR", &runtime_dir).output().unwrap());
    assert!(child.wait().unwrap().success());
    // The drop share taken back is recorded too.
    alice.ok(&["unshare", "/Vault", "dropper"]);
    assert!(alice.ok(&["audit", "/Vault"]).contains("file-drop share taken from dropper"));
}

#[test]
fn a_recovery_key_can_be_removed_and_a_recovery_entry_moves_no_pin_beyond_its_folder() {
    let data = TempDir::new("tofu-recovery-data");
    let server = TestServer::start(&data.0, &["alice", "bob"]);
    let alice = User::new(&server, "alice");
    let bob = User::new(&server, "bob");
    let (key_file, _) = alice.recovery_init();
    alice.ok(&["mkdir", "--encrypted", "/A"]);
    alice.put("a secret", "/A/a.txt");
    alice.share("/A", &bob, &[]);
    alice.ok(&["mkdir", "--encrypted", "/Kept"]);
    alice.share("/Kept", &bob, &[]);
    assert!(text(&bob.run(&["members", "/Kept"]).stdout).contains("WARNING: an offline recovery key"));

    // Removed from /Kept: recorded, not warned about, and not added back by a later rotation from a device
    // that has the recovery key set.
    let removed = alice.ok(&["recovery", "remove", "/Kept"]);
    assert!(removed.contains("no longer wraps its key for a recovery key"), "{removed}");
    alice.ok(&["unshare", "/Kept", "bob"]);
    alice.share("/Kept", &bob, &[]);
    let members = bob.ok(&["members", "/Kept"]);
    assert!(!members.contains("recovery key"), "{members}");
    assert!(bob.ok(&["audit", "/Kept"]).contains("recovery key removed"));

    // The server (holding /A's recovery key, say from a careless admin) makes new keys for "bob" and uses
    // the recovery key to restore that "bob" in /A: legitimate-looking there, and bob's pin moves for /A.
    let database = database(&server);
    database.execute("DELETE FROM public_keys WHERE user = 'bob'", []).unwrap();
    database.execute("DELETE FROM private_keys WHERE user = 'bob'", []).unwrap();
    let fake_bob = User::new(&server, "bob");
    fake_bob.ok(&["recovery", "restore", "--key", key_file.to_str().unwrap(), "/A"]);
    assert_eq!(alice.get("/A/a.txt"), "a secret");
    assert!(alice.ok(&["audit", "/A"]).contains("access restored with the recovery key for bob"));
    // Beyond /A nothing moved: sharing another folder with "bob" shows the certificate as CHANGED and refuses
    // it even with its own fingerprint, unless confirmed as a new certificate.
    alice.ok(&["mkdir", "--encrypted", "/B"]);
    let fake_fingerprint = fake_bob.fingerprint();
    let message = refused(alice.run(&["share", "/B", "bob", "--fingerprint", &fake_fingerprint]), "CHANGED");
    assert!(message.contains(&fake_fingerprint), "{message}");
    refused(fake_bob.run(&["ls", "/B"]), "");
}

#[test]
fn a_trail_dropped_by_another_clients_rewrite_restarts_linked_to_the_last_head() {
    use cloakfs::metadata::encode_top_folder;
    use cloakfs::metadata::TrustedUser;

    let data = TempDir::new("tofu-restart-data");
    let server = TestServer::start(&data.0, &["alice", "bob", "carol"]);
    let alice = User::new(&server, "alice");
    let bob = User::new(&server, "bob");
    let carol = User::new(&server, "carol");
    alice.ok(&["mkdir", "--encrypted", "/Vault"]);
    alice.put("alpha secret", "/Vault/a.txt");
    alice.share("/Vault", &bob, &[]);
    assert!(bob.ok(&["members", "/Vault"]).contains("audit trail: 2 entries, verified"));

    // Bob's other client (an official one) rewrites the folder: same key and members, no `cloakfsAudit`.
    let (file_id, json, signature) = top_metadata(&server, "alice", "Vault");
    let bob_identity = bob.identity(&server);
    let server_key = server_identity(&server).public_key().clone();
    let decoded = decode_as(&json, &signature, "bob", &bob_identity, &server_key).unwrap();
    let mut folder = decoded.decoded.folder.clone();
    folder.unknown.remove("cloakfsAudit");
    folder.counter += 1;
    let users: Vec<TrustedUser> = decoded.tree.users.clone();
    let bob_certificate = users.iter().find(|user| user.user_id == "bob").unwrap().certificate.clone();
    let rewritten = encode_top_folder(
        &folder,
        &decoded.tree.metadata_key,
        &users,
        Some(&decoded.decoded.document),
        Signer { identity: &bob_identity, certificate: &bob_certificate },
    )
    .unwrap();
    store_metadata(&server, file_id, &rewritten.json, &rewritten.signature_base64);
    assert!(alice.ok(&["members", "/Vault"]).contains("DROPPED"));
    // A new laptop of alice's finds no trail to vouch for bob: he is taken on first use, and the laptop
    // refuses to write the top folder (which wraps its key for bob) until she confirms his certificate.
    let laptop = alice.new_device(&server.url);
    let members = laptop.ok(&["members", "/Vault"]);
    assert!(members.lines().any(|line| line.starts_with("bob ") && line.contains("TAKEN ON FIRST USE")), "{members}");
    let local = laptop.config.0.join("laptop.txt");
    std::fs::write(&local, "from the laptop").unwrap();
    refused(laptop.run(&["put", local.to_str().unwrap(), "/Vault/laptop.txt"]), "never confirmed on this device");
    laptop.confirm(&bob);
    laptop.ok(&["put", local.to_str().unwrap(), "/Vault/laptop.txt"]);
    assert_eq!(bob.get("/Vault/laptop.txt"), "from the laptop");

    // Alice's next membership change starts a new trail linked to the head she saw; her device and bob's
    // (which saw the old trail) accept it and say so.
    alice.share("/Vault", &carol, &[]);
    for member in [&alice, &bob, &carol] {
        let members = member.ok(&["members", "/Vault"]);
        assert!(members.contains("carol"), "{members}");
        if member.name != "carol" {
            assert!(members.contains("RESTARTED"), "{}: {members}", member.name);
        }
    }
    assert_eq!(bob.get("/Vault/a.txt"), "alpha secret");
    assert_eq!(carol.get("/Vault/a.txt"), "alpha secret");
}
