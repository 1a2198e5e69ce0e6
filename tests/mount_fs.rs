//! The FUSE mount in the kernel against a real `cloakfs serve`: round trips of many sizes and names, the
//! rename matrix and POSIX errors, real tools (vim-style save, sed -i, cp -r, tar x, git clone + fsck,
//! rsync), parallel readers and writers, write-behind racing rename/overwrite/remove, remounting, a second
//! mount seeing changes, what the server holds (only 32-hex names), a tampered blob (EIO), refusals to
//! mount, an fsync that survives a crash, and no orphaned blob after removes and replaces in one batch.

#[path = "common/dav.rs"]
mod dav;
#[path = "common/mount.rs"]
mod mount;
#[path = "common/server.rs"]
mod server;
#[path = "common/tools.rs"]
mod tools;

use std::ffi::CString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use cloakfs::storage::E2eeApi as _;

use mount::{eventually, ok, pattern, sh, Account};
use server::{TempDir, PASSWORD};

fn errno_of(result: std::io::Result<impl Sized>) -> i32 {
    result.err().and_then(|error| error.raw_os_error()).unwrap_or(0)
}

/// The names in a folder of the mount, sorted.
fn sorted_names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(folder).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// Every name the server holds below /Vault, over WebDAV (PROPFIND).
fn server_names(account: &Account) -> Vec<(String, bool)> {
    let client = cloakfs::storage::NextcloudClient::new(cloakfs::storage::ServerConfig {
        base_url: url::Url::parse(&account.server.url).unwrap(),
        user: account.user.clone(),
        password: zeroize::Zeroizing::new(PASSWORD.to_owned()),
        timeout: Duration::from_secs(30),
        allow_insecure_http: false,
    })
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut names = Vec::new();
    let mut pending = vec![vec!["Vault".to_owned()]];
    while let Some(path) = pending.pop() {
        let entries = runtime.block_on(client.list_detailed(&path, 1)).unwrap();
        for entry in entries.into_iter().skip(1) {
            let mut child = path.clone();
            child.push(entry.name.clone());
            if entry.is_dir {
                pending.push(child);
            }
            names.push((entry.name, entry.is_dir));
        }
    }
    names
}

fn assert_only_random_names(account: &Account) -> usize {
    let names = server_names(account);
    for (name, _) in &names {
        assert!(
            name.len() == 32 && name.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)),
            "the server holds a non-random name: {name:?}"
        );
    }
    names.len()
}

#[test]
fn round_trips_names_sizes_remount_and_what_the_server_holds() {
    let account = Account::new("roundtrip");
    let mounted = account.mount("roundtrip");
    let sizes = [0usize, 1, 4095, 4096, (1 << 20) + 1, 64 << 20];
    for (index, size) in sizes.iter().enumerate() {
        fs::write(mounted.path(&format!("size-{size}.bin")), pattern(*size, index as u8)).unwrap();
    }
    let long_name = "L".repeat(250) + ".txt";
    let names = ["Grüße – 日本語 ✓.txt", "spaces and 'quotes'.md", long_name.as_str()];
    for name in names {
        fs::write(mounted.path(name), name.as_bytes()).unwrap();
    }
    assert_eq!(errno_of(fs::write(mounted.path(&"x".repeat(256)), b"")), libc::ENAMETOOLONG);
    fs::create_dir_all(mounted.path("a/b/c/d")).unwrap();
    fs::write(mounted.path("a/b/c/d/deep.txt"), b"deep").unwrap();
    fs::write(mounted.path("a/top.txt"), b"top").unwrap();

    // Read back through the mount, then through a fresh mount after unmounting.
    let check = |mounted: &mount::Mounted| {
        for (index, size) in sizes.iter().enumerate() {
            let content = fs::read(mounted.path(&format!("size-{size}.bin"))).unwrap();
            assert_eq!(content.len(), *size);
            assert!(content == pattern(*size, index as u8), "content of size {size} differs");
            let metadata = fs::metadata(mounted.path(&format!("size-{size}.bin"))).unwrap();
            assert_eq!(metadata.len(), *size as u64);
        }
        for name in names {
            assert_eq!(fs::read(mounted.path(name)).unwrap(), name.as_bytes());
        }
        assert_eq!(fs::read(mounted.path("a/b/c/d/deep.txt")).unwrap(), b"deep");
        assert_eq!(fs::read(mounted.path("a/top.txt")).unwrap(), b"top");
        let mut listing: Vec<String> = fs::read_dir(mounted.path(""))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        listing.sort();
        assert_eq!(listing.len(), sizes.len() + names.len() + 1, "{listing:?}");
        assert!(fs::metadata(mounted.path("a/b/c")).unwrap().is_dir());
    };
    check(&mounted);
    ok(mounted.unmount());
    let count = assert_only_random_names(&account);
    assert_eq!(count, sizes.len() + names.len() + 1 + 1 + 4, "files and folders on the server");
    // Nothing readable in the server's storage either.
    server::assert_no_marker_below(&account.data.0, &[b"deep.txt", "Grüße".as_bytes(), b"top.txt"]);

    let again = account.mount("roundtrip-again");
    check(&again);
    // The CLI sees the same tree.
    let listing = String::from_utf8(ok(account.run(&["ls", "/Vault/a/b/c/d"])).stdout).unwrap();
    assert!(listing.contains("deep.txt"), "{listing}");
    ok(again.unmount());
}

