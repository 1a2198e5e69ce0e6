//! Cryptomator vaults (format 8) over real third-party WebDAV servers (Apache mod_dav and rclone serve
//! webdav) and in a local folder: the `cloakfs vault` commands end to end with both cipher combinations,
//! long names, renames between short and long names; a vault read and written by an independent
//! implementation (pycryptomator) both ways; tampering on the server refused with the ciphertext path; an
//! older vault format refused with what to do; a concurrent writer detected on each server.

#[path = "common/dav.rs"]
mod dav;
#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::Output;

use cloakfs::cryptomator::vault::{ClearText, Written};
use cloakfs::cryptomator::{CryptomatorError, CryptomatorVault};
use cloakfs::storage::webdav::{DavConfig, DavStore};
use dav::{pycryptomator, DavServer, DAV_PASSWORD, DAV_USER};
use server::{cloakfs, TempDir};

const PASSPHRASE: &str = "correct horse battery staple";

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|index| ((index as u64 * 2654435761) >> 7) as u8 ^ seed).collect()
}

/// `cloakfs vault ARGS…` against `location` with the test credentials.
fn vault(location: &str, args: &[&str], passphrase: &str) -> Output {
    let (command, rest) = args.split_first().unwrap();
    let mut process = cloakfs();
    process.args(["vault", command, location]).args(rest).env("CLOAKFS_PASSPHRASE", passphrase);
    if location.starts_with("http") {
        process.args(["--user", DAV_USER]).env("CLOAKFS_PASSWORD", DAV_PASSWORD);
    }
    process.output().unwrap()
}

fn ok_bytes(output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout[..output.stdout.len().min(2000)])
    );
    output.stdout
}

fn ok(output: Output) -> String {
    String::from_utf8_lossy(&ok_bytes(output)).into_owned()
}

fn fails(output: Output) -> String {
    assert!(!output.status.success(), "unexpectedly succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn names(listing: &str) -> Vec<String> {
    listing.lines().map(|line| line.rsplit("  ").next().unwrap().trim_end_matches('/').to_owned()).collect()
}

/// Everything the file commands do, on one vault.
fn exercise_commands(location: &str, cipher: &str, scratch: &Path) {
    ok(vault(location, &["create", "--cipher", cipher], PASSPHRASE));
    let info = ok(vault(location, &["info"], PASSPHRASE));
    assert!(info.contains(&cipher.to_uppercase().replace('-', "_")), "{info}");
    let wrong = fails(vault(location, &["ls"], "not the passphrase"));
    assert!(wrong.contains("wrong passphrase"), "{wrong}");
    let again = fails(vault(location, &["create"], PASSPHRASE));
    assert!(again.contains("exists already"), "{again}");

    let long_name = format!("{}.txt", "é".repeat(110));
    let files: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("one byte".into(), vec![42]),
        ("exactly one chunk.bin".into(), pattern(32 * 1024, 1)),
        ("three chunks and a bit.bin".into(), pattern(3 * 32 * 1024 + 1234, 2)),
        (long_name.clone(), pattern(5000, 3)),
    ];
    ok(vault(location, &["mkdir", "/docs"], PASSPHRASE));
    ok(vault(location, &["mkdir", "/docs/deeper"], PASSPHRASE));
    let cycle = fails(vault(location, &["mv", "/docs", "/docs/deeper/inside"], PASSPHRASE));
    assert!(cycle.contains("into itself"), "{cycle}");
    for (name, content) in &files {
        let local = scratch.join("upload");
        std::fs::write(&local, content).unwrap();
        ok(vault(location, &["put", local.to_str().unwrap(), &format!("/docs/deeper/{name}")], PASSPHRASE));
    }
    let listing = ok(vault(location, &["ls", "/docs/deeper"], PASSPHRASE));
    let mut expected: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
    expected.sort();
    assert_eq!(names(&listing), expected, "{listing}");
    for (name, content) in &files {
        let got = ok_bytes(vault(location, &["get", &format!("/docs/deeper/{name}"), "-"], PASSPHRASE));
        assert!(got == *content, "{name}: the content differs");
    }
    // Replacing a file.
    std::fs::write(scratch.join("upload"), b"second version").unwrap();
    ok(vault(location, &["put", scratch.join("upload").to_str().unwrap(), "/docs/deeper/one byte"], PASSPHRASE));
    assert_eq!(ok(vault(location, &["get", "/docs/deeper/one byte", "-"], PASSPHRASE)), "second version");

    // Renames: short to long name, long to short, into another folder, a folder (its contents follow).
    let long_target = format!("/docs/deeper/{}", "ü".repeat(120));
    ok(vault(location, &["mv", "/docs/deeper/one byte", &long_target], PASSPHRASE));
    assert_eq!(ok(vault(location, &["get", &long_target, "-"], PASSPHRASE)), "second version");
    ok(vault(location, &["mv", &format!("/docs/deeper/{long_name}"), "/short.txt"], PASSPHRASE));
    assert!(ok_bytes(vault(location, &["get", "/short.txt", "-"], PASSPHRASE)) == pattern(5000, 3));
    ok(vault(location, &["mv", "/docs/deeper", "/moved"], PASSPHRASE));
    let moved = ok(vault(location, &["ls", "/moved"], PASSPHRASE));
    assert!(moved.contains("three chunks and a bit.bin"), "{moved}");
    assert!(
        ok_bytes(vault(location, &["get", "/moved/three chunks and a bit.bin", "-"], PASSPHRASE))
            == pattern(3 * 32 * 1024 + 1234, 2)
    );
    // A long-named folder.
    let long_folder = format!("/{}", "ß".repeat(130));
    ok(vault(location, &["mv", "/moved", &long_folder], PASSPHRASE));
    assert!(ok(vault(location, &["ls", &long_folder], PASSPHRASE)).contains("empty"));
    ok(vault(location, &["mv", &long_folder, "/back"], PASSPHRASE));

    // Removal: a non-empty folder needs -r.
    let refused = fails(vault(location, &["rm", "/back"], PASSPHRASE));
    assert!(refused.contains("not empty"), "{refused}");
    ok(vault(location, &["rm", "/back/empty"], PASSPHRASE));
    ok(vault(location, &["rm", "-r", "/back"], PASSPHRASE));
    ok(vault(location, &["rm", "-r", "/docs"], PASSPHRASE));
    assert_eq!(names(&ok(vault(location, &["ls"], PASSPHRASE))), vec!["short.txt".to_owned()]);
    let missing = fails(vault(location, &["get", "/docs/nothing", "-"], PASSPHRASE));
    assert!(missing.contains("no such file"), "{missing}");
}

