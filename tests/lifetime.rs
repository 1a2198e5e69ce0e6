//! A mount is a long-lived process people end carelessly. Through a real pseudo-terminal and real pipes,
//! against a real `cloakfs serve` and a Cryptomator vault, with kernel mounts: a closed terminal, a closed
//! output pipe, a background mount's hang-up and SIGTERM, and a kill -9 — no closed file is lost, and no
//! mount point is left broken without `cloakfs status` saying so.

#[path = "common/mount.rs"]
mod mount;
#[path = "common/pty.rs"]
mod pty;
#[path = "common/server.rs"]
mod server;

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mount::{ok, Account};
use server::{cloakfs, TempDir};

const PASSPHRASE: &str = "correct horse battery staple";
const FILES: usize = 5;

/// Writes `FILES` small files (each closed) into the mount at `root`; their contents.
fn write_files(root: &Path, label: &str) -> Vec<(String, Vec<u8>)> {
    (0..FILES)
        .map(|index| {
            let name = format!("{label}-{index}.txt");
            let content = format!("file {index} written before the {label}\n").into_bytes();
            fs::write(root.join(&name), &content).unwrap();
            (name, content)
        })
        .collect()
}

/// `cloakfs status` of the mounts with control sockets in `runtime_dir`.
fn status(runtime_dir: &Path) -> String {
    let output = cloakfs().arg("status").env("XDG_RUNTIME_DIR", runtime_dir).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Checks that every file is on the server with its content, and that none of them was there before the
/// mount ended (`before`: the server's listing while the files were queued).
fn assert_all_uploaded(account: &Account, files: &[(String, Vec<u8>)], before: &str) {
    for (name, content) in files {
        assert!(!before.contains(name.as_str()), "{name} was uploaded before the mount ended: the test proves nothing");
        let on_server = ok(account.run(&["get", &format!("/Vault/{name}"), "-"])).stdout;
        assert_eq!(&on_server, content, "{name} on the server");
    }
}

/// The mount point is an ordinary empty folder again (not a broken mount).
fn assert_clean(mountpoint: &Path) {
    assert!(!mount::is_mounted(mountpoint), "still mounted at {}", mountpoint.display());
    assert_eq!(fs::read_dir(mountpoint).expect("the mount point is readable").count(), 0);
}

/// Detaches whatever is still mounted at its path when the test ends (a failed test must not leave a broken
/// mount behind for the next run).
struct Detached<'a>(&'a Path);

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        if mount::is_mounted(self.0) {
            let _ = std::process::Command::new("fusermount3").args(["-u", "-z"]).arg(self.0).status();
        }
    }
}

/// A mount of `/Vault` that keeps closed files queued (a commit only after 10 minutes of quiet).
fn queued_mount_command(account: &Account, mountpoint: &Path) -> std::process::Command {
    let mut command = account.mount_command("/Vault", mountpoint, &account.mnemonic);
    command.args(["--commit-delay", "600000", "--dir-cache-time", "1"]);
    command
}

#[test]
fn a_closed_terminal_uploads_every_closed_file_then_unmounts() {
    let account = Account::new("hangup");
    let mountpoint = TempDir::new("hangup-mnt");
    let _detached = Detached(&mountpoint.0);
    let mut terminal = pty::Terminal::spawn(queued_mount_command(&account, &mountpoint.0));
    assert!(terminal.wait_for(" mounted at ", Duration::from_secs(60)), "not mounted: {}", terminal.output());
    let files = write_files(&mountpoint.0, "hangup");
    let shown = status(&account.runtime_dir());
    assert!(shown.contains(&format!("dirty files: {FILES}")), "{shown}");
    let before = String::from_utf8_lossy(&ok(account.run(&["ls", "/Vault"])).stdout).into_owned();

    terminal.hang_up();
    let exit = terminal.wait(Duration::from_secs(60)).expect("the mount kept running after its terminal closed");
    assert!(exit.success(), "the mount ended with {exit} after its terminal closed");
    assert_clean(&mountpoint.0);
    assert_all_uploaded(&account, &files, &before);
}