#[test]
fn rename_matrix_and_posix_errors() {
    let account = Account::new("rename");
    let mounted = account.mount("rename");
    let p = |relative: &str| mounted.path(relative);
    fs::create_dir_all(p("one/inner")).unwrap();
    fs::create_dir(p("two")).unwrap();
    fs::write(p("one/a.txt"), b"A").unwrap();
    fs::write(p("one/b.txt"), b"B").unwrap();
    fs::write(p("one/inner/deep.txt"), b"D").unwrap();

    // Same folder: a new name; over an existing file (replaced).
    fs::rename(p("one/a.txt"), p("one/a2.txt")).unwrap();
    fs::rename(p("one/a2.txt"), p("one/b.txt")).unwrap();
    assert_eq!(fs::read(p("one/b.txt")).unwrap(), b"A");
    assert!(!p("one/a2.txt").exists());
    // Across folders: a file, then a whole folder with its contents.
    fs::rename(p("one/b.txt"), p("two/moved.txt")).unwrap();
    fs::rename(p("one/inner"), p("two/inner")).unwrap();
    assert_eq!(fs::read(p("two/inner/deep.txt")).unwrap(), b"D");
    fs::write(p("two/inner/after-move.txt"), b"written after the move").unwrap();
    // RENAME_NOREPLACE refuses an existing target; without it the target is replaced.
    fs::write(p("two/other.txt"), b"O").unwrap();
    let from = CString::new(p("two/other.txt").as_os_str().as_bytes()).unwrap();
    let to = CString::new(p("two/moved.txt").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated paths.
    let result =
        unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_NOREPLACE) };
    assert_eq!(result, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EEXIST));
    assert_eq!(fs::read(p("two/moved.txt")).unwrap(), b"A");
    // POSIX errors.
    fs::create_dir(p("two/empty")).unwrap();
    assert_eq!(errno_of(fs::rename(p("two/other.txt"), p("two/inner"))), libc::EISDIR);
    assert_eq!(errno_of(fs::rename(p("two/empty"), p("two/other.txt"))), libc::ENOTDIR);
    assert_eq!(errno_of(fs::rename(p("two/empty"), p("two/inner"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(fs::remove_dir(p("two/inner"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(fs::rename(p("two"), p("two/inner/into-itself"))), libc::EINVAL);
    fs::rename(p("two/empty"), p("one/was-empty")).unwrap();
    fs::create_dir(p("two/empty2")).unwrap();
    fs::rename(p("one/was-empty"), p("two/empty2")).unwrap(); // over an empty folder: replaced
    assert!(!p("one/was-empty").exists());
    assert_eq!(errno_of(fs::create_dir(p("two/empty2"))), libc::EEXIST);
    assert_eq!(errno_of(std::os::unix::fs::symlink("two/moved.txt", p("link"))), libc::EPERM);
    assert_eq!(errno_of(fs::hard_link(p("two/moved.txt"), p("hard"))), libc::EPERM);
    let file = CString::new(p("two/moved.txt").as_os_str().as_bytes()).unwrap();
    let attribute = CString::new("user.test").unwrap();
    // SAFETY: valid NUL-terminated strings and a one-byte value.
    let set = unsafe { libc::setxattr(file.as_ptr(), attribute.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    assert_eq!(set, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ENOTSUP));
    assert_eq!(errno_of(fs::OpenOptions::new().write(true).create_new(true).open(p("two/moved.txt"))), libc::EEXIST);
    assert_eq!(errno_of(fs::read(p("missing.txt"))), libc::ENOENT);
    // Removing.
    fs::remove_file(p("two/other.txt")).unwrap();
    fs::remove_dir(p("two/empty2")).unwrap();
    ok(mounted.unmount());

    let again = account.mount("rename-again");
    assert_eq!(sorted_names(&again.path("two")), ["inner", "moved.txt"]);
    assert_eq!(fs::read(again.path("two/inner/after-move.txt")).unwrap(), b"written after the move");
    let one: Vec<_> = fs::read_dir(again.path("one")).unwrap().collect();
    assert!(one.is_empty(), "one/ should be empty");
    ok(again.unmount());
    assert_only_random_names(&account);
}

#[test]
fn open_flags_truncate_append_and_partial_writes() {
    let account = Account::new("flags");
    let mounted = account.mount("flags");
    let path = mounted.path("f.txt");
    fs::write(&path, b"0123456789").unwrap();
    fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"abc").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"0123456789abc");
    {
        let mut file = fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(2)).unwrap();
        file.write_all(b"XY").unwrap();
        file.seek(SeekFrom::Start(20)).unwrap();
        file.write_all(b"!").unwrap(); // a hole is zero-filled
        file.sync_all().unwrap();
        let mut all = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut all).unwrap();
        assert_eq!(&all[..], b"01XY456789abc\0\0\0\0\0\0\0!");
    }
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(4).unwrap(); // ftruncate
    drop(file);
    assert_eq!(fs::read(&path).unwrap(), b"01XY");
    fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap().write_all(b"new").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new");
    // truncate(2) by path, on a closed file.
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::truncate(c_path.as_ptr(), 1) }, 0);
    assert_eq!(fs::read(&path).unwrap(), b"n");
    // mtime is settable (kept while mounted); chmod is accepted without effect.
    let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), when);
    sh("chmod 644 f.txt", &mounted.path(""));
    // mknod of a regular file works; of a FIFO does not.
    sh("mknod fifo p 2>/dev/null && exit 1 || exit 0", &mounted.path(""));
    ok(mounted.unmount());
    let again = account.mount("flags-again");
    assert_eq!(fs::read(again.path("f.txt")).unwrap(), b"n");
    assert!(!again.path("fifo").exists());
    ok(again.unmount());
}