/// Every file below `root` (relative paths), for checking what a server stores.
fn files_below(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    found
}

#[test]
fn vault_commands_over_apache_mod_dav_with_both_cipher_combinations() {
    let server = DavServer::apache("commands");
    let scratch = TempDir::new("cm-apache");
    for cipher in ["siv-gcm", "siv-ctrmac"] {
        let location = server.folder(&format!("Vault-{cipher}"));
        exercise_commands(&location, cipher, &scratch.0);
        // What the server holds: no clear name anywhere, only the format's files.
        for path in files_below(&server.root.join(format!("Vault-{cipher}"))) {
            let text = path.to_string_lossy();
            assert!(!text.contains("short") && !text.contains("docs") && !text.contains("chunk"), "{text}");
        }
    }
}

#[test]
fn vault_commands_over_rclone_serve_webdav() {
    let server = DavServer::rclone("commands");
    let scratch = TempDir::new("cm-rclone");
    exercise_commands(&server.folder("Vault"), "siv-gcm", &scratch.0);
}

#[test]
fn vault_commands_in_a_local_folder() {
    let scratch = TempDir::new("cm-local");
    let location = scratch.0.join("Vault");
    std::fs::create_dir(&location).unwrap();
    exercise_commands(location.to_str().unwrap(), "siv-ctrmac", &scratch.0);
}