#[test]
fn a_closed_output_pipe_uploads_every_closed_file_then_unmounts() {
    let account = Account::new("pipe");
    let mountpoint = TempDir::new("pipe-mnt");
    let _detached = Detached(&mountpoint.0);
    // `cloakfs mount … 2>&1 | tee log`, and then tee ends (Ctrl-C in its terminal, or `| head`).
    let (reader, writer) = std::io::pipe().unwrap();
    // Debug logging: the upload after the pipe closed writes many log lines into it, and none may fail the
    // mount (tracing reports a failed write with `eprintln!`, which panics, unless told not to).
    let mut child = queued_mount_command(&account, &mountpoint.0)
        .env("RUST_LOG", "cloakfs=debug")
        .stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(reader);
    let mut seen = String::new();
    while !seen.contains(" mounted at ") {
        assert!(lines.read_line(&mut seen).unwrap() > 0, "the mount ended before mounting: {seen}");
    }
    let files = write_files(&mountpoint.0, "pipe");
    let before = String::from_utf8_lossy(&ok(account.run(&["ls", "/Vault"])).stdout).into_owned();
    assert!(status(&account.runtime_dir()).contains(&format!("dirty files: {FILES}")));

    drop(lines);
    let exit = mount::eventually(Duration::from_secs(60), || child.try_wait().unwrap().is_some());
    assert!(exit, "the mount kept running after its output was closed");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "the mount ended with {exit} after its output was closed (a panic on EPIPE?)");
    assert_clean(&mountpoint.0);
    assert_all_uploaded(&account, &files, &before);
}