#[test]
fn real_tools_work_in_the_mount() {
    let account = Account::new("tools");
    let mounted = account.mount("tools");
    let work = TempDir::new("tools-work");
    let root = mounted.path("");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));

    tools::real_tool_workload(&root, &work.0);

    ok(mounted.unmount());
    let again = account.mount("tools-again");
    let root = again.path("");
    sh(
        &format!(
            "diff -r '{}' src && diff -r '{}' untar/src",
            source.join("src").display(),
            source.join("src").display()
        ),
        &root,
    );
    sh("cd clone && git fsck --full", &root);
    assert_eq!(fs::read(root.join("note.txt")).unwrap(), b"third version\n");
    assert!(!root.join(".note.txt.swp").exists());
    ok(again.unmount());
    assert_only_random_names(&account);
}

/// The three ways a real Nextcloud server was left with orphaned blobs: a file created and removed in one
/// batch, a file replaced by a rename in one batch (git's *.lock files), and git plus tar x. Once with
/// files queued for the commit (the default) and once with every close uploading at once under the open
/// lock (`--write-behind 0`), which makes the removals hit blobs staged under that same lock. `cloakfs
/// serve` stages like Nextcloud, so an orphan shows up in fsck exactly as it would there.
#[test]
fn removes_and_replaces_in_one_batch_leave_no_orphans() {
    let account = Account::new("orphans");
    let work = TempDir::new("orphans-work");
    sh(
        "mkdir tree && for d in 0 1 2 3; do mkdir tree/d$d; for f in $(seq 1 25); do head -c 4096 /dev/urandom \
        > tree/d$d/f$f; done; done && tar cf tree.tar tree",
        &work.0,
    );
    for (label, extra) in [
        ("queued", &["--commit-delay", "3000"][..]),
        ("uploaded", &["--write-behind", "0", "--commit-delay", "3000"][..]),
    ] {
        let mounted = account.mount_with(&format!("orphans-{label}"), extra);
        let root = mounted.path("");
        fs::create_dir(root.join(label)).unwrap();
        let folder = root.join(label);
        sh("echo a > x1 && rm x1 && echo a > y && echo b > y.tmp && mv y.tmp y", &folder);
        assert_eq!(sorted_names(&folder), ["y"]);
        sh(
            "git init -q repo && cd repo && echo one > a && git add a && git -c user.name=t -c user.email=t@t \
             commit -qm one && echo two > a && echo b > b && git add -A && git -c user.name=t -c user.email=t@t \
             commit -qm two && git fsck --full",
            &folder,
        );
        sh(&format!("tar xf '{}/tree.tar'", work.0.display()), &folder);
        ok(mounted.unmount());
        let report = ok(account.run(&["fsck", "/Vault"]));
        let stdout = String::from_utf8_lossy(&report.stdout).into_owned();
        assert!(stdout.contains(" 0 orphan(s), 0 missing"), "{label}: {stdout}");
        let again = account.mount(&format!("orphans-{label}-again"));
        let folder = again.path(label);
        assert_eq!(fs::read(folder.join("y")).unwrap(), b"b\n");
        assert!(!folder.join("x1").exists() && !folder.join("y.tmp").exists());
        sh("cd repo && git fsck --full && git log --oneline | wc -l | grep -qx 2", &folder);
        sh(&format!("diff -r '{}/tree' tree", work.0.display()), &folder);
        ok(again.unmount());
    }
}

