//! Kernel mounts for tests: a user with keys and an encrypted folder on a real `cloakfs serve`, and
//! `cloakfs mount` processes that are always unmounted (on drop too).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use super::server::{client, cloakfs, TempDir, TestServer, PASSWORD};

/// A user with keys and an encrypted folder `/Vault` on a running server.
pub struct Account {
    /// The server.
    pub server: TestServer,
    /// The server's data directory.
    pub data: TempDir,
    /// The client's config dir (pins).
    pub config: TempDir,
    /// The mnemonic file.
    pub mnemonic: PathBuf,
    /// The user.
    pub user: String,
    /// The URL clients use (the server's, or a proxy's in front of it).
    pub url: String,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns the output.
pub fn ok(output: Output) -> Output {
    assert!(output.status.success(), "stdout: {}\nstderr: {}", text(&output.stdout), text(&output.stderr));
    output
}

impl Account {
    /// Starts a server with user `alice`, creates her keys and the encrypted folder `/Vault`.
    pub fn new(label: &str) -> Self {
        Self::with_server_args(label, &[])
    }

    /// Like [`Self::new`] with extra `cloakfs serve` arguments.
    pub fn with_server_args(label: &str, extra: &[&str]) -> Self {
        let data = TempDir::new(&format!("{label}-data"));
        let config = TempDir::new(&format!("{label}-config"));
        let server = TestServer::start_with(&data.0, &["alice"], extra);
        let init = ok(client(&server.url, "alice", &config.0, &["keys", "init"]));
        let stdout = text(&init.stdout);
        let mnemonic =
            stdout.lines().skip_while(|line| !line.starts_with("Your mnemonic")).nth(2).unwrap().trim().to_owned();
        let mnemonic_file = config.0.join("alice.words");
        std::fs::write(&mnemonic_file, mnemonic).unwrap();
        let url = server.url.clone();
        let account = Self { server, data, config, mnemonic: mnemonic_file, user: "alice".into(), url };
        ok(account.run(&["mkdir", "--encrypted", "/Vault"]));
        account
    }

    /// Runs a CLI command as the user.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--mnemonic-file", self.mnemonic.to_str().unwrap()]);
        client(&self.url, &self.user, &self.config.0, &all)
    }

    /// Mounts `/Vault` at a fresh temporary mount point.
    pub fn mount(&self, label: &str) -> Mounted {
        self.mount_with(label, &[])
    }

    /// Mounts `/Vault` with extra `cloakfs mount` arguments.
    pub fn mount_with(&self, label: &str, extra: &[&str]) -> Mounted {
        let dir = TempDir::new(&format!("{label}-mnt"));
        self.mount_at(dir, extra)
    }

    /// `cloakfs mount REMOTE MOUNTPOINT` as this user with `mnemonic`, its config and runtime dirs.
    pub fn mount_command(&self, remote: &str, mountpoint: &Path, mnemonic: &Path) -> std::process::Command {
        require_fuse();
        let mut command = cloakfs();
        command
            .args(["mount", remote])
            .arg(mountpoint)
            .args(["--server", &self.url, "--user", &self.user, "--mnemonic-file"])
            .arg(mnemonic)
            .env("XDG_CONFIG_HOME", &self.config.0)
            .env("CLOAKFS_PASSWORD", PASSWORD)
            .env("XDG_RUNTIME_DIR", self.runtime_dir());
        command
    }

    /// The runtime dir (control sockets) the mounts of this account use.
    pub fn runtime_dir(&self) -> PathBuf {
        self.config.0.join("run")
    }

    /// Mounts `/Vault` at `dir`.
    pub fn mount_at(&self, dir: TempDir, extra: &[&str]) -> Mounted {
        require_fuse();
        self.mount_at_with_env(dir, extra, &[])
    }

    /// Mounts `/Vault` at `dir` with extra environment variables.
    pub fn mount_at_with_env(&self, dir: TempDir, extra: &[&str], env: &[(&str, &str)]) -> Mounted {
        self.mount_customized(dir, extra, |command| {
            command.envs(env.iter().copied());
        })
    }

    /// Mounts `/Vault` at `dir`; `customize` adjusts the command before it starts.
    pub fn mount_customized(
        &self,
        dir: TempDir,
        extra: &[&str],
        customize: impl FnOnce(&mut std::process::Command),
    ) -> Mounted {
        let mut command = self.mount_command("/Vault", &dir.0, &self.mnemonic);
        customize(&mut command);
        command
            .args(if extra.contains(&"--dir-cache-time") { &[][..] } else { &["--dir-cache-time", "1"][..] })
            .args(if extra.contains(&"--commit-delay") { &[][..] } else { &["--commit-delay", "200"][..] })
            .args(extra);
        start_mount(command, dir, self.runtime_dir())
    }
}

/// Starts `command` (a `cloakfs mount` at `dir` using `runtime_dir` for control sockets) and returns once
/// it reports the mount ready; its log is kept and echoed.
pub fn start_mount(mut command: std::process::Command, dir: TempDir, runtime_dir: PathBuf) -> Mounted {
    let mut child = command.stdin(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(" mounted at ") {
                    break;
                }
            }
            _ => {
                let status = child.wait().unwrap();
                panic!("mount exited ({status}) before mounting:\n{seen}");
            }
        }
    }
    // Keep draining stderr (logs) so the mount never blocks on a full pipe.
    let log = std::sync::Arc::new(std::sync::Mutex::new(seen));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("[mount] {line}");
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    Mounted { child: Some(child), dir, log, runtime_dir }
}

