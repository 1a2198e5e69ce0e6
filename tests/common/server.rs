//! Starts a real `cloakfs serve` on a free loopback port with a temporary data directory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The cloakfs binary under test.
pub fn cloakfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloakfs"))
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/cloakfs-test-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("cloakfs-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `cloakfs serve`, killed on drop.
pub struct TestServer {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The data directory.
    pub data: PathBuf,
}

/// The password every test user gets.
pub const PASSWORD: &str = "test-password-1234";

impl TestServer {
    /// Starts a server on `listen` (use `127.0.0.1:0` for a free port) over `data`, with `users` added.
    pub fn start_at(data: &Path, listen: &str, users: &[&str]) -> Self {
        Self::start_full(data, listen, users, &[])
    }

    /// Starts a server on a free port with extra `serve` arguments.
    pub fn start_with(data: &Path, users: &[&str], extra: &[&str]) -> Self {
        Self::start_full(data, "127.0.0.1:0", users, extra)
    }

    fn start_full(data: &Path, listen: &str, users: &[&str], extra: &[&str]) -> Self {
        for user in users {
            let output = cloakfs()
                .args(["serve", "user", "add", user, "--data"])
                .arg(data)
                .env("CLOAKFS_PASSWORD", PASSWORD)
                .output()
                .unwrap();
            assert!(output.status.success(), "user add: {}", String::from_utf8_lossy(&output.stderr));
        }
        let mut child = cloakfs()
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected: {line:?}")).to_owned();
        Self { child, url, data: data.to_owned() }
    }

    /// Starts a server on a free port.
    pub fn start(data: &Path, users: &[&str]) -> Self {
        Self::start_at(data, "127.0.0.1:0", users)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Kills the server process (an outage); the data stays.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client command against `server` as `user`, with its own config dir (pins) in `config`.
pub fn client(server: &str, user: &str, config: &Path, args: &[&str]) -> Output {
    cloakfs()
        .args(args)
        .args(["--server", server, "--user", user])
        .env("XDG_CONFIG_HOME", config)
        .env("CLOAKFS_PASSWORD", PASSWORD)
        .env_remove("CLOAKFS_MNEMONIC")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Every file below `dir`.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_below(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Asserts that no file below `dir` contains any of `markers`.
pub fn assert_no_marker_below(dir: &Path, markers: &[&[u8]]) {
    for path in files_below(dir) {
        let content = std::fs::read(&path).unwrap();
        for marker in markers {
            assert!(
                !content.windows(marker.len()).any(|window| window == *marker),
                "{} contains {:?}",
                path.display(),
                String::from_utf8_lossy(marker)
            );
        }
    }
}