#[test]
fn parallel_readers_and_writers() {
    let account = Account::new("parallel");
    let mounted = account.mount("parallel");
    let root = mounted.path("");
    std::thread::scope(|scope| {
        for thread in 0..8u8 {
            let root = root.clone();
            scope.spawn(move || {
                for round in 0..5u8 {
                    let name = root.join(format!("t{thread}-{round}.bin"));
                    let content = pattern(50_000 + usize::from(thread) * 1000 + usize::from(round), thread ^ round);
                    fs::write(&name, &content).unwrap();
                    assert_eq!(fs::read(&name).unwrap(), content);
                }
            });
        }
    });
    let status = mounted.status();
    assert!(status.contains("uploads"), "{status}");
    ok(mounted.unmount());
    let again = account.mount("parallel-again");
    for thread in 0..8u8 {
        for round in 0..5u8 {
            let content = pattern(50_000 + usize::from(thread) * 1000 + usize::from(round), thread ^ round);
            assert_eq!(fs::read(again.path(&format!("t{thread}-{round}.bin"))).unwrap(), content);
        }
    }
    ok(again.unmount());
}

/// Write-behind (small files uploaded after close returns) racing what programs do right after close:
/// rename (also over an existing file, as editors and git do), overwrite, remove. After unmount a fresh
/// mount must show exactly the expected names and contents, and no conflicted copy.
#[test]
fn write_behind_races_rename_overwrite_and_remove_right_after_close() {
    let account = Account::new("behind");
    let first = account.mount("behind-a");
    fs::create_dir(first.path("wb")).unwrap();
    let mut expected = std::collections::BTreeMap::<String, Vec<u8>>::new();
    for index in 0..40u8 {
        let content = pattern(1000 + usize::from(index) * 97, index);
        let temp = format!("wb/.tmp-{index}");
        fs::write(first.path(&temp), &content).unwrap();
        match index % 4 {
            // Renamed at once.
            0 => {
                fs::rename(first.path(&temp), first.path(&format!("wb/renamed-{index}"))).unwrap();
                expected.insert(format!("renamed-{index}"), content);
            }
            // Renamed over an existing file (the target written just before, itself still uploading).
            1 => {
                let target = format!("wb/target-{index}");
                fs::write(first.path(&target), b"old").unwrap();
                fs::rename(first.path(&temp), first.path(&target)).unwrap();
                expected.insert(format!("target-{index}"), content);
            }
            // Overwritten twice, then renamed.
            2 => {
                let newer = pattern(300_000, index); // above the write-behind limit: close waits
                fs::write(first.path(&temp), &newer).unwrap();
                let newest = pattern(2000, index.wrapping_add(100));
                fs::write(first.path(&temp), &newest).unwrap();
                fs::rename(first.path(&temp), first.path(&format!("wb/twice-{index}"))).unwrap();
                expected.insert(format!("twice-{index}"), newest);
            }
            // Removed at once.
            _ => fs::remove_file(first.path(&temp)).unwrap(),
        }
    }
    ok(first.unmount());
    let second = account.mount("behind-b");
    let names = sorted_names(&second.path("wb"));
    assert!(!names.iter().any(|name| name.contains("conflicted")), "a conflicted copy appeared: {names:?}");
    assert_eq!(names, expected.keys().cloned().collect::<Vec<_>>());
    for (name, content) in &expected {
        assert_eq!(&fs::read(second.path(&format!("wb/{name}"))).unwrap(), content, "content of {name}");
    }
    assert_only_random_names(&account);
    ok(second.unmount());
}

