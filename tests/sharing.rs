//! Sharing against a real `cloakfs serve` with two and three users: share, both write, members and the
//! audit trail, unshare (the removed user is refused; with --rekey-files their old file keys open nothing on
//! the server), file drops, the offline recovery key, and a malicious server that adds a member, swaps a
//! member's certificate, replays an older member list or edits the audit trail.

#[path = "common/mount.rs"]
mod mount;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/server.rs"]
mod server;

use std::path::PathBuf;
use std::process::Output;

use cloakfs::crypto::private_key_wrap::unwrap_private_key;
use cloakfs::crypto::{Mnemonic, PrivateIdentity};
use cloakfs::metadata::{decode_top_folder, Reader, ServerKeyTrust};
use server::{client, TempDir, TestServer};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "stdout: {}\nstderr: {}", text(&output.stdout), text(&output.stderr));
    output
}

fn refused(output: Output, expected: &str) -> String {
    let message = text(&output.stderr);
    assert!(!output.status.success(), "unexpected success: {}", text(&output.stdout));
    assert!(message.contains(expected), "expected {expected:?} in: {message}");
    eprintln!("refused as expected: {}", message.trim());
    message
}

/// One user of the test server, with their own pin store (a device of their own).
struct User {
    url: String,
    name: String,
    config: TempDir,
    mnemonic: PathBuf,
}

impl User {
    /// Creates keys for `name` (their mnemonic kept in their config folder).
    fn new(server: &TestServer, name: &str) -> Self {
        Self::new_at(name, &server.url)
    }

    /// Like [`User::new`], reaching the server at `url` (a proxy) from the start: pins are per URL.
    fn new_at(name: &str, url: &str) -> Self {
        let config = TempDir::new(&format!("share-{name}"));
        let init = ok(client(url, name, &config.0, &["keys", "init"]));
        let stdout = text(&init.stdout);
        let words =
            stdout.lines().skip_while(|line| !line.starts_with("Your mnemonic")).nth(2).unwrap().trim().to_owned();
        let mnemonic = config.0.join("words");
        std::fs::write(&mnemonic, words).unwrap();
        Self { url: url.to_owned(), name: name.into(), config, mnemonic }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--mnemonic-file", self.mnemonic.to_str().unwrap()]);
        client(&self.url, &self.name, &self.config.0, &all)
    }

    fn ok(&self, args: &[&str]) -> String {
        text(&ok(self.run(args)).stdout)
    }

    fn put(&self, content: &str, destination: &str) {
        let local = self.config.0.join("upload");
        std::fs::write(&local, content).unwrap();
        let name = destination.rsplit('/').next().unwrap();
        let named = self.config.0.join(name);
        std::fs::rename(&local, &named).unwrap();
        self.ok(&["put", named.to_str().unwrap(), destination]);
        std::fs::remove_file(named).unwrap();
    }

    fn get(&self, path: &str) -> String {
        self.ok(&["get", path, "-"])
    }

    /// This user's private key, unwrapped from the server's copy with their mnemonic (what the user's own
    /// device holds; tests use it to play a removed member who kept keys).
    fn identity(&self, server: &TestServer) -> PrivateIdentity {
        let database = rusqlite::Connection::open(server.data.join("cloakfs-server.sqlite3")).unwrap();
        let wrapped: String = database
            .query_row("SELECT wrapped FROM private_keys WHERE user = ?1", [&self.name], |row| row.get(0))
            .unwrap();
        let words = std::fs::read_to_string(&self.mnemonic).unwrap();
        unwrap_private_key(&wrapped, &Mnemonic::parse(&words).unwrap()).unwrap().0
    }
}

fn database(server: &TestServer) -> rusqlite::Connection {
    rusqlite::Connection::open(server.data.join("cloakfs-server.sqlite3")).unwrap()
}

fn server_identity(server: &TestServer) -> PrivateIdentity {
    let der: Vec<u8> =
        database(server).query_row("SELECT pkcs8 FROM server_key WHERE id = 1", [], |row| row.get(0)).unwrap();
    PrivateIdentity::from_pkcs8_der(&der).unwrap()
}

