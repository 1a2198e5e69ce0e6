//! Travel mode against kernel mounts and a real `cloakfs serve`: the idle timeout (activity postpones it,
//! dirty data reaches the server first), `cloakfs lock` (uploads first; refuses while the server is away;
//! `--discard` drops), and no core dumps.

#[path = "common/mount.rs"]
mod mount;
#[path = "common/server.rs"]
mod server;

use std::fs;
use std::time::{Duration, Instant};

use mount::{ok, Account};
use server::TempDir;

#[test]
fn idle_timeout_unmounts_after_uploading_and_activity_postpones_it() {
    let account = Account::new("idle");
    let mut mounted = account.mount_with("idle", &["--idle-timeout", "3s"]);
    fs::write(mounted.path("before-idle.txt"), b"uploaded before the idle unmount").unwrap();
    // Activity (a read every second) keeps it mounted past the timeout.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(fs::read(mounted.path("before-idle.txt")).unwrap(), b"uploaded before the idle unmount");
        std::thread::sleep(Duration::from_millis(900));
    }
    assert!(mounted.running(), "unmounted despite activity");
    // An open handle without I/O does not keep it alive.
    let _idle_handle = fs::File::open(mounted.path("before-idle.txt")).unwrap();
    assert!(mounted.wait_for_exit(Duration::from_secs(20)), "did not unmount when idle");
    assert!(!mount::is_mounted(&mounted.dir.0));
    assert!(mounted.log().contains("idle for"), "{}", mounted.log());
    let content = ok(account.run(&["get", "/Vault/before-idle.txt", "-"])).stdout;
    assert_eq!(content, b"uploaded before the idle unmount");
}

#[test]
fn lock_uploads_first_refuses_during_an_outage_and_discard_drops() {
    let mut account = Account::new("lock");
    // With the server up: lock uploads what is pending, then unmounts.
    let mut mounted = account.mount_with("lock", &["--commit-delay", "60000"]);
    fs::write(mounted.path("pending.txt"), b"committed by lock").unwrap();
    let locked = mounted.control(&["lock", mounted.dir.0.to_str().unwrap()]);
    assert!(locked.status.success(), "{}", String::from_utf8_lossy(&locked.stderr));
    assert!(mounted.wait_for_exit(Duration::from_secs(20)));
    assert_eq!(ok(account.run(&["get", "/Vault/pending.txt", "-"])).stdout, b"committed by lock");

    // The server goes away: closing a written file reports the failed upload (EIO) and keeps the data;
    // lock refuses; lock --discard drops it and unmounts.
    // (A long dir cache time: the listing stays trusted, so creating the file needs no server.)
    let mut mounted = account.mount_with("lock-outage", &["--dir-cache-time", "600"]);
    assert_eq!(fs::read_dir(mounted.path("")).unwrap().count(), 1);
    account.server.kill();
    let mut file = fs::File::create(mounted.path("unsaved.txt")).unwrap();
    std::io::Write::write_all(&mut file, b"cannot be uploaded").unwrap();
    // close(2) itself must report the failed upload (Rust's File drop would ignore it).
    // SAFETY: the descriptor was just taken out of the File, which no longer closes it.
    let closed = unsafe { libc::close(std::os::fd::IntoRawFd::into_raw_fd(file)) };
    assert_eq!((closed, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EIO)));
    let status = String::from_utf8_lossy(&mounted.control(&["status"]).stdout).into_owned();
    assert!(status.contains("/unsaved.txt") && status.contains("upload failed"), "{status}");
    let refused = mounted.control(&["lock", mounted.dir.0.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("could not be uploaded"));
    assert!(mounted.running() && mount::is_mounted(&mounted.dir.0), "locked despite unsaved data");
    let unconfirmed = mounted.control(&["lock", "--all", "--discard"]);
    assert!(!unconfirmed.status.success(), "--discard without confirmation must refuse");
    let discarded = mounted.control(&["lock", "--all", "--discard", "--yes"]);
    assert!(discarded.status.success(), "{}", String::from_utf8_lossy(&discarded.stderr));
    assert!(mounted.wait_for_exit(Duration::from_secs(20)));
    assert!(mounted.log().contains("1 file(s) with changes not on the server were discarded"), "{}", mounted.log());
}

#[test]
fn processes_cannot_dump_core() {
    let data = TempDir::new("core-data");
    let cwd = TempDir::new("core-cwd");
    let mut child = server::cloakfs()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data.0)
        .current_dir(&cwd.0)
        .stdout(std::process::Stdio::piped())
        .spawn_with_unlimited_core();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    let limits = fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let core_line = limits.lines().find(|line| line.starts_with("Max core file size")).unwrap().to_owned();
    let fields: Vec<&str> = core_line.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core_line}");
    // SAFETY: a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGABRT) };
    let status = child.wait().unwrap();
    assert!(!status.success());
    let cores: Vec<_> = fs::read_dir(&cwd.0)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("core"))
        .collect();
    assert!(cores.is_empty(), "core files: {cores:?}");
}