#[test]
fn a_second_mount_sees_changes_and_bursts_share_commits() {
    let account = Account::new("second");
    let first = account.mount("second-a");
    let second = account.mount("second-b");
    assert!(fs::read_dir(second.path("")).unwrap().next().is_none());
    // A burst of 30 files in one folder: far fewer commits than files.
    fs::create_dir(first.path("burst")).unwrap();
    for index in 0..30 {
        fs::write(first.path(&format!("burst/{index}.txt")), format!("file {index}")).unwrap();
    }
    let file = fs::File::open(first.path("burst/29.txt")).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let status = first.status();
    let commits: u64 = status
        .split("uploads, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no commit count in {status}"));
    assert!(commits <= 5, "30 files in one folder took {commits} commits:\n{status}");
    assert!(
        eventually(Duration::from_secs(10), || fs::read(second.path("burst/29.txt")).ok().as_deref()
            == Some(&b"file 29"[..])),
        "the second mount did not see the first one's files"
    );
    assert_eq!(fs::read_dir(second.path("burst")).unwrap().count(), 30);
    // Changes the other way, and a removal.
    fs::write(second.path("from-b.txt"), b"hello from b").unwrap();
    fs::remove_file(second.path("burst/0.txt")).unwrap();
    fs::File::open(second.path("from-b.txt")).unwrap().sync_all().unwrap();
    fs::File::open(second.path("burst")).unwrap().sync_all().unwrap();
    assert!(eventually(Duration::from_secs(10), || fs::read(first.path("from-b.txt")).is_ok()));
    assert!(eventually(Duration::from_secs(10), || !first.path("burst/0.txt").exists()));
    // An overwrite by one mount is seen by the other (new content, not the kernel's cached pages).
    assert_eq!(fs::read(first.path("burst/5.txt")).unwrap(), b"file 5");
    fs::write(second.path("burst/5.txt"), b"changed by b").unwrap();
    fs::File::open(second.path("burst/5.txt")).unwrap().sync_all().unwrap();
    assert!(eventually(Duration::from_secs(10), || fs::read(first.path("burst/5.txt")).ok().as_deref()
        == Some(&b"changed by b"[..])));
    ok(first.unmount());
    ok(second.unmount());
}

