//! The file commands end to end against a real `cloakfs serve`: an encrypted folder with nested
//! sub-folders, put/get/ls/mv/rm with clear names, what the server stores (no names, no content), a
//! tampered blob, a replayed (older) metadata version, concurrent writers, and another user.

#[path = "common/server.rs"]
mod server;

use std::path::Path;
use std::process::Output;

use server::{assert_no_marker_below, client, files_below, TempDir, TestServer};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "stdout: {}\nstderr: {}", text(&output.stdout), text(&output.stderr));
    output
}

fn failed(output: Output) -> String {
    assert!(!output.status.success(), "unexpected success: {}", text(&output.stdout));
    text(&output.stderr)
}

/// A user with keys; returns the mnemonic file.
fn init_user(server: &TestServer, user: &str, config: &Path) -> std::path::PathBuf {
    let init = ok(client(&server.url, user, config, &["keys", "init"]));
    let stdout = text(&init.stdout);
    let mnemonic =
        stdout.lines().skip_while(|line| !line.starts_with("Your mnemonic")).nth(2).unwrap().trim().to_owned();
    let file = config.join(format!("{user}.words"));
    std::fs::write(&file, mnemonic).unwrap();
    file
}

struct User<'a> {
    server: &'a TestServer,
    name: &'a str,
    config: &'a Path,
    mnemonic: std::path::PathBuf,
}

impl User<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--mnemonic-file", self.mnemonic.to_str().unwrap()]);
        client(&self.server.url, self.name, self.config, &all)
    }
}

