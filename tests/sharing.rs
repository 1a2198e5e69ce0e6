//! Sharing against a real `cloakfs serve` with two and three users: share, both write, members and the
//! audit trail, unshare (the removed user is refused; with --rekey-files their old file keys open nothing on
//! the server), file drops, the offline recovery key, and a malicious server that adds a member, swaps a
//! member's certificate, replays an older member list or edits the audit trail.

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
        let config = TempDir::new(&format!("share-{name}"));
        let init = ok(client(&server.url, name, &config.0, &["keys", "init"]));
        let stdout = text(&init.stdout);
        let words =
            stdout.lines().skip_while(|line| !line.starts_with("Your mnemonic")).nth(2).unwrap().trim().to_owned();
        let mnemonic = config.0.join("words");
        std::fs::write(&mnemonic, words).unwrap();
        Self { url: server.url.clone(), name: name.into(), config, mnemonic }
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

    // --rekey-files: every file gets a fresh key and server name; the old blob is gone.
    let rekeyed = alice.ok(&["unshare", "/Vault", "bob", "--rekey-files"]);
    assert!(rekeyed.contains("files re-encrypted under fresh keys"), "{rekeyed}");
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