/// The committed metadata (JSON, signature) of the top folder `name` of `owner`.
fn top_metadata(server: &TestServer, owner: &str, name: &str) -> (i64, String, String) {
    database(server)
        .query_row(
            "SELECT n.id, m.json, m.signature FROM nodes n JOIN metadata m ON m.node = n.id \
             JOIN nodes r ON n.parent = r.id WHERE r.parent IS NULL AND r.owner = ?1 AND n.name = ?2",
            [owner, name],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
}

/// Whether a blob of this server name exists anywhere on the server.
fn blob_exists(server: &TestServer, server_name: &str) -> bool {
    database(server)
        .query_row("SELECT count(*) FROM nodes WHERE name = ?1", [server_name], |row| row.get::<_, i64>(0))
        .unwrap()
        > 0
}

/// The bytes of the blob named `server_name`.
fn blob_bytes(server: &TestServer, server_name: &str) -> Vec<u8> {
    let blob: String =
        database(server).query_row("SELECT blob FROM nodes WHERE name = ?1", [server_name], |row| row.get(0)).unwrap();
    std::fs::read(server.data.join("blobs").join(&blob[..2]).join(&blob)).unwrap()
}

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

    // Share: bob's certificate is shown and pinned, the folder appears in bob's tree.
    let shared = alice.ok(&["share", "/Vault", "bob"]);
    assert!(shared.contains("certificate of bob: SHA256 ") && shared.contains("pinned now"), "{shared}");
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
    alice.ok(&["share", "/Vault", "carol", "--permissions", "read"]);
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
    let old = decode_top_folder(
        &json,
        &signature,
        Reader { user_id: "bob", identity: &bob_identity },
        &ServerKeyTrust { server_key: &server_key },
        None,
    )
    .unwrap();
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
    let current = decode_top_folder(
        &json,
        &signature,
        Reader { user_id: "bob", identity: &bob_identity },
        &ServerKeyTrust { server_key: &server_key },
        None,
    );
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
    let now = decode_top_folder(
        &json,
        &signature,
        Reader { user_id: "alice", identity: &alice_identity },
        &ServerKeyTrust { server_key: &server_key },
        None,
    )
    .unwrap();
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

/// Serves `json` and `signature` for every metadata request (listings lose their metadata properties, so
/// the client asks the OCS API, whose answers the hook rewrites).
fn serve_forged(proxy: &proxy::Proxy, file_id: i64, json: String, signature: String) {
    proxy.after(move |seen, answer| {
        if seen.method == "PROPFIND" {
            let mut body = String::from_utf8(std::mem::take(&mut answer.body)).unwrap();
            for tag in ["nc:e2ee-metadata-signature", "nc:e2ee-metadata"] {
                let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
                while let Some(start) = body.find(&open) {
                    let end = body[start..].find(&close).map(|end| start + end + close.len()).unwrap();
                    body.replace_range(start..end, "");
                }
            }
            answer.body = body.into_bytes();
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
    alice.ok(&["share", "/Vault", "bob"]);
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
    folder.key_checksums = Some(vec![key.sha256_hex()]);
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
    let decoded = decode_top_folder(
        &json,
        &signature,
        Reader { user_id: "bob", identity: &bob_identity },
        &ServerKeyTrust { server_key: &server_key },
        None,
    )
    .unwrap();
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
    alice.ok(&["share", "/Vault", "bob"]);

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
        let decoded = decode_top_folder(
            &json,
            &signature,
            Reader { user_id: name, identity: &identity },
            &ServerKeyTrust { server_key: &server_key },
            None,
        )
        .unwrap();
        assert_eq!(decoded.decoded.signed_by, "alice");
        let checksums = decoded.decoded.folder.key_checksums.clone().unwrap();
        assert_eq!(checksums.len(), 2, "keyChecksums keeps the old key's checksum and adds the new one");
        assert_eq!(checksums[1], decoded.tree.metadata_key.sha256_hex());
        keys_seen.push(decoded.tree.metadata_key.sha256_hex());
    }
    assert_eq!(keys_seen[0], keys_seen[1], "every member gets the same new key");
    // The first entry of keyChecksums is the key of the version before the share.
    let alice_identity = alice.identity(&server);
    let before = decode_top_folder(
        &json_before,
        &signature_before,
        Reader { user_id: "alice", identity: &alice_identity },
        &ServerKeyTrust { server_key: &server_key },
        None,
    )
    .unwrap();
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
    let top = decode_top_folder(
        &json,
        &signature,
        Reader { user_id: "bob", identity: &bob_identity },
        &ServerKeyTrust { server_key: &server_key },
        None,
    )
    .unwrap();
    cloakfs::metadata::decode_sub_folder(&sub.0, &sub.1, &top.tree, None).unwrap();

    // A file drop: the dropper cannot read the folder, but can add a file its members then see.
    alice.ok(&["share", "/Vault", "dropper", "--permissions", "drop"]);
    refused(dropper.run(&["get", "/Vault/a.txt", "-"]), "");
    let local = dropper.config.0.join("report.txt");
    std::fs::write(&local, "dropped secret").unwrap();
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
    let key_file = alice.config.0.join("recovery.pem");
    let public_file = alice.config.0.join("recovery.pub.pem");
    let init = ok(client(
        &server.url,
        "alice",
        &alice.config.0,
        &[
            "recovery",
            "init",
            "--private-key-out",
            key_file.to_str().unwrap(),
            "--public-key-out",
            public_file.to_str().unwrap(),
        ],
    ));
    assert!(text(&init.stderr).contains("recovery key SHA256"));
    // A key rotation (here: bob removed and added again) wraps the new key for the recovery key too.
    alice.ok(&["unshare", "/Vault", "bob"]);
    alice.ok(&["share", "/Vault", "bob"]);
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
    decode_top_folder(json, signature, Reader { user_id: "alice", identity }, &ServerKeyTrust { server_key }, None)
        .unwrap()
        .decoded
        .folder
        .key_checksums
        .unwrap()
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
    alice.ok(&["share", "/Vault", "bob"]);
    alice.ok(&["share", "/Vault", "carol"]);
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

#[test]
fn a_running_mount_follows_a_membership_change_made_elsewhere_and_keeps_it() {
    use std::io::Write as _;

    let account = mount::Account::new("share-mount");
    ok(server::cloakfs()
        .args(["serve", "user", "add", "bob", "--data"])
        .arg(&account.data.0)
        .env("CLOAKFS_PASSWORD", server::PASSWORD)
        .output()
        .unwrap());
    let bob = User::new(&account.server, "bob");
    ok(account.run(&["mkdir", "/Vault/sub"]));
    let mounted = account.mount("share-mount");
    // Another device of alice's shares the folder: the key rotates and every sub-folder is re-encrypted.
    ok(account.run(&["share", "/Vault", "bob"]));
    bob.put("from bob", "/Vault/sub/bob.txt");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // The mount reads bob's file in a sub-folder now under the new key, signed by a member it had not seen.
    assert_eq!(std::fs::read_to_string(mounted.path("sub/bob.txt")).unwrap(), "from bob");
    // And what it writes keeps bob a member, under the new key.
    let mut file = std::fs::File::create(mounted.path("from-mount.txt")).unwrap();
    file.write_all(b"from the mount").unwrap();
    file.sync_all().unwrap();
    drop(file);
    std::fs::write(mounted.path("sub/also.txt"), "also from the mount").unwrap();
    std::fs::File::open(mounted.path("sub/also.txt")).unwrap().sync_all().unwrap();
    assert_eq!(bob.get("/Vault/from-mount.txt"), "from the mount");
    assert_eq!(bob.get("/Vault/sub/also.txt"), "also from the mount");
    let members = bob.ok(&["members", "/Vault"]);
    assert!(members.lines().any(|line| line.starts_with("bob ")), "{members}");
    ok(mounted.unmount());

    // Bob mounts the folder as it appears in his tree and writes with his own keys.
    let bob_mount = TempDir::new("share-bob-mnt");
    let runtime_dir = bob.config.0.join("run");
    std::fs::create_dir_all(&runtime_dir).unwrap();
    let mut child = server::cloakfs()
        .args(["mount", "/Vault"])
        .arg(&bob_mount.0)
        .args(["--server", &bob.url, "--user", "bob", "--mnemonic-file"])
        .arg(&bob.mnemonic)
        .args(["--dir-cache-time", "1", "--commit-delay", "200"])
        .env("XDG_CONFIG_HOME", &bob.config.0)
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .env("CLOAKFS_PASSWORD", server::PASSWORD)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    loop {
        let line = lines.next().expect("bob's mount exited before mounting").unwrap();
        if line.contains(" mounted at ") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!(std::fs::read_to_string(bob_mount.0.join("from-mount.txt")).unwrap(), "from the mount");
    let mut file = std::fs::File::create(bob_mount.0.join("sub/by-bob-mount.txt")).unwrap();
    file.write_all(b"written in bob's mount").unwrap();
    file.sync_all().unwrap();
    drop(file);
    let unmounted =
        server::cloakfs().arg("unmount").arg(&bob_mount.0).env("XDG_RUNTIME_DIR", &runtime_dir).output().unwrap();
    ok(unmounted);
    assert!(child.wait().unwrap().success());
    assert_eq!(text(&ok(account.run(&["get", "/Vault/sub/by-bob-mount.txt", "-"])).stdout), "written in bob's mount");
}