trait SpawnUnlimitedCore {
    fn spawn_with_unlimited_core(&mut self) -> std::process::Child;
}

impl SpawnUnlimitedCore for std::process::Command {
    /// Spawns with `ulimit -c unlimited`, so only the process itself can forbid core dumps.
    fn spawn_with_unlimited_core(&mut self) -> std::process::Child {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
        unsafe {
            self.pre_exec(|| {
                let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
                libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
                Ok(())
            });
        }
        self.spawn().unwrap()
    }
}

/// A private D-Bus daemon standing in for the system and session buses, stopped on drop.
struct PrivateBus {
    child: std::process::Child,
    address: String,
}

impl PrivateBus {
    fn start() -> Self {
        let mut child = std::process::Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("dbus-daemon (package dbus-daemon) is needed");
        let mut address = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut address).unwrap();
        Self { child, address: address.trim().to_owned() }
    }

    /// Emits a signal like logind or a screen locker would.
    fn signal(&self, path: &str, member: &str, argument: &str) {
        let status = std::process::Command::new("dbus-send")
            .arg(format!("--bus={}", self.address))
            .args(["--type=signal", path, member, argument])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn lock_on_suspend_uploads_then_unmounts_on_sleep_and_on_screen_lock() {
    let account = Account::new("suspend");
    let bus = PrivateBus::start();
    let env = [
        ("DBUS_SYSTEM_BUS_ADDRESS", bus.address.as_str()),
        ("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str()),
        // The watch logs each signal it sees: the test waits for that instead of sleeping.
        ("RUST_LOG", "warn,cloakfs::mount::suspend=debug"),
    ];
    let mut mounted =
        account.mount_at_with_env(TempDir::new("suspend-mnt"), &["--lock-on-suspend", "--commit-delay", "60000"], &env);
    assert!(mounted.status().contains("locks on sleep and screen lock"), "{}", mounted.status());
    fs::write(mounted.path("written-before-sleep.txt"), b"must reach the server before sleep").unwrap();
    // Resume and an unlocked screen are not lock requests.
    bus.signal("/org/freedesktop/login1", "org.freedesktop.login1.Manager.PrepareForSleep", "boolean:false");
    bus.signal("/org/gnome/ScreenSaver", "org.gnome.ScreenSaver.ActiveChanged", "boolean:false");
    assert!(
        mount::eventually(Duration::from_secs(10), || mounted.log().matches("not a lock request").count() == 2),
        "the mount did not see the resume and unlock signals: {}",
        mounted.log()
    );
    assert!(mounted.running() && mount::is_mounted(&mounted.dir.0), "locked on a resume signal");
    bus.signal("/org/freedesktop/login1", "org.freedesktop.login1.Manager.PrepareForSleep", "boolean:true");
    assert!(mounted.wait_for_exit(Duration::from_secs(20)), "did not lock on sleep");
    assert!(!mount::is_mounted(&mounted.dir.0));
    assert!(mounted.log().contains("about to sleep"), "{}", mounted.log());
    let content = ok(account.run(&["get", "/Vault/written-before-sleep.txt", "-"])).stdout;
    assert_eq!(content, b"must reach the server before sleep");

    let mut mounted = account.mount_at_with_env(TempDir::new("screen-mnt"), &["--lock-on-suspend"], &env);
    assert_eq!(fs::read(mounted.path("written-before-sleep.txt")).unwrap(), b"must reach the server before sleep");
    bus.signal("/org/freedesktop/ScreenSaver", "org.freedesktop.ScreenSaver.ActiveChanged", "boolean:true");
    assert!(mounted.wait_for_exit(Duration::from_secs(20)), "did not lock on screen lock");
    assert!(mounted.log().contains("screen locked"), "{}", mounted.log());

    // Asked for, but impossible: the mount refuses instead of running without it.
    let dir = TempDir::new("suspend-refused");
    let refused = account
        .mount_command("/Vault", &dir.0, &account.mnemonic)
        .arg("--lock-on-suspend")
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/cloakfs-test-bus")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--lock-on-suspend cannot work"), "{stderr}");
    assert!(!mount::is_mounted(&dir.0));
}

