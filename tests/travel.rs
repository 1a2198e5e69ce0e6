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