#[test]
fn tampering_refusals_and_fsync_surviving_a_crash() {
    let account = Account::new("failures");
    // A wrong mnemonic and a folder that is not encrypted: clear refusals, nothing mounted.
    let wrong = account.config.0.join("wrong.words");
    fs::write(&wrong, "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
        .unwrap();
    let mountpoint = TempDir::new("failures-refused");
    let refused = account.mount_command("/Vault", &mountpoint.0, &wrong).output().unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("mnemonic"), "{message}");
    assert!(!mount::is_mounted(&mountpoint.0));
    let refused = account.mount_command("/", &mountpoint.0, &account.mnemonic).output().unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("not an end-to-end encrypted folder"), "{message}");

    // fsync, then a crash (kill -9): the data is on the server; the stale mount is cleared on remount.
    let mounted = account.mount("failures");
    let mut file = fs::File::create(mounted.path("durable.txt")).unwrap();
    file.write_all(b"acknowledged by fsync").unwrap();
    file.sync_all().unwrap();
    drop(file);
    let dir = mounted.crash();
    assert!(mount::is_mounted(&dir.0), "a crash leaves a stale mount");
    let again = account.mount_at(dir, &[]);
    assert_eq!(fs::read(again.path("durable.txt")).unwrap(), b"acknowledged by fsync");

    // The server flips a bit of a blob: reading fails with EIO; nothing of it is returned.
    fs::write(again.path("victim.txt"), b"the real content").unwrap();
    fs::File::open(again.path("victim.txt")).unwrap().sync_all().unwrap();
    ok(again.unmount());
    let blobs = server::files_below(&account.data.0.join("blobs"));
    let victim_blob = blobs
        .iter()
        .find(|path| fs::metadata(path).unwrap().len() == "the real content".len() as u64 + 16)
        .expect("the victim's blob");
    let mut bytes = fs::read(victim_blob).unwrap();
    bytes[3] ^= 0x20;
    fs::write(victim_blob, &bytes).unwrap();
    let tampered = account.mount("failures-tampered");
    assert_eq!(errno_of(fs::read(tampered.path("victim.txt"))), libc::EIO);
    assert_eq!(fs::read(tampered.path("durable.txt")).unwrap(), b"acknowledged by fsync");
    let log = tampered.log();
    assert!(!log.contains("victim"), "the log names the clear file name:\n{log}");
    let status = tampered.status();
    assert!(status.contains("dirty files: 0"), "{status}");
    ok(tampered.unmount());
}

#[test]
fn daemon_mode_detaches_reports_status_and_unmounts() {
    let account = Account::new("daemon");
    let mountpoint = TempDir::new("daemon-mnt");
    let runtime_dir = account.runtime_dir();
    let started = account.mount_command("/Vault", &mountpoint.0, &account.mnemonic).arg("--daemon").output().unwrap();
    let stdout = String::from_utf8_lossy(&started.stdout).into_owned();
    assert!(started.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&started.stderr));
    assert!(stdout.contains("mounted in the background"), "{stdout}");
    // The parent returned; the mount lives on.
    fs::write(mountpoint.0.join("bg.txt"), b"written to a background mount").unwrap();
    let status = server::cloakfs().arg("status").env("XDG_RUNTIME_DIR", &runtime_dir).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains(&mountpoint.0.display().to_string()) && status.contains("/Vault"), "{status}");
    let unmounted =
        server::cloakfs().arg("unmount").arg(&mountpoint.0).env("XDG_RUNTIME_DIR", &runtime_dir).output().unwrap();
    assert!(unmounted.status.success(), "{}", String::from_utf8_lossy(&unmounted.stderr));
    assert!(!mount::is_mounted(&mountpoint.0));
    let content = ok(account.run(&["get", "/Vault/bg.txt", "-"])).stdout;
    assert_eq!(content, b"written to a background mount");
    // Nothing left to unmount: a clear error.
    let again =
        server::cloakfs().arg("unmount").arg(&mountpoint.0).env("XDG_RUNTIME_DIR", &runtime_dir).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing of cloakfs is mounted"));
}