/// A Cryptomator vault in a local folder, created with the test passphrase.
fn local_vault(label: &str) -> TempDir {
    let folder = TempDir::new(label);
    ok(cloakfs()
        .args(["vault", "create", folder.0.to_str().unwrap()])
        .env("CLOAKFS_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap());
    folder
}

/// `cloakfs vault ls` of the vault in `folder`.
fn vault_listing(folder: &Path) -> String {
    let output = cloakfs()
        .args(["vault", "ls", folder.to_str().unwrap()])
        .env("CLOAKFS_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    String::from_utf8_lossy(&ok(output).stdout).into_owned()
}

/// `cloakfs mount` of the vault in `folder` at `mountpoint`.
fn vault_mount_command(folder: &Path, mountpoint: &Path, runtime_dir: &Path) -> std::process::Command {
    let mut command = cloakfs();
    command
        .arg("mount")
        .arg(folder)
        .arg(mountpoint)
        .env("CLOAKFS_PASSPHRASE", PASSPHRASE)
        .env("XDG_RUNTIME_DIR", runtime_dir);
    command
}

fn send_signal(pid: i32, signal: i32) {
    // SAFETY: a plain syscall on a process id.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill: {}", std::io::Error::last_os_error());
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn a_background_vault_mount_logs_to_the_system_log_ignores_a_hang_up_and_uploads_on_sigterm() {
    let folder = local_vault("daemon-vault");
    let run = TempDir::new("daemon-vault-run");
    let mountpoint = TempDir::new("daemon-vault-mnt");
    let _detached = Detached(&mountpoint.0);
    // The system log: a datagram socket standing in for /dev/log.
    let log_socket_path = run.0.join("log");
    let log_socket = std::os::unix::net::UnixDatagram::bind(&log_socket_path).unwrap();
    log_socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let received = received.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            loop {
                if let Ok(length) = log_socket.recv(&mut buffer) {
                    received.lock().unwrap().push(String::from_utf8_lossy(&buffer[..length]).into_owned());
                }
            }
        });
    }
    let log_has = |text: &str| received.lock().unwrap().iter().any(|line| line.contains(text));

    let started = vault_mount_command(&folder.0, &mountpoint.0, &run.0)
        .arg("--daemon")
        .env("CLOAKFS_SYSLOG_SOCKET", &log_socket_path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&started.stdout).into_owned();
    assert!(started.status.success(), "{said}\n{}", String::from_utf8_lossy(&started.stderr));
    assert!(said.contains("mounted in the background") && said.contains("the system log"), "{said}");
    let pid: i32 = said.split("(pid ").nth(1).and_then(|rest| rest.split(')').next()).unwrap().parse().unwrap();
    assert!(mount::is_mounted(&mountpoint.0));
    assert!(mount::eventually(Duration::from_secs(10), || log_has("running detached")));

    // A hang-up (a terminal closing, a session ending) does not end a detached mount.
    fs::write(mountpoint.0.join("before-hangup.txt"), b"written before the hang-up").unwrap();
    send_signal(pid, libc::SIGHUP);
    assert!(mount::eventually(Duration::from_secs(10), || log_has("hang-up ignored")), "{:?}", received.lock());
    assert!(alive(pid) && mount::is_mounted(&mountpoint.0), "a hang-up ended the background mount");
    fs::write(mountpoint.0.join("after-hangup.txt"), b"written after the hang-up").unwrap();

    // SIGTERM (systemctl stop, shutdown): upload, unmount, exit.
    send_signal(pid, libc::SIGTERM);
    assert!(mount::eventually(Duration::from_secs(30), || !alive(pid)), "SIGTERM did not end the mount");
    assert_clean(&mountpoint.0);
    let listing = vault_listing(&folder.0);
    assert!(listing.contains("before-hangup.txt") && listing.contains("after-hangup.txt"), "{listing}");
    assert!(log_has("terminated: uploading, then unmounting"), "{:?}", received.lock());
    // Every line has a syslog priority and tag; none names a file.
    for line in received.lock().unwrap().iter() {
        assert!(line.starts_with('<') && line.contains(&format!("cloakfs[{pid}]: ")), "{line}");
        assert!(!line.contains("hangup.txt"), "a file name reached the system log: {line}");
    }
}

#[test]
fn a_killed_mount_is_listed_as_broken_and_cleaned_by_mount_and_by_unmount() {
    let folder = local_vault("killed-vault");
    let run = TempDir::new("killed-run");
    let mountpoint = TempDir::new("killed-mnt");
    let mounted = mount::start_mount(vault_mount_command(&folder.0, &mountpoint.0, &run.0), mountpoint, run.0.clone());
    let mut file = fs::File::create(mounted.path("synced.txt")).unwrap();
    std::io::Write::write_all(&mut file, b"acknowledged by fsync").unwrap();
    file.sync_all().unwrap();
    drop(file);
    let dir = mounted.crash();

    // The kernel still lists it; every access fails; status names it and says how to clean it.
    let error = fs::read_dir(&dir.0).err().and_then(|error| error.raw_os_error());
    assert_eq!(error, Some(libc::ENOTCONN));
    let shown = status(&run.0);
    assert!(shown.contains(&dir.0.display().to_string()) && shown.contains("BROKEN"), "{shown}");
    assert!(shown.contains("cloakfs unmount"), "{shown}");

    // Mounting there again clears it; the fsynced file survived.
    let again = mount::start_mount(vault_mount_command(&folder.0, &dir.0, &run.0), dir, run.0.clone());
    assert_eq!(fs::read(again.path("synced.txt")).unwrap(), b"acknowledged by fsync");
    let dir = again.crash();

    // `cloakfs unmount` clears a broken mount too.
    let cleaned = cloakfs().arg("unmount").arg(&dir.0).env("XDG_RUNTIME_DIR", &run.0).output().unwrap();
    assert!(cleaned.status.success(), "{}", String::from_utf8_lossy(&cleaned.stderr));
    assert_clean(&dir.0);
    // (Other tests' mounts may be listed: the kernel's table is the machine's.)
    let shown = status(&run.0);
    assert!(!shown.contains(&dir.0.display().to_string()), "{shown}");
}