/// Answers a mount's questions: called with what the mount wrote to stderr since the last answer, it
/// returns the line to type (a passphrase, a one-time code, "yes"), or `None` to wait for more.
pub type Answerer = Box<dyn FnMut(&str) -> Option<String> + Send>;

/// Starts `command` with its stdin kept open for `answer` (the mount's questions arrive on stderr, without
/// a newline) and returns once it reports the mount ready, or `Err` with what it printed if it exits
/// first.
pub fn start_mount_answering(
    mut command: std::process::Command,
    dir: TempDir,
    runtime_dir: PathBuf,
    mut answer: Answerer,
) -> Result<Mounted, String> {
    use std::io::{Read as _, Write as _};
    let mut child = command.stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (mut stdin, mut stderr) = (child.stdin.take().unwrap(), child.stderr.take().unwrap());
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        let (mut buffer, mut pending) = ([0u8; 4096], String::new());
        loop {
            let read = match stderr.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let chunk = String::from_utf8_lossy(&buffer[..read]).into_owned();
            eprint!("[mount] {chunk}");
            sink.lock().unwrap().push_str(&chunk);
            pending.push_str(&chunk);
            if let Some(line) = answer(&pending) {
                pending.clear();
                let _ = stdin.write_all(format!("{line}\n").as_bytes());
                let _ = stdin.flush();
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if log.lock().unwrap().contains(" mounted at ") {
            return Ok(Mounted { child: Some(child), dir, log, runtime_dir });
        }
        if let Some(status) = child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(200));
            return Err(format!("exited ({status}): {}", log.lock().unwrap()));
        }
        assert!(Instant::now() < deadline, "the mount neither mounted nor exited: {}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `cloakfs mount`.
pub struct Mounted {
    child: Option<Child>,
    /// The mount point.
    pub dir: TempDir,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    runtime_dir: PathBuf,
}

impl Mounted {
    /// A path inside the mount.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.0.join(relative)
    }

    /// The mount process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What the mount logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `cloakfs status` output.
    pub fn status(&self) -> String {
        let output = cloakfs().arg("status").env("XDG_RUNTIME_DIR", &self.runtime_dir).output().unwrap();
        text(&output.stdout)
    }

    /// Unmounts with `cloakfs unmount` (uploads everything first) and waits for the process.
    pub fn unmount(mut self) -> Output {
        let output =
            cloakfs().arg("unmount").arg(&self.dir.0).env("XDG_RUNTIME_DIR", &self.runtime_dir).output().unwrap();
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "mount process did not exit after unmount");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!is_mounted(&self.dir.0), "still mounted after unmount");
        output
    }

    /// Waits up to `limit` for the mount process to exit by itself (idle timeout, `cloakfs lock`); returns
    /// whether it did, and then the mount is gone.
    pub fn wait_for_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "mount exited with {status}");
                self.child = None;
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the mount process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// Runs a cloakfs command with this mount's runtime dir (control sockets).
    pub fn control(&self, args: &[&str]) -> Output {
        cloakfs().args(args).env("XDG_RUNTIME_DIR", &self.runtime_dir).stdin(Stdio::null()).output().unwrap()
    }

    /// Kills the mount process without any cleanup (a crash), leaving a stale mount.
    pub fn crash(mut self) -> TempDir {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let dir = TempDir(self.dir.0.clone());
        // Keep the directory: the caller remounts there. Our own TempDir must not delete it.
        std::mem::forget(std::mem::replace(&mut self.dir, TempDir(PathBuf::new())));
        dir
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.dir.0.as_os_str().is_empty() && is_mounted(&self.dir.0) {
            let quiet = |command: &mut std::process::Command| {
                let _ = command.arg(&self.dir.0).stderr(Stdio::null()).status();
            };
            quiet(std::process::Command::new("fusermount3").args(["-u", "-z"]));
            if is_mounted(&self.dir.0) {
                quiet(std::process::Command::new("umount").arg("-l"));
            }
        }
    }
}

/// Whether something is mounted at `path`.
pub fn is_mounted(path: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    table.lines().any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// Waits until `check` holds or `limit` passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deterministic test content.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|index| ((index as u64 * 31 + u64::from(seed) * 7) % 251) as u8).collect()
}

/// Fails loudly, naming the package, where the kernel mounts cannot work.
pub fn require_fuse() {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("fusermount3").is_file()));
    assert!(found, "fusermount3 is not installed: these tests mount real FUSE file systems (apt-get install fuse3; scripts/test.sh does)");
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing: the FUSE kernel module is needed (modprobe fuse)");
}

/// Runs a shell command, asserting success.
pub fn sh(command: &str, cwd: &Path) -> String {
    let output = std::process::Command::new("sh").arg("-c").arg(command).current_dir(cwd).output().unwrap();
    assert!(output.status.success(), "`{command}` failed: {}\n{}", text(&output.stdout), text(&output.stderr));
    text(&output.stdout)
}
