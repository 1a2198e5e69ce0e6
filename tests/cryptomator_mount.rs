//! `cloakfs mount` of Cryptomator vaults (format 8) in the kernel, over real third-party WebDAV servers
//! (Apache mod_dav, rclone serve webdav) and a local folder: the real tools of the Linux mount tests (cp -r
//! and diff -r, an editor-style save, sed -i, tar x, git clone and fsck, rsync) then a remount; vaults made
//! by cloakfs and by an independent implementation (pycryptomator) mounted, read, written, renamed and
//! removed on both servers, and read back by pycryptomator; two mounts as two devices with a concurrent
//! edit ending in a conflicted copy; tampering on the server refused with EIO; wrong passphrase, status,
//! lock and the idle timeout.

#[path = "common/dav.rs"]
mod dav;
#[path = "common/mount.rs"]
mod mount;
#[path = "common/server.rs"]
mod server;
#[path = "common/tools.rs"]
mod tools;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use dav::{pycryptomator, DavServer, DAV_PASSWORD, DAV_USER};
use mount::{eventually, ok, pattern, sh, start_mount, Mounted};
use server::{cloakfs, TempDir};
use tools::{assert_no_clear_names, paths_below};

const PASSPHRASE: &str = "correct horse battery staple";

/// `cloakfs vault ARGS…` on `location` with the test credentials.
fn vault(location: &str, args: &[&str]) -> Output {
    let (command, rest) = args.split_first().unwrap();
    let mut process = cloakfs();
    process.args(["vault", command, location]).args(rest).env("CLOAKFS_PASSPHRASE", PASSPHRASE);
    if location.starts_with("http") {
        process.args(["--user", DAV_USER]).env("CLOAKFS_PASSWORD", DAV_PASSWORD);
    }
    process.output().unwrap()
}

/// `cloakfs mount LOCATION` at a fresh mount point, control sockets in `run`.
fn mount_vault(location: &str, label: &str, run: &Path, extra: &[&str]) -> Mounted {
    let dir = TempDir::new(&format!("{label}-mnt"));
    let mut command = cloakfs();
    command
        .args(["mount", location])
        .arg(&dir.0)
        .args(if extra.contains(&"--dir-cache-time") { &[][..] } else { &["--dir-cache-time", "1"][..] })
        .args(extra)
        .env("CLOAKFS_PASSPHRASE", PASSPHRASE)
        .env("XDG_RUNTIME_DIR", run);
    if location.starts_with("http") {
        command.args(["--user", DAV_USER]).env("CLOAKFS_PASSWORD", DAV_PASSWORD);
    }
    start_mount(command, dir, run.to_owned())
}

fn errno_of(result: std::io::Result<impl Sized>) -> i32 {
    result.err().and_then(|error| error.raw_os_error()).unwrap_or(0)
}

/// `pycryptomator` on the vault in `stored`: `ARGS…`.
fn py(stored: &Path, args: &[&str]) -> String {
    let output = pycryptomator().args(["--password", PASSPHRASE]).arg(stored).args(args).output().unwrap();
    String::from_utf8_lossy(&ok(output).stdout).into_owned()
}

/// pycryptomator's decryption of `path` in the vault in `stored`.
fn py_read(stored: &Path, path: &str, scratch: &Path) -> Vec<u8> {
    tools::py_read(stored, PASSPHRASE, path, scratch)
}

