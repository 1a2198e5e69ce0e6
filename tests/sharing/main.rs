//! Sharing against a real `cloakfs serve` with two and three users: share, both write, members and the
//! audit trail, unshare (the removed user is refused; with --rekey-files their old file keys open nothing on
//! the server), file drops, the offline recovery key, and a malicious server that adds a member, swaps a
//! member's certificate, replays an older member list or edits the audit trail.

#[path = "../common/mount.rs"]
mod mount;
#[path = "../common/proxy.rs"]
mod proxy;
#[path = "../common/pty.rs"]
mod pty;
#[path = "../common/server.rs"]
mod server;

mod attacks;
mod drops;
mod first_use;
mod members;
mod mounted;
mod recovery;

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

    /// `cloakfs recovery init` on this user's device: the private key is written to a file in their config
    /// folder (returned with the command's output), the public half set on the device.
    fn recovery_init(&self) -> (PathBuf, Output) {
        let key_file = self.config.0.join("recovery.pem");
        let public_file = self.config.0.join("recovery.pub.pem");
        let args = [
            "recovery",
            "init",
            "--private-key-out",
            key_file.to_str().unwrap(),
            "--public-key-out",
            public_file.to_str().unwrap(),
        ];
        let output = ok(client(&self.url, &self.name, &self.config.0, &args));
        (key_file, output)
    }

    /// This user's certificate fingerprint, as `cloakfs keys check` prints it on their own device (what
    /// they read to someone sharing with them).
    fn fingerprint(&self) -> String {
        let checked = self.ok(&["keys", "check"]);
        checked.trim().rsplit(' ').next().unwrap().to_owned()
    }

    /// `cloakfs share PATH OTHER --fingerprint F` with F read from `other`'s own device, plus `extra`.
    fn share(&self, path: &str, other: &User, extra: &[&str]) -> String {
        let fingerprint = other.fingerprint();
        let mut args = vec!["share", path, other.name.as_str(), "--fingerprint", fingerprint.as_str()];
        args.extend(extra);
        self.ok(&args)
    }

    /// `cloakfs confirm OTHER --fingerprint F` with F read from `other`'s own device.
    fn confirm(&self, other: &User) {
        let fingerprint = other.fingerprint();
        self.ok(&["confirm", other.name.as_str(), "--fingerprint", fingerprint.as_str()]);
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

/// Mounts `remote` for `user` (their own device) with `extra` mount arguments; returns the mount point, the
/// mount process and its runtime directory (for `cloakfs unmount`).
fn mount_as(user: &User, remote: &str, extra: &[&str]) -> (TempDir, std::process::Child, std::path::PathBuf) {
    let mountpoint = TempDir::new(&format!("mnt-{}", user.name));
    let runtime_dir = user.config.0.join("run");
    std::fs::create_dir_all(&runtime_dir).unwrap();
    let mut child = server::cloakfs()
        .args(["mount", remote])
        .arg(&mountpoint.0)
        .args(["--server", &user.url, "--user", &user.name, "--mnemonic-file"])
        .arg(&user.mnemonic)
        .args(extra)
        .env("XDG_CONFIG_HOME", &user.config.0)
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .env("CLOAKFS_PASSWORD", server::PASSWORD)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    loop {
        let line = lines.next().expect("the mount exited before mounting").unwrap();
        if line.contains(" mounted at ") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (mountpoint, child, runtime_dir)
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

/// Decodes a top folder's metadata as `user` with `identity` (what that member's device can read).
fn decode_as(
    json: &str,
    signature: &str,
    user: &str,
    identity: &PrivateIdentity,
    server_key: &cloakfs::crypto::PublicKey,
) -> Result<cloakfs::metadata::DecodedTopFolder, cloakfs::metadata::MetadataError> {
    decode_top_folder(json, signature, Reader { user_id: user, identity }, &ServerKeyTrust { server_key }, None)
}