/// pycryptomator (independent, pure Python) reads what cloakfs wrote over WebDAV, and cloakfs reads and
/// changes a vault pycryptomator created, which pycryptomator then reads back.
#[test]
fn an_independent_implementation_reads_our_vault_and_we_read_and_change_its_vault() {
    let server = DavServer::apache("pycryptomator");
    let scratch = TempDir::new("cm-py");
    let long_name = "ń".repeat(150);
    // Ours, read by pycryptomator from the folder the server stores.
    let ours = server.folder("Ours");
    ok(vault(&ours, &["create"], PASSPHRASE));
    ok(vault(&ours, &["mkdir", "/a"], PASSPHRASE));
    std::fs::write(scratch.0.join("big"), pattern(200_000, 9)).unwrap();
    ok(vault(&ours, &["put", scratch.0.join("big").to_str().unwrap(), &format!("/a/{long_name}")], PASSPHRASE));
    std::fs::write(scratch.0.join("small"), b"small file").unwrap();
    ok(vault(&ours, &["put", scratch.0.join("small").to_str().unwrap(), "/a/small.txt"], PASSPHRASE));
    let stored = server.root.join("Ours");
    let listing =
        ok(pycryptomator().args(["--password", PASSPHRASE]).arg(&stored).args(["ls", "-r", "/"]).output().unwrap());
    assert!(listing.contains("small.txt") && listing.contains(&long_name), "{listing}");
    for (name, expected) in [("small.txt".to_owned(), b"small file".to_vec()), (long_name.clone(), pattern(200_000, 9))]
    {
        let out = scratch.0.join(format!("py-{}", expected.len()));
        ok(pycryptomator()
            .args(["--password", PASSPHRASE])
            .arg(&stored)
            .args(["decrypt", &format!("/a/{name}")])
            .arg(&out)
            .output()
            .unwrap());
        assert!(std::fs::read(&out).unwrap() == expected, "pycryptomator decrypted {name} differently");
    }

    // Theirs: created and filled by pycryptomator in the server's folder, then used over WebDAV.
    let theirs_dir = server.root.join("Theirs");
    std::fs::create_dir(&theirs_dir).unwrap();
    ok(pycryptomator().args(["--init", "--password", PASSPHRASE]).arg(&theirs_dir).output().unwrap());
    ok(pycryptomator().args(["--password", PASSPHRASE]).arg(&theirs_dir).args(["mkdir", "/x/y"]).output().unwrap());
    std::fs::write(scratch.0.join("theirs"), pattern(70_000, 4)).unwrap();
    ok(pycryptomator()
        .args(["--password", PASSPHRASE])
        .arg(&theirs_dir)
        .args(["encrypt"])
        .arg(scratch.0.join("theirs"))
        .arg(format!("/x/y/{long_name}"))
        .output()
        .unwrap());
    server.settle_ownership();
    let theirs = format!("{}/Theirs", server.url);
    assert_eq!(names(&ok(vault(&theirs, &["ls", "/x/y"], PASSPHRASE))), vec![long_name.clone()]);
    assert!(ok_bytes(vault(&theirs, &["get", &format!("/x/y/{long_name}"), "-"], PASSPHRASE)) == pattern(70_000, 4));
    ok(vault(&theirs, &["mv", &format!("/x/y/{long_name}"), "/x/renamed.bin"], PASSPHRASE));
    std::fs::write(scratch.0.join("ours-in-theirs"), b"written by cloakfs").unwrap();
    ok(vault(&theirs, &["put", scratch.0.join("ours-in-theirs").to_str().unwrap(), "/x/y/new.txt"], PASSPHRASE));
    ok(vault(&theirs, &["mkdir", "/x/made-by-cloakfs"], PASSPHRASE));
    let listing = ok(pycryptomator()
        .args(["--password", PASSPHRASE])
        .arg(&theirs_dir)
        .args(["ls", "-r", "/x"])
        .output()
        .unwrap());
    assert!(
        listing.contains("renamed.bin") && listing.contains("new.txt") && listing.contains("made-by-cloakfs"),
        "{listing}"
    );
    let out = scratch.0.join("py-renamed");
    ok(pycryptomator()
        .args(["--password", PASSPHRASE])
        .arg(&theirs_dir)
        .args(["decrypt", "/x/renamed.bin"])
        .arg(&out)
        .output()
        .unwrap());
    assert!(std::fs::read(&out).unwrap() == pattern(70_000, 4), "pycryptomator read our rename differently");
}