#[test]
fn real_tools_in_a_vault_mounted_over_apache_then_remount_an_independent_reader_and_tampering() {
    let server = DavServer::apache("mount-tools");
    let location = server.folder("Vault");
    ok(vault(&location, &["create"]));
    let run = TempDir::new("mount-tools-run");
    let work = TempDir::new("mount-tools-work");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mounted = mount_vault(&location, "tools", &run.0, &[]);
    let root = mounted.path("");

    tools::real_tool_workload(&root, &work.0);

    // A long name (a .c9s node), and a large file read back from the middle.
    let long_name = format!("{}.txt", "ü".repeat(100));
    fs::write(root.join(&long_name), b"behind a long name").unwrap();
    let big = pattern((3 << 20) + 12_345, 5);
    fs::write(root.join("big.bin"), &big).unwrap();
    let mut file = fs::File::open(root.join("big.bin")).unwrap();
    file.seek(SeekFrom::Start((2 << 20) + 7)).unwrap();
    let mut middle = vec![0; 100_000];
    file.read_exact(&mut middle).unwrap();
    assert!(middle[..] == big[(2 << 20) + 7..(2 << 20) + 100_007], "a read from the middle differs");
    drop(file);
    // POSIX answers.
    assert_eq!(errno_of(fs::remove_dir(root.join("src"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(fs::create_dir(root.join("src"))), libc::EEXIST);
    assert_eq!(errno_of(fs::rename(root.join("src"), root.join("src/inside"))), libc::EINVAL);
    assert_eq!(errno_of(fs::read(root.join("missing"))), libc::ENOENT);
    ok(mounted.unmount());

    let stored = server.root.join("Vault");
    assert_no_clear_names(&stored, &["main.rs", "note.txt", "big.bin", "clone", "untar", "rsynced", "ü"]);
    // An independent implementation reads what the mount wrote.
    assert!(py_read(&stored, "/big.bin", &work.0) == big, "pycryptomator decrypts big.bin differently");
    assert_eq!(py_read(&stored, &format!("/{long_name}"), &work.0), b"behind a long name");
    assert_eq!(py_read(&stored, "/note.txt", &work.0), b"third version\n");

    // Remount: everything is still there.
    let again = mount_vault(&location, "tools-again", &run.0, &[]);
    let root = again.path("");
    sh(&format!("diff -r '{0}' src && diff -r '{0}' untar/src", source.join("src").display()), &root);
    sh("cd clone && git fsck --full", &root);
    assert_eq!(fs::read(root.join("note.txt")).unwrap(), b"third version\n");
    assert!(!root.join(".note.txt.swp").exists());

    // Ranged reads in the mount: the first byte of big.bin costs one GET (header and first chunks), a jump
    // to its middle one more; opening it again after a close costs none (its reader was kept). Only GETs
    // of big.bin's ciphertext are counted, in the log once it has settled (Apache logs after responding).
    let contents = paths_below(&stored)
        .into_iter()
        .find(|path| path.metadata().is_ok_and(|meta| meta.is_file() && meta.len() > 3 << 20))
        .expect("big.bin's ciphertext");
    let big_url = format!(" /{}", contents.strip_prefix(&server.root).unwrap().display());
    let gets = || {
        let log = server.settled_access_log();
        (log.lines().filter(|line| line.starts_with("GET ") && line.contains(&big_url)).count(), log)
    };
    let (before, _) = gets();
    let mut file = fs::File::open(root.join("big.bin")).unwrap();
    let mut first = [0u8; 1];
    file.read_exact(&mut first).unwrap();
    assert_eq!(first[0], big[0]);
    let (now, log) = gets();
    assert_eq!(now - before, 1, "the first byte of a 3 MiB file:\n{log}");
    file.seek(SeekFrom::Start(2 << 20)).unwrap();
    file.read_exact(&mut first).unwrap();
    assert_eq!(first[0], big[2 << 20]);
    let (now, log) = gets();
    assert!(now - before <= 3, "a jump to the middle:\n{log}");
    drop(file);
    let (before, _) = gets();
    let mut file = fs::File::open(root.join("big.bin")).unwrap();
    file.read_exact(&mut first).unwrap();
    drop(file);
    let (now, log) = gets();
    assert_eq!(now, before, "opening big.bin again fetched it again:\n{log}");

    // Tampering on the server: one byte of big.bin's second chunk. Reading it fails with EIO and the log
    // names the ciphertext; other files still read.
    let mut sealed = fs::read(&contents).unwrap();
    sealed[68 + (32 * 1024 + 28) + 100] ^= 1;
    fs::write(&contents, &sealed).unwrap();
    server.settle_ownership();
    assert!(
        eventually(Duration::from_secs(10), || errno_of(fs::read(root.join("big.bin"))) == libc::EIO),
        "a tampered chunk was not refused with EIO"
    );
    assert!(eventually(Duration::from_secs(5), || again.log().contains("does not authenticate")), "{}", again.log());
    assert_eq!(fs::read(root.join("note.txt")).unwrap(), b"third version\n");
    ok(again.unmount());
}

/// How the vault of a scenario is made.
#[derive(Clone, Copy, Debug)]
enum Maker {
    /// By pycryptomator, directly in the server's folder, holding `/shared/report.txt`.
    Pycryptomator,
    /// By `cloakfs vault create --cipher siv-ctrmac` over WebDAV, then `vault put` of the report.
    CloakfsCtrMac,
}

/// Two mounts of one vault as two devices: reads of what the maker stored, changes seen by the other
/// mount, a rename and a removal, and a concurrent edit that ends in a conflicted copy; pycryptomator
/// then reads what the mounts wrote.
fn two_devices(server: &DavServer, maker: Maker, label: &str) {
    let scratch = TempDir::new(&format!("{label}-scratch"));
    let stored = server.root.join("Shared");
    let location = format!("{}/Shared", server.url);
    let report = pattern(100_000, 3);
    match maker {
        Maker::Pycryptomator => {
            fs::create_dir(&stored).unwrap();
            ok(pycryptomator().args(["--init", "--password", PASSPHRASE]).arg(&stored).output().unwrap());
            py(&stored, &["mkdir", "/shared"]);
            fs::write(scratch.0.join("report"), &report).unwrap();
            let source = scratch.0.join("report");
            py(&stored, &["encrypt", source.to_str().unwrap(), "/shared/report.txt"]);
            server.settle_ownership();
        }
        Maker::CloakfsCtrMac => {
            let location = server.folder("Shared");
            ok(vault(&location, &["create", "--cipher", "siv-ctrmac"]));
            ok(vault(&location, &["mkdir", "/shared"]));
            fs::write(scratch.0.join("report"), &report).unwrap();
            ok(vault(&location, &["put", scratch.0.join("report").to_str().unwrap(), "/shared/report.txt"]));
        }
    }
    let run = TempDir::new(&format!("{label}-run"));
    let first = mount_vault(&location, &format!("{label}-a"), &run.0, &["--device", "laptop-1"]);
    let second = mount_vault(&location, &format!("{label}-b"), &run.0, &["--device", "laptop-2"]);
    assert!(fs::read(first.path("shared/report.txt")).unwrap() == report, "{maker:?}: the report reads differently");

    // Written by one mount, seen by the other.
    fs::write(first.path("shared/from-first.txt"), b"hello from the first").unwrap();
    fs::create_dir(first.path("made-here")).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || fs::read(second.path("shared/from-first.txt")).ok().as_deref()
            == Some(&b"hello from the first"[..])),
        "{maker:?}: the second mount did not see the first one's file"
    );
    // A new folder reaches storage in the background a moment after its mkdir (at once on fsync).
    assert!(
        eventually(Duration::from_secs(10), || second.path("made-here").is_dir()),
        "{maker:?}: the second mount did not see the first one's folder"
    );
    // A rename and a removal by the second, seen by the first.
    fs::rename(second.path("shared/from-first.txt"), second.path("made-here/renamed.txt")).unwrap();
    assert_eq!(errno_of(fs::remove_dir(second.path("made-here"))), libc::ENOTEMPTY);
    assert!(eventually(Duration::from_secs(10), || !first.path("shared/from-first.txt").exists()
        && fs::read(first.path("made-here/renamed.txt")).ok().as_deref() == Some(&b"hello from the first"[..])));

    // A concurrent edit: the second device opens the report and writes; the first replaces it and closes
    // first (fsync: a close may return before its upload); the second's close then keeps its version as a
    // conflicted copy beside the first's.
    let mut editing = fs::OpenOptions::new().write(true).open(second.path("shared/report.txt")).unwrap();
    editing.set_len(0).unwrap();
    editing.write_all(b"the second device's version").unwrap();
    tools::write_durably(&first.path("shared/report.txt"), b"the first device's version");
    drop(editing);
    let conflicted = |mount: &Mounted| tools::conflicted_copy(&mount.path("shared"), "report", "laptop-2");
    assert!(
        eventually(Duration::from_secs(10), || conflicted(&first).is_some()),
        "{maker:?}: no conflicted copy: {:?}",
        fs::read_dir(first.path("shared")).unwrap().map(|entry| entry.unwrap().file_name()).collect::<Vec<_>>()
    );
    let copy = conflicted(&first).unwrap();
    assert_eq!(fs::read(first.path(&format!("shared/{copy}"))).unwrap(), b"the second device's version");
    assert_eq!(fs::read(first.path("shared/report.txt")).unwrap(), b"the first device's version");
    assert!(
        eventually(Duration::from_secs(10), || fs::read(second.path("shared/report.txt")).ok().as_deref()
            == Some(&b"the first device's version"[..])),
        "{maker:?}: the second mount does not show the first device's version under the name"
    );
    // A removal.
    fs::remove_file(second.path(&format!("shared/{copy}"))).unwrap();
    assert!(eventually(Duration::from_secs(10), || conflicted(&first).is_none()));
    ok(first.unmount());
    ok(second.unmount());

    // What the mounts left, read by the independent implementation where it reads the cipher combination
    // (pycryptomator 1.15 reads SIV_GCM only), else by the vault commands.
    let (listing, renamed, report) = match maker {
        Maker::Pycryptomator => (
            py(&stored, &["ls", "-r", "/"]),
            py_read(&stored, "/made-here/renamed.txt", &scratch.0),
            py_read(&stored, "/shared/report.txt", &scratch.0),
        ),
        Maker::CloakfsCtrMac => (
            String::from_utf8_lossy(&ok(vault(&location, &["ls", "/shared"])).stdout).into_owned()
                + &String::from_utf8_lossy(&ok(vault(&location, &["ls", "/made-here"])).stdout),
            ok(vault(&location, &["get", "/made-here/renamed.txt", "-"])).stdout,
            ok(vault(&location, &["get", "/shared/report.txt", "-"])).stdout,
        ),
    };
    assert!(listing.contains("renamed.txt") && listing.contains("report.txt"), "{listing}");
    assert!(!listing.contains("conflicted copy"), "{listing}");
    assert_eq!(renamed, b"hello from the first");
    assert_eq!(report, b"the first device's version");
}

#[test]
fn vaults_made_by_pycryptomator_and_by_cloakfs_on_two_servers_as_two_devices() {
    let rclone = DavServer::rclone("two-rclone");
    two_devices(&rclone, Maker::Pycryptomator, "two-rclone-py");
    let apache = DavServer::apache("two-apache");
    two_devices(&apache, Maker::Pycryptomator, "two-apache-py");
    let rclone = DavServer::rclone("two-rclone-ours");
    two_devices(&rclone, Maker::CloakfsCtrMac, "two-rclone-ours");
}

#[test]
fn a_vault_in_a_local_folder_wrong_passphrase_status_lock_and_idle_timeout() {
    let folder = TempDir::new("local-vault");
    let location = folder.0.to_str().unwrap().to_owned();
    ok(vault(&location, &["create"]));
    let run = TempDir::new("local-run");

    // A wrong passphrase: a clear error, nothing mounted.
    let target = TempDir::new("local-wrong-mnt");
    let refused = cloakfs()
        .args(["mount", &location])
        .arg(&target.0)
        .env("CLOAKFS_PASSPHRASE", "not the passphrase")
        .env("XDG_RUNTIME_DIR", &run.0)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("wrong passphrase"), "{message}");
    assert!(!mount::is_mounted(&target.0));

    // Status while mounted, then `cloakfs lock`: uploads, unmounts, exits.
    let mut mounted = mount_vault(&location, "local-lock", &run.0, &[]);
    fs::write(mounted.path("locked.txt"), b"written before the lock").unwrap();
    let status = mounted.status();
    assert!(status.contains(&mounted.dir.0.display().to_string()), "{status}");
    ok(mounted.control(&["lock", mounted.dir.0.to_str().unwrap()]));
    assert!(mounted.wait_for_exit(Duration::from_secs(20)), "the mount did not stop at lock");
    assert!(!mount::is_mounted(&mounted.dir.0));

    // The idle timeout: a mount left alone unmounts itself after uploading.
    let mut idle = mount_vault(&location, "local-idle", &run.0, &["--idle-timeout", "2s"]);
    fs::write(idle.path("idle.txt"), b"written before going idle").unwrap();
    assert!(idle.wait_for_exit(Duration::from_secs(30)), "the idle mount did not unmount itself");
    assert!(idle.log().contains("idle for"), "{}", idle.log());
    let listing = String::from_utf8_lossy(&ok(vault(&location, &["ls"])).stdout).into_owned();
    assert!(listing.contains("locked.txt") && listing.contains("idle.txt"), "{listing}");
    assert_no_clear_names(&folder.0, &["locked.txt", "idle.txt"]);
}