#[test]
fn travel_profile_asks_for_the_mnemonic_defaults_the_idle_timeout_and_forget_removes_the_state() {
    let account = Account::new("travel");
    let words = fs::read_to_string(&account.mnemonic).unwrap();
    let dir = TempDir::new("travel-refused");
    // A mnemonic file would outlive the mount: --travel refuses it.
    let refused = account.mount_command("/Vault", &dir.0, &account.mnemonic).arg("--travel").output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--travel does not read the mnemonic from a file"));

    // An unusable spill directory is refused before anything is mounted.
    let bad_spill = account
        .mount_command("/Vault", &dir.0, &account.mnemonic)
        .args(["--spill-dir", "/nonexistent/cloakfs-spill"])
        .output()
        .unwrap();
    assert!(!bad_spill.status.success());
    assert!(String::from_utf8_lossy(&bad_spill.stderr).contains("give another --spill-dir"));
    assert!(!mount::is_mounted(&dir.0));

    // The mnemonic given the way a prompt would (here the environment, never a file): mounts, 15 min idle.
    let dir = TempDir::new("travel-mnt");
    let mut child = server::cloakfs()
        .args(["mount", "/Vault"])
        .arg(&dir.0)
        .args(["--server", &account.server.url, "--user", &account.user, "--travel", "--daemon"])
        .env("XDG_CONFIG_HOME", &account.config.0)
        .env("XDG_RUNTIME_DIR", account.runtime_dir())
        .env("CLOAKFS_PASSWORD", server::PASSWORD)
        .env("CLOAKFS_MNEMONIC", words.trim())
        .output()
        .unwrap();
    assert!(child.status.success(), "{}", String::from_utf8_lossy(&child.stderr));
    let status = |args: &[&str]| {
        server::cloakfs()
            .args(args)
            .env("XDG_RUNTIME_DIR", account.runtime_dir())
            .env("XDG_CONFIG_HOME", &account.config.0)
            .output()
            .unwrap()
    };
    let shown = String::from_utf8_lossy(&status(&["status"]).stdout).into_owned();
    assert!(shown.contains("locks after 900 s idle"), "{shown}");
    assert!(fs::read_dir(&dir.0).unwrap().count() == 0);

    // forget refuses while a mount runs (it records counters there), then removes pins and counters.
    let pins = account.config.0.join("cloakfs").join("pins.json");
    assert!(pins.exists());
    let pin_text = fs::read_to_string(&pins).unwrap();
    assert!(pin_text.contains(&account.server.url) && pin_text.contains("counters"), "{pin_text}");
    child = status(&["forget", "--yes"]);
    assert!(!child.status.success());
    assert!(String::from_utf8_lossy(&child.stderr).contains("cloakfs lock --all"));
    ok(status(&["lock", "--all"]));
    assert!(mount::eventually(Duration::from_secs(20), || !mount::is_mounted(&dir.0)));
    assert!(mount::eventually(Duration::from_secs(10), || status(&["forget", "--yes"]).status.success()));
    assert!(!pins.exists(), "pin file still there");
    let again = status(&["forget", "--yes"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to forget"));
    // Trust on first use again: the next session pins afresh.
    ok(account.run(&["ls", "/Vault"]));
    assert!(pins.exists());
}

/// Random marker strings for the forensic test.
fn marker(label: &str) -> String {
    let mut random = [0u8; 10];
    let file = fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut &file, &mut random).unwrap();
    let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("CLK{label}{hex}")
}

/// The byte strings that would betray `marker`: plain, UTF-16LE, and base64 at each of the three alignments
/// (without the edge characters that depend on neighbouring bytes).
fn forms(marker: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let plain = marker.as_bytes().to_vec();
    let utf16: Vec<u8> = marker.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut all = vec![plain.clone(), utf16];
    for shift in 0..3 {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(&plain);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&shifted);
        let start = if shift == 0 { 0 } else { (shift * 4).div_ceil(3) };
        let stable = &encoded[start..(plain.len() + shift) / 3 * 4];
        all.push(stable.as_bytes().to_vec());
    }
    all
}