/// The encrypted files (`.c9r` nodes, not `dir.c9r` or `dirid.c9r`) of the vault stored at `root`.
fn stored_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = files_below(root)
        .into_iter()
        .filter(|path| {
            path.extension().is_some_and(|extension| extension == "c9r")
                && !path.ends_with("dirid.c9r")
                && !path.ends_with("dir.c9r")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn tampering_on_the_server_is_an_error_naming_the_ciphertext_never_plaintext() {
    let server = DavServer::apache("tamper");
    let scratch = TempDir::new("cm-tamper");
    let location = server.folder("Vault");
    let root = server.root.join("Vault");
    ok(vault(&location, &["create"], PASSPHRASE));
    ok(vault(&location, &["mkdir", "/other"], PASSPHRASE));
    let upload = |name: &str, content: &[u8]| {
        let before = stored_files(&root);
        std::fs::write(scratch.0.join("upload"), content).unwrap();
        ok(vault(&location, &["put", scratch.0.join("upload").to_str().unwrap(), name], PASSPHRASE));
        let after = stored_files(&root);
        root.join(after.into_iter().find(|path| !before.contains(path)).unwrap())
    };
    let one = upload("/one.bin", &pattern(100_000, 1));
    let two = upload("/two.bin", &pattern(100_000, 2));
    let pristine = (std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    let restore = || {
        std::fs::write(&one, &pristine.0).unwrap();
        std::fs::write(&two, &pristine.1).unwrap();
    };
    let (header, chunk) = (68usize, 32 * 1024 + 28);
    let expect_refused = |what: &str, wanted: &str| {
        let error = fails(vault(&location, &["get", "/one.bin", "-"], PASSPHRASE));
        assert!(error.contains(wanted), "{what}: {error}");
        assert!(error.contains(".c9r"), "{what}: the error names the ciphertext: {error}");
    };
    let mut bytes = pristine.0.clone();
    bytes[header + chunk + 100] ^= 1;
    std::fs::write(&one, &bytes).unwrap();
    expect_refused("a flipped bit", "chunk 1 does not authenticate");
    restore();
    let mut bytes = pristine.0.clone();
    bytes[header..header + chunk].copy_from_slice(&pristine.1[header..header + chunk]);
    std::fs::write(&one, &bytes).unwrap();
    expect_refused("a chunk from another file", "chunk 0 does not authenticate");
    restore();
    let mut bytes = pristine.0.clone();
    let (first, second) = (bytes[header..header + chunk].to_vec(), bytes[header + chunk..header + 2 * chunk].to_vec());
    bytes[header..header + chunk].copy_from_slice(&second);
    bytes[header + chunk..header + 2 * chunk].copy_from_slice(&first);
    std::fs::write(&one, &bytes).unwrap();
    expect_refused("two chunks swapped", "chunk 0 does not authenticate");
    restore();
    let mut bytes = pristine.0.clone();
    bytes[..header].copy_from_slice(&pristine.1[..header]);
    std::fs::write(&one, &bytes).unwrap();
    expect_refused("another file's header", "chunk 0 does not authenticate");
    restore();
    let mut bytes = pristine.0.clone();
    bytes[20] ^= 0x10;
    std::fs::write(&one, &bytes).unwrap();
    expect_refused("a changed header", "file header does not authenticate");
    restore();
    std::fs::write(&one, &pristine.0[..pristine.0.len() - 10]).unwrap();
    expect_refused("cut inside the last chunk", "does not authenticate");
    restore();
    server.settle_ownership();
    assert!(ok_bytes(vault(&location, &["get", "/one.bin", "-"], PASSPHRASE)) == pattern(100_000, 1));

    // A name moved into another folder: left out of both listings, reported with its path, exit non-zero.
    // The content folder of /other: the only one holding a dirid.c9r (the root has none).
    let other_folder = files_below(&root)
        .into_iter()
        .find(|path| path.ends_with("dirid.c9r"))
        .map(|path| root.join(path).parent().unwrap().to_owned())
        .unwrap();
    let moved = other_folder.join(one.file_name().unwrap());
    std::fs::rename(&one, &moved).unwrap();
    server.settle_ownership();
    let error = fails(vault(&location, &["ls", "/other"], PASSPHRASE));
    assert!(error.contains("the encrypted name does not authenticate") && error.contains(".c9r"), "{error}");
    let root_listing = ok(vault(&location, &["ls"], PASSPHRASE));
    assert!(!root_listing.contains("one.bin"), "{root_listing}");
    std::fs::rename(&moved, &one).unwrap();

    // A long name's name.c9s replaced by another entry's encrypted name: refused, left out.
    std::fs::write(scratch.0.join("upload"), b"long").unwrap();
    let long_name = "l".repeat(200);
    ok(vault(&location, &["put", scratch.0.join("upload").to_str().unwrap(), &format!("/{long_name}")], PASSPHRASE));
    let name_file =
        files_below(&root).into_iter().find(|path| path.ends_with("name.c9s")).map(|path| root.join(path)).unwrap();
    let original = std::fs::read(&name_file).unwrap();
    std::fs::write(&name_file, one.file_name().unwrap().to_str().unwrap()).unwrap();
    let error = fails(vault(&location, &["ls"], PASSPHRASE));
    assert!(error.contains("name.c9s (it does not hash to its node's name)"), "{error}");
    std::fs::write(&name_file, original).unwrap();
    assert!(ok(vault(&location, &["ls"], PASSPHRASE)).contains(&long_name));

    // A changed configuration, then an older vault format.
    let config_path = root.join("vault.cryptomator");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let mut forged: Vec<&str> = config.split('.').collect();
    let other_payload = "eyJmb3JtYXQiOjgsImNpcGhlckNvbWJvIjoiU0lWX0NUUk1BQyJ9";
    forged[1] = other_payload;
    std::fs::write(&config_path, forged.join(".")).unwrap();
    let error = fails(vault(&location, &["ls"], PASSPHRASE));
    assert!(error.contains("vault.cryptomator") && error.contains("signature"), "{error}");
    std::fs::remove_file(&config_path).unwrap();
    let masterkey_path = root.join("masterkey.cryptomator");
    let mut masterkey: serde_json::Value = serde_json::from_slice(&std::fs::read(&masterkey_path).unwrap()).unwrap();
    masterkey["version"] = 7.into();
    std::fs::write(&masterkey_path, masterkey.to_string()).unwrap();
    let error = fails(vault(&location, &["ls"], PASSPHRASE));
    assert!(error.contains("vault format 7") && error.contains("Cryptomator 1.6"), "{error}");
}

/// Two writers that read the same version: the second is refused with Changed, whether the server
/// honours If-Match (Apache) or ignores it (rclone 1.60: the version is checked before the write).
#[test]
fn a_concurrent_writer_is_detected_on_both_servers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for server in [DavServer::apache("concurrent"), DavServer::rclone("concurrent")] {
        let location = server.folder("Vault");
        ok(vault(&location, &["create"], PASSPHRASE));
        let store = || {
            DavStore::new(DavConfig {
                url: url::Url::parse(&location).unwrap(),
                user: Some(DAV_USER.into()),
                password: DAV_PASSWORD.to_owned().into(),
                timeout: std::time::Duration::from_secs(30),
                allow_insecure_http: false,
            })
            .unwrap()
        };
        runtime.block_on(async {
            let first = CryptomatorVault::open(store(), PASSPHRASE).await.unwrap();
            let second = CryptomatorVault::open(store(), PASSPHRASE).await.unwrap();
            let honoured = first.store().probe_conditions().await;
            assert_eq!(honoured, server.kind.starts_with("Apache"), "{}", server.kind);
            let root = first.root();
            // Both see no file, both create: the second is refused.
            assert!(first.lookup(&root, "f.txt").await.unwrap().is_none());
            assert!(second.lookup(&root, "f.txt").await.unwrap().is_none());
            first.write_file(&root, "f.txt", b"first", None).await.unwrap();
            let error = second.write_file(&root, "f.txt", b"second", None).await.unwrap_err();
            assert!(matches!(error, CryptomatorError::Exists(_)), "{}: {error}", server.kind);
            // Both read the same version, both replace: the second is refused.
            let seen_first = first.lookup(&root, "f.txt").await.unwrap().unwrap();
            let seen_second = second.lookup(&root, "f.txt").await.unwrap().unwrap();
            // Servers that version by modification time need the clock to move on.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            first
                .write_file(&root, "f.txt", b"first, changed", Some(&seen_first))
                .await
                .unwrap_or_else(|error| panic!("{}: {error}", server.kind));
            let error = second.write_file(&root, "f.txt", b"second, changed", Some(&seen_second)).await.unwrap_err();
            assert!(matches!(error, CryptomatorError::Changed { .. }), "{}: {error}", server.kind);
            let now = second.lookup(&root, "f.txt").await.unwrap().unwrap();
            assert_eq!(&second.read_file(&now).await.unwrap()[..], b"first, changed");
            // Once the file is older than a second Apache's ETags are strong and If-Match goes to the server.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            let seen_first = first.lookup(&root, "f.txt").await.unwrap().unwrap();
            let seen_second = second.lookup(&root, "f.txt").await.unwrap().unwrap();
            assert!(!seen_first.version.starts_with("W/"), "{}: {}", server.kind, seen_first.version);
            first.write_file(&root, "f.txt", b"third", Some(&seen_first)).await.unwrap();
            let error = second.write_file(&root, "f.txt", b"lost", Some(&seen_second)).await.unwrap_err();
            assert!(matches!(error, CryptomatorError::Changed { .. }), "{}: {error}", server.kind);
            // The conflicted-copy rule: the loser's version is kept beside the winner's.
            let written = second
                .write_file_keeping_both(&root, "f.txt", ClearText::Bytes(b"kept"), Some(&seen_second), "laptop-2")
                .await
                .unwrap();
            let Written::ConflictedCopy(copy) = written else { panic!("{}: {written:?}", server.kind) };
            assert!(
                copy.name.starts_with("f (conflicted copy laptop-2 ") && copy.name.ends_with(").txt"),
                "{}",
                copy.name
            );
            assert_eq!(&second.read_file(&copy).await.unwrap()[..], b"kept");
            let winner = second.lookup(&root, "f.txt").await.unwrap().unwrap();
            assert_eq!(&second.read_file(&winner).await.unwrap()[..], b"third");
        });
    }
}

/// Ranged reads over Apache: the first bytes of a large file cost one request (header and first chunks
/// together), a random read fetches only the chunks around it, a sequential read grows its window to a few
/// large requests, and every byte matches; `vault get` streams the same file to disk.
#[test]
fn ranged_reads_fetch_only_the_chunks_asked_for() {
    let server = DavServer::apache("ranges");
    let scratch = TempDir::new("cm-ranges");
    let location = server.folder("Vault");
    ok(vault(&location, &["create"], PASSPHRASE));
    let size = 10 * 1024 * 1024 + 777;
    let content = pattern(size, 5);
    std::fs::write(scratch.0.join("big"), &content).unwrap();
    ok(vault(&location, &["put", scratch.0.join("big").to_str().unwrap(), "/big.bin"], PASSPHRASE));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = DavStore::new(DavConfig {
            url: url::Url::parse(&location).unwrap(),
            user: Some(DAV_USER.into()),
            password: DAV_PASSWORD.to_owned().into(),
            timeout: std::time::Duration::from_secs(30),
            allow_insecure_http: false,
        })
        .unwrap();
        let vault = CryptomatorVault::open(store, PASSPHRASE).await.unwrap();
        let (_, entry) = vault.resolve(&["big.bin".to_owned()]).await.unwrap().unwrap();
        assert_eq!(entry.size, size as u64);
        let mut reader = vault.open_reader(&entry).await.unwrap();
        let first = vault.read_at(&mut reader, 0, 4096).await.unwrap();
        assert!(first[..] == content[..4096]);
        assert_eq!(reader.requests, 1, "the first bytes cost one request");
        // A jump to the middle: one more request, for the chunks around it.
        let middle = vault.read_at(&mut reader, 5_000_000, 10_000).await.unwrap();
        assert!(middle[..] == content[5_000_000..5_010_000]);
        assert_eq!(reader.requests, 2);
        // Reads at scattered places, each checked.
        for (offset, len) in [(32767u64, 2usize), (9_999_999, 100_000), (size as u64 - 5, 100), (123_456, 65536)] {
            let got = vault.read_at(&mut reader, offset, len).await.unwrap();
            let end = (offset as usize + len).min(size);
            assert!(got[..] == content[offset as usize..end], "{offset}+{len}");
        }
        // A whole sequential read from a fresh open: a few large requests.
        let mut reader = vault.open_reader(&entry).await.unwrap();
        let mut offset = 0u64;
        let mut all = Vec::new();
        while offset < size as u64 {
            let piece = vault.read_at(&mut reader, offset, 128 * 1024).await.unwrap();
            offset += piece.len() as u64;
            all.extend_from_slice(&piece);
        }
        assert!(all == content);
        assert!(reader.requests <= 8, "{} requests for 10 MiB read in order", reader.requests);
    });
    let out = scratch.0.join("got");
    ok(vault(&location, &["get", "/big.bin", out.to_str().unwrap()], PASSPHRASE));
    assert!(std::fs::read(&out).unwrap() == content);
    // A download that fails part-way leaves no file behind.
    let node = stored_files(&server.root.join("Vault")).into_iter().next().unwrap();
    let stored = server.root.join("Vault").join(node);
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    std::fs::write(&stored, &bytes).unwrap();
    let failed = scratch.0.join("failed");
    let error = fails(vault(&location, &["get", "/big.bin", failed.to_str().unwrap()], PASSPHRASE));
    assert!(error.contains("does not authenticate") && error.contains("was removed"), "{error}");
    assert!(!failed.exists(), "a half-written download was left behind");
}