#[test]
fn a_server_outage_keeps_changes_in_ram_and_uploads_them_when_the_server_is_back() {
    let mut server = DavServer::rclone("outage");
    let location = server.folder("Vault");
    ok(vault(&location, &["create"]));
    let run = TempDir::new("outage-run");
    // Listings trusted for a minute, so that the outage is met by the upload, not by a listing.
    let mounted = mount_vault(&location, "outage", &run.0, &["--dir-cache-time", "60"]);
    tools::write_durably(&mounted.path("before.txt"), b"before the outage");
    server.stop();

    // Closed during the outage: close returns at once (write-behind) and the background upload fails; the
    // file stays in RAM and status names it.
    tools::write_and_close(&mounted.path("queued.txt"), b"closed while the server was down").unwrap();
    assert!(
        eventually(Duration::from_secs(20), || mounted.status().contains("/queued.txt (32 bytes): upload failed")),
        "the failed background upload is not in the status: {}",
        mounted.status()
    );
    // After a failed upload, close waits for its own upload, so the program sees the outage.
    assert_eq!(errno_of(tools::write_and_close(&mounted.path("refused.txt"), b"refused at close")), libc::EIO);
    // fsync reports the failure too; the data stays in RAM and is named by status.
    let mut file = fs::File::create(mounted.path("during.txt")).unwrap();
    file.write_all(b"written while the server was down").unwrap();
    assert_eq!(file.sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
    drop(file);
    let status = mounted.status();
    assert!(status.contains("/during.txt (33 bytes): upload failed"), "{status}");
    assert!(status.contains("/refused.txt (16 bytes): upload failed"), "{status}");
    // Unmounting now would lose them: refused, with the count.
    let refused = mounted.control(&["unmount", mounted.dir.0.to_str().unwrap()]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("3 file(s) could not be uploaded"), "{message}");
    assert_eq!(fs::read(mounted.path("during.txt")).unwrap(), b"written while the server was down");
    assert_eq!(fs::read(mounted.path("queued.txt")).unwrap(), b"closed while the server was down");

    // The server is back: the retry uploads it without being asked.
    server.start_again();
    assert!(
        eventually(Duration::from_secs(30), || mounted.status().contains("dirty files: 0")),
        "not uploaded after the outage: {}",
        mounted.status()
    );
    // The failures were logged (with ciphertext paths), the clear names never.
    let log = mounted.log();
    assert!(
        log.contains("store operation failed")
            && !log.contains("during")
            && !log.contains("before")
            && !log.contains("queued"),
        "{log}"
    );
    ok(mounted.unmount());
    assert_eq!(ok(vault(&location, &["get", "/during.txt", "-"])).stdout, b"written while the server was down");
    assert_eq!(ok(vault(&location, &["get", "/before.txt", "-"])).stdout, b"before the outage");
    assert_eq!(ok(vault(&location, &["get", "/queued.txt", "-"])).stdout, b"closed while the server was down");
    assert_eq!(ok(vault(&location, &["get", "/refused.txt", "-"])).stdout, b"refused at close");
}

/// The raw target of the link `path` in the vault in `stored`, as pycryptomator decrypts it.
fn py_link_target(stored: &Path, path: &str) -> String {
    let script = format!(
        "from pycryptomator.cryptomator import Vault\n\
         v = Vault({stored:?}, {PASSPHRASE:?})\n\
         info = v.getInfo({path:?})\n\
         assert info.hasSym, 'not a link'\n\
         print(v.resolveSymlink({path:?}, info.hasSym)[1])",
        stored = stored.to_str().unwrap()
    );
    let output = std::process::Command::new("python3")
        .args(["-c", &script])
        .env("PYTHONPATH", Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pylib"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&ok(output).stdout).trim_end().to_owned()
}

#[test]
fn symbolic_links_round_trip_across_a_remount_and_with_pycryptomator() {
    let folder = TempDir::new("links-vault");
    let location = folder.0.to_str().unwrap().to_owned();
    ok(vault(&location, &["create"]));
    let run = TempDir::new("links-run");
    // A link made by the independent implementation.
    py(&folder.0, &["ln", "/some/absolute/target", "/made-by-pycryptomator"]);

    let mounted = mount_vault(&location, "links", &run.0, &[]);
    let link_at = |name: &str| mounted.path(name);
    assert_eq!(fs::read_link(link_at("made-by-pycryptomator")).unwrap(), Path::new("/some/absolute/target"));
    fs::write(link_at("file.txt"), b"reached through a link").unwrap();
    fs::create_dir(link_at("dir")).unwrap();
    std::os::unix::fs::symlink("file.txt", link_at("relative")).unwrap();
    std::os::unix::fs::symlink("../file.txt", link_at("dir/up")).unwrap();
    let long_name = "a link with a name long enough to be shortened ".repeat(4);
    std::os::unix::fs::symlink("dir", link_at(&long_name)).unwrap();
    // lstat says link; the kernel follows them.
    assert!(fs::symlink_metadata(link_at("relative")).unwrap().file_type().is_symlink());
    assert_eq!(fs::symlink_metadata(link_at("relative")).unwrap().len(), "file.txt".len() as u64);
    assert_eq!(fs::read(link_at("relative")).unwrap(), b"reached through a link");
    assert_eq!(fs::read(link_at("dir/up")).unwrap(), b"reached through a link");
    assert!(link_at(&long_name).join("up").exists());
    // Making one over an existing name fails; the link itself cannot be opened as a file without following.
    assert_eq!(errno_of(std::os::unix::fs::symlink("x", link_at("relative"))), libc::EEXIST);
    // Rename, replace a link by a link (ln -sf), a file over a link, a link over a file, remove.
    fs::rename(link_at("relative"), link_at("dir/moved")).unwrap();
    assert_eq!(fs::read_link(link_at("dir/moved")).unwrap(), Path::new("file.txt"));
    std::os::unix::fs::symlink("first", link_at("replaced")).unwrap();
    std::os::unix::fs::symlink("second", link_at("replacing")).unwrap();
    fs::rename(link_at("replacing"), link_at("replaced")).unwrap();
    assert_eq!(fs::read_link(link_at("replaced")).unwrap(), Path::new("second"));
    fs::write(link_at("plain.txt"), b"a file over a link").unwrap();
    std::os::unix::fs::symlink("gone", link_at("overwritten")).unwrap();
    fs::rename(link_at("plain.txt"), link_at("overwritten")).unwrap();
    std::os::unix::fs::symlink("file.txt", link_at("link-over-file")).unwrap();
    fs::write(link_at("victim.txt"), b"replaced by a link").unwrap();
    fs::rename(link_at("link-over-file"), link_at("victim.txt")).unwrap();
    std::os::unix::fs::symlink("doomed", link_at("removed")).unwrap();
    fs::remove_file(link_at("removed")).unwrap();
    ok(mounted.unmount());

    // After a remount, everything as left.
    let again = mount_vault(&location, "links-again", &run.0, &[]);
    let at = |name: &str| again.path(name);
    assert_eq!(fs::read_link(at("dir/moved")).unwrap(), Path::new("file.txt"));
    assert_eq!(fs::read_link(at("dir/up")).unwrap(), Path::new("../file.txt"));
    assert_eq!(fs::read_link(at(&long_name)).unwrap(), Path::new("dir"));
    assert_eq!(fs::read_link(at("replaced")).unwrap(), Path::new("second"));
    assert_eq!(fs::read_link(at("victim.txt")).unwrap(), Path::new("file.txt"));
    assert_eq!(fs::read(at("overwritten")).unwrap(), b"a file over a link");
    assert!(!fs::symlink_metadata(at("overwritten")).unwrap().file_type().is_symlink());
    assert_eq!(errno_of(fs::symlink_metadata(at("removed"))), libc::ENOENT);
    assert_eq!(errno_of(fs::symlink_metadata(at("replacing"))), libc::ENOENT);
    // A relative target resolves from the link's folder: `dir/moved` points at `dir/file.txt`, which is not there.
    assert_eq!(errno_of(fs::read(at("dir/moved"))), libc::ENOENT);
    assert_eq!(fs::read(at("dir/up")).unwrap(), b"reached through a link");
    ok(again.unmount());

    // The independent implementation reads what the mount wrote.
    assert_eq!(py_link_target(&folder.0, "/dir/moved"), "file.txt");
    assert_eq!(py_link_target(&folder.0, "/replaced"), "second");
    assert_eq!(py_link_target(&folder.0, &format!("/{long_name}")), "dir");
    assert_no_clear_names(&folder.0, &["moved", "replaced", "file.txt"]);

    // A tampered target is refused (EIO), never shown.
    let sealed = paths_below(&folder.0).into_iter().find(|path| path.ends_with("symlink.c9r")).unwrap();
    let mut bytes = fs::read(&sealed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&sealed, bytes).unwrap();
    let tampered = mount_vault(&location, "links-tampered", &run.0, &[]);
    let refused = ["dir/moved", "dir/up", "replaced", "victim.txt", long_name.as_str(), "made-by-pycryptomator"]
        .iter()
        .filter(|name| errno_of(fs::read_link(tampered.path(name))) == libc::EIO)
        .count();
    assert_eq!(refused, 1, "exactly the tampered link is refused");
    ok(tampered.unmount());
}