#[test]
fn files_in_nested_encrypted_folders() {
    let data = TempDir::new("files-data");
    let config = TempDir::new("files-config");
    let work = TempDir::new("files-work");
    let server = TestServer::start(&data.0, &["alice", "bob"]);
    let alice =
        User { server: &server, name: "alice", config: &config.0, mnemonic: init_user(&server, "alice", &config.0) };

    ok(alice.run(&["mkdir", "--encrypted", "/Vault"]));
    let listing = text(&ok(alice.run(&["ls", "/"])).stdout);
    assert!(listing.contains("Vault/  [encrypted]"), "{listing}");
    // Not encrypted → a clear refusal; an existing encrypted folder cannot be created again.
    assert!(failed(alice.run(&["mkdir", "/Plain"])).contains("not inside an end-to-end encrypted folder"));
    assert!(failed(alice.run(&["mkdir", "--encrypted", "/Vault"])).contains("already exists"));

    let marker_name = "MARKERNAME-7f3a9c";
    let marker_content = "MARKERCONTENT-51be02 secret plans";
    let local = work.0.join("plans.txt");
    std::fs::write(&local, marker_content).unwrap();
    ok(alice.run(&["mkdir", "/Vault/projects"]));
    ok(alice.run(&["mkdir", &format!("/Vault/projects/{marker_name}")]));
    ok(alice.run(&["put", local.to_str().unwrap(), &format!("/Vault/projects/{marker_name}/")]));
    ok(alice.run(&["put", local.to_str().unwrap(), "/Vault/top.txt"]));
    // A 3 MiB file crosses several cipher chunks.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|index| (index * 7 % 251) as u8).collect();
    std::fs::write(work.0.join("big.bin"), &big).unwrap();
    ok(alice.run(&["put", work.0.join("big.bin").to_str().unwrap(), "/Vault/projects/big.bin"]));

    let listing = text(&ok(alice.run(&["ls", "/Vault/projects"])).stdout);
    assert!(listing.contains(&format!("{marker_name}/")), "{listing}");
    assert!(listing.contains("3.0M  ") && listing.contains("big.bin"), "{listing}");

    let fetched = work.0.join("fetched.txt");
    ok(alice.run(&["get", &format!("/Vault/projects/{marker_name}/plans.txt"), fetched.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&fetched).unwrap(), marker_content);
    // get refuses to overwrite without --force.
    assert!(failed(alice.run(&["get", "/Vault/top.txt", fetched.to_str().unwrap()])).contains("--force"));
    let big_back = ok(alice.run(&["get", "/Vault/projects/big.bin", "-"])).stdout;
    assert!(big_back == big, "big file differs after the round trip");

    // Same-folder rename, cross-folder move, replace by move, folder move.
    ok(alice.run(&["mv", "/Vault/top.txt", "/Vault/renamed.txt"]));
    ok(alice.run(&["mv", "/Vault/renamed.txt", &format!("/Vault/projects/{marker_name}/")]));
    ok(alice.run(&["mv", &format!("/Vault/projects/{marker_name}/renamed.txt"), "/Vault/projects/big.bin"]));
    ok(alice.run(&["mv", &format!("/Vault/projects/{marker_name}"), "/Vault/moved"]));
    assert!(failed(alice.run(&["mv", "/Vault/projects", "/Vault/projects/inside"])).contains("into itself"));
    let root = text(&ok(alice.run(&["ls", "/Vault"])).stdout);
    assert!(root.contains("moved/") && root.contains("projects/") && !root.contains("renamed.txt"), "{root}");
    let projects = text(&ok(alice.run(&["ls", "/Vault/projects"])).stdout);
    assert!(projects.contains("big.bin") && !projects.contains(marker_name), "{projects}");
    let replaced = ok(alice.run(&["get", "/Vault/projects/big.bin", "-"])).stdout;
    assert_eq!(text(&replaced), marker_content, "mv onto an existing file replaces it");

    // rm: a non-empty folder needs -r.
    assert!(failed(alice.run(&["rm", "/Vault/moved"])).contains("not empty"));
    ok(alice.run(&["rm", "/Vault/moved/plans.txt"]));
    ok(alice.run(&["rm", "/Vault/moved"]));
    assert!(failed(alice.run(&["get", "/Vault/moved/plans.txt", "-"])).contains("no such file"));

    // The server holds no clear name and no content; deleted and replaced blobs are gone.
    assert_no_marker_below(&data.0, &[marker_name.as_bytes(), b"MARKERCONTENT", b"plans.txt", b"big.bin", b"projects"]);
    let blobs = files_below(&data.0.join("blobs"));
    assert_eq!(blobs.len(), 1, "one file remains: {blobs:?}");

    // Bob has keys too, but cannot read Alice's folder: it is not in his file space.
    let bob = User { server: &server, name: "bob", config: &config.0, mnemonic: init_user(&server, "bob", &config.0) };
    let refused = failed(bob.run(&["ls", "/Vault"]));
    assert!(refused.contains("no such file"), "{refused}");
}

#[test]
fn tampering_and_rollback_are_detected() {
    let data = TempDir::new("tamper-data");
    let config = TempDir::new("tamper-config");
    let work = TempDir::new("tamper-work");
    let server = TestServer::start(&data.0, &["alice"]);
    let alice =
        User { server: &server, name: "alice", config: &config.0, mnemonic: init_user(&server, "alice", &config.0) };
    ok(alice.run(&["mkdir", "--encrypted", "/Vault"]));
    std::fs::write(work.0.join("a.txt"), "first version").unwrap();
    ok(alice.run(&["put", work.0.join("a.txt").to_str().unwrap(), "/Vault/a.txt"]));

    // Flip one bit of the blob on the server: get fails, prints no plaintext, names the server-side file.
    let blob = files_below(&data.0.join("blobs")).pop().unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let output = alice.run(&["get", "/Vault/a.txt", "-"]);
    assert!(output.stdout.is_empty(), "plaintext printed from a tampered blob");
    let error = failed(output);
    assert!(error.contains("authentication") || error.contains("tag"), "{error}");
    bytes[3] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    ok(alice.run(&["get", "/Vault/a.txt", "-"]));

    // Replay: save the current metadata, write a new version, put the old metadata back in the database.
    let database = data.0.join("cloakfs-server.sqlite3");
    let saved = sqlite(&database, "SELECT json || char(10) || signature FROM metadata ORDER BY node LIMIT 1");
    std::fs::write(work.0.join("a.txt"), "second version").unwrap();
    ok(alice.run(&["put", work.0.join("a.txt").to_str().unwrap(), "/Vault/a.txt"]));
    let (json, signature) = saved.trim_end().split_once('\n').unwrap();
    sqlite(
        &database,
        &format!(
            "UPDATE metadata SET json = '{}', signature = '{}' WHERE node = (SELECT node FROM metadata ORDER BY node LIMIT 1)",
            json.replace('\'', "''"),
            signature
        ),
    );
    let error = failed(alice.run(&["ls", "/Vault"]));
    assert!(error.contains("counter") || error.contains("rolled back"), "{error}");
    assert_no_marker_below(&data.0, &[b"a.txt", b"first version", b"second version"]);
}

#[test]
fn two_writers_do_not_lose_updates() {
    let data = TempDir::new("writers-data");
    let config = TempDir::new("writers-config");
    let work = TempDir::new("writers-work");
    let server = TestServer::start(&data.0, &["alice"]);
    let alice =
        User { server: &server, name: "alice", config: &config.0, mnemonic: init_user(&server, "alice", &config.0) };
    ok(alice.run(&["mkdir", "--encrypted", "/Vault"]));
    // Eight uploads at once into one folder: each must take the lock in turn (423 → retry) and re-read
    // the metadata under it, so every file survives.
    let handles: Vec<_> = (0..8)
        .map(|index| {
            let local = work.0.join(format!("f{index}.txt"));
            std::fs::write(&local, format!("content {index}")).unwrap();
            let mut command = server::cloakfs();
            command
                .args(["put", local.to_str().unwrap(), &format!("/Vault/f{index}.txt")])
                .args(["--server", &server.url, "--user", "alice", "--mnemonic-file"])
                .arg(&alice.mnemonic)
                .env("XDG_CONFIG_HOME", &config.0)
                .env("CLOAKFS_PASSWORD", server::PASSWORD);
            command.spawn().unwrap()
        })
        .collect();
    for mut handle in handles {
        assert!(handle.wait().unwrap().success());
    }
    let listing = text(&ok(alice.run(&["ls", "/Vault"])).stdout);
    for index in 0..8 {
        assert!(listing.contains(&format!("f{index}.txt")), "f{index}.txt lost:\n{listing}");
    }
    // Each change advanced the folder's counter by at least one: creation (1) + eight uploads. (A writer
    // whose lock was refused for a stale counter asks for a higher one, so the counter may skip values.)
    let pins: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.0.join("cloakfs/pins.json")).unwrap()).unwrap();
    let counters = pins.pointer(&format!("/servers/{}/counters", server.url.replace('/', "~1"))).unwrap();
    let highest = counters.as_object().unwrap().values().filter_map(|value| value.as_u64()).max();
    assert!(highest.is_some_and(|counter| counter >= 9), "{counters}");
    assert_no_marker_below(&data.0, &[b"f0.txt", b"f7.txt", b"content 3"]);
}

/// Runs one SQL statement with the sqlite3 shell of the bundled library's format, through rusqlite.
fn sqlite(database: &Path, sql: &str) -> String {
    let connection = rusqlite::Connection::open(database).unwrap();
    if sql.trim_start().to_ascii_uppercase().starts_with("SELECT") {
        connection.query_row(sql, [], |row| row.get::<_, String>(0)).unwrap()
    } else {
        connection.execute(sql, []).unwrap();
        String::new()
    }
}