/// Files under `root` (same file system only: other mounts, such as live FUSE mounts, are skipped)
/// modified at or after `since`, whose name or content contains one of `needles`.
fn hits(root: &std::path::Path, since: std::time::SystemTime, needles: &[Vec<u8>], found: &mut Vec<String>) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(root_meta) = fs::symlink_metadata(root) else { return };
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name_bytes = name.as_encoded_bytes();
            if needles.iter().any(|needle| name_bytes.windows(needle.len()).any(|window| window == needle.as_slice())) {
                found.push(format!("name: {}", path.display()));
            }
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if meta.dev() != root_meta.dev() {
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && meta.modified().is_ok_and(|modified| modified >= since) {
                let Ok(bytes) = fs::read(&path) else { continue };
                for needle in needles {
                    if bytes.windows(needle.len()).any(|window| window == needle.as_slice()) {
                        found.push(format!("content: {}", path.display()));
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn forensic_no_name_content_or_key_outlives_the_mount() {
    // One second of slack: file systems with coarse timestamps.
    let since = std::time::SystemTime::now() - Duration::from_secs(1);
    let account = Account::new("forensic");
    let spill_dir = TempDir::new("forensic-spill");
    let (file_name, folder_name, renamed, deleted) = (marker("F"), marker("D"), marker("R"), marker("X"));
    let (content_marker, big_marker) = (marker("C"), marker("B"));
    let mounted = account.mount_with("forensic", &["--cache-size", "1M", "--spill-dir", spill_dir.0.to_str().unwrap()]);
    let folder = mounted.path(&folder_name);
    fs::create_dir(&folder).unwrap();
    let secret_text = format!("secret content {content_marker} end").repeat(20);
    fs::write(folder.join(format!("{file_name}.txt")), &secret_text).unwrap();
    fs::write(mounted.path(&format!("{deleted}.txt")), format!("to be deleted {content_marker}")).unwrap();
    // Larger than the cache (1 MiB): written and read through the encrypted spill file.
    let big: Vec<u8> = format!("{big_marker}-").into_bytes().into_iter().cycle().take(3 << 20).collect();
    fs::write(mounted.path("big.bin"), &big).unwrap();
    assert_eq!(fs::read(folder.join(format!("{file_name}.txt"))).unwrap(), secret_text.as_bytes());
    fs::rename(folder.join(format!("{file_name}.txt")), folder.join(format!("{renamed}.txt"))).unwrap();
    fs::remove_file(mounted.path(&format!("{deleted}.txt"))).unwrap();
    let status = mounted.status();
    assert!(
        status.contains("spill files: ") && !status.contains("spill files: 0 "),
        "the spill was not used: {status}"
    );
    mounted.unmount();
    // A fresh mount reads it all back (the big file through the spill again), then unmounts.
    let mounted =
        account.mount_with("forensic-again", &["--cache-size", "1M", "--spill-dir", spill_dir.0.to_str().unwrap()]);
    assert!(fs::read(mounted.path("big.bin")).unwrap() == big, "big file differs");
    assert_eq!(fs::read_to_string(mounted.path(&folder_name).join(format!("{renamed}.txt"))).unwrap(), secret_text);
    mounted.unmount();

    let needles: Vec<Vec<u8>> = [&file_name, &folder_name, &renamed, &deleted, &content_marker, &big_marker]
        .iter()
        .flat_map(|marker| forms(marker))
        .collect();
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let mut roots: Vec<std::path::PathBuf> =
        vec!["/tmp".into(), "/var/tmp".into(), "/var/log".into(), "/run/log".into()];
    roots.push(std::env::temp_dir());
    roots.push(spill_dir.0.clone());
    roots.push(account.config.0.clone()); // the mounts' XDG_CONFIG_HOME and runtime dir
    roots.push(account.data.0.clone()); // the server's data: ciphertext only
    if let Some(home) = &home {
        roots.push(home.clone());
        for xdg in [".cache", ".config", ".local/share", ".local/state"] {
            roots.push(home.join(xdg));
        }
    }
    for variable in ["XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"] {
        if let Some(dir) = std::env::var_os(variable) {
            roots.push(dir.into());
        }
    }
    roots.sort();
    roots.dedup();
    // The searcher must find what is there: a planted copy is found, then removed.
    let planted = TempDir::new("forensic-planted");
    fs::write(planted.0.join("note"), forms(&content_marker)[4].clone()).unwrap();
    let mut found = Vec::new();
    hits(&planted.0, since, &needles, &mut found);
    assert_eq!(found.len(), 1, "the search does not work: {found:?}");
    drop(planted);
    found.clear();
    for root in &roots {
        hits(root, since, &needles, &mut found);
    }
    assert!(found.is_empty(), "markers left on disk: {found:?}");
    // The server holds the data, but only as ciphertext and random names.
    assert!(walk_count(&account.data.0) > 0);
}

fn walk_count(root: &std::path::Path) -> usize {
    fs::read_dir(root)
        .map(|entries| {
            entries.flatten().map(|entry| if entry.path().is_dir() { walk_count(&entry.path()) } else { 1 }).sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_refused_memory_lock_is_reported_not_silent() {
    use std::os::unix::process::CommandExt as _;
    let account = Account::new("memlock");
    let mounted = account.mount_customized(TempDir::new("memlock-mnt"), &[], |command| {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                // Root may lock memory regardless of the limit (CAP_IPC_LOCK): drop that capability first.
                if libc::geteuid() == 0 && libc::prctl(libc::PR_CAPBSET_DROP, 14 /* CAP_IPC_LOCK */, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &none) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    fs::write(mounted.path("works.txt"), b"still works without locked memory").unwrap();
    assert_eq!(fs::read(mounted.path("works.txt")).unwrap(), b"still works without locked memory");
    assert!(mounted.status().contains("key memory: NOT locked"), "{}", mounted.status());
    assert!(mounted.log().contains("cannot lock key memory in RAM"), "{}", mounted.log());
    mounted.unmount();
}
