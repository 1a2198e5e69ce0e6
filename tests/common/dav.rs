//! Third-party WebDAV servers for the Cryptomator tests, started on a free loopback port over a temporary
//! folder and stopped on drop: Apache httpd with mod_dav (Debian's apache2, with mod_dir as Debian enables
//! it: a folder addressed without its slash is answered with a redirect) and `rclone serve webdav`
//! (Debian's rclone). Both require Basic authentication. A missing server fails the test with what to
//! install (`scripts/test.sh` installs both).
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server::TempDir;

/// The WebDAV user of every test server.
pub const DAV_USER: &str = "davuser";
/// Its password.
pub const DAV_PASSWORD: &str = "dav-password-1234";

/// A running WebDAV server.
pub struct DavServer {
    child: Child,
    /// Starts the server again on the same port and folder (after [`DavServer::stop`]).
    relaunch: Box<dyn Fn() -> Child>,
    port: u16,
    log: PathBuf,
    /// What it is, for messages.
    pub kind: &'static str,
    /// The URL of the served folder's root, without a trailing slash.
    pub url: String,
    /// The served folder on this machine (what the server stores).
    pub root: PathBuf,
    _dir: TempDir,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn require(program: &str, package: &str) {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().unwrap();
    assert!(
        found.status.success(),
        "{program} is not installed: these tests run a real {package} server (apt-get install {package}; scripts/test.sh does)"
    );
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the WebDAV server exited ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the WebDAV server did not listen: {}", std::fs::read_to_string(log).unwrap_or_default());
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Gives `path` to Apache's run-time user when the tests run as root (Apache then drops to www-data).
pub fn give_to_apache(path: &Path) {
    if is_root() {
        let status = Command::new("chown").args(["-R", "www-data:www-data"]).arg(path).status().unwrap();
        assert!(status.success());
    }
}

impl DavServer {
    /// Apache httpd with mod_dav_fs over a fresh folder.
    pub fn apache(label: &str) -> Self {
        require("apache2", "apache2");
        let dir = TempDir::new(&format!("apache-{label}"));
        let root = dir.0.join("www");
        let locks = dir.0.join("locks");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&locks).unwrap();
        let htpasswd = Command::new("htpasswd")
            .args(["-bcB"])
            .arg(dir.0.join("htpasswd"))
            .args([DAV_USER, DAV_PASSWORD])
            .output()
            .unwrap();
        assert!(htpasswd.status.success(), "htpasswd: {}", String::from_utf8_lossy(&htpasswd.stderr));
        let port = free_port();
        let modules = "/usr/lib/apache2/modules";
        let user = if is_root() { "User www-data\nGroup www-data\n" } else { "" };
        let config = format!(
            "ServerRoot {dir}\nPidFile {dir}/httpd.pid\nListen 127.0.0.1:{port}\nServerName 127.0.0.1\n{user}\
             ErrorLog {dir}/error.log\nLogLevel warn\nCustomLog {dir}/access.log \"%m %U %{{Range}}i\"\n\
             LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
             LoadModule authz_core_module {modules}/mod_authz_core.so\n\
             LoadModule authn_core_module {modules}/mod_authn_core.so\n\
             LoadModule auth_basic_module {modules}/mod_auth_basic.so\n\
             LoadModule authn_file_module {modules}/mod_authn_file.so\n\
             LoadModule authz_user_module {modules}/mod_authz_user.so\n\
             LoadModule dir_module {modules}/mod_dir.so\n\
             LoadModule dav_module {modules}/mod_dav.so\n\
             LoadModule dav_fs_module {modules}/mod_dav_fs.so\n\
             DAVLockDB {locks}/DAVLock\nDocumentRoot {root}\n\
             <Directory {root}>\n  Dav On\n  AuthType Basic\n  AuthName dav\n  AuthUserFile {dir}/htpasswd\n  Require valid-user\n</Directory>\n",
            dir = dir.0.display(),
            locks = locks.display(),
            root = root.display(),
        );
        std::fs::write(dir.0.join("httpd.conf"), config).unwrap();
        give_to_apache(&root);
        give_to_apache(&locks);
        // Apache's user must be able to reach the folder.
        let _ = Command::new("chmod").arg("755").arg(&dir.0).status();
        let log = dir.0.join("error.log");
        let config_path = dir.0.join("httpd.conf");
        let relaunch = Box::new(move || {
            Command::new("apache2")
                .arg("-f")
                .arg(&config_path)
                .arg("-DFOREGROUND")
                // Its own process group, so that stopping it also stops the workers it forks.
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        let mut child = relaunch();
        wait_for_port(port, &mut child, &log);
        let url = format!("http://127.0.0.1:{port}");
        Self { child, relaunch, port, log, kind: "Apache mod_dav", url, root, _dir: dir }
    }

    /// Stops the server (an outage: connections are refused until [`Self::start_again`]).
    pub fn stop(&mut self) {
        self.kill_all();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the stopped server again, on the same port over the same folder.
    pub fn start_again(&mut self) {
        self.child = (self.relaunch)();
        wait_for_port(self.port, &mut self.child, &self.log);
    }

    /// Apache's requests so far, one line each: method, path, Range header ("-" without one). Empty for
    /// other servers.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.root.parent().unwrap().join("access.log")).unwrap_or_default()
    }

    /// The access log once it has stopped growing: Apache writes a request's line after the response is
    /// sent, so a client can go on before the line of its last request is there. Waits until the log is
    /// unchanged over 300 ms (at most 10 s).
    pub fn settled_access_log(&self) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = self.access_log();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let now = self.access_log();
            if now == seen || std::time::Instant::now() >= deadline {
                return now;
            }
            seen = now;
        }
    }

    /// `rclone serve webdav` over a fresh folder.
    pub fn rclone(label: &str) -> Self {
        require("rclone", "rclone");
        let dir = TempDir::new(&format!("rclone-{label}"));
        let root = dir.0.join("www");
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let log = dir.0.join("rclone.log");
        let (served, config) = (root.clone(), dir.0.join("rclone.conf"));
        let log_file = log.clone();
        let relaunch = Box::new(move || {
            Command::new("rclone")
                .args(["serve", "webdav"])
                .arg(&served)
                .args(["--addr", &format!("127.0.0.1:{port}"), "--user", DAV_USER, "--pass", DAV_PASSWORD])
                .arg("--log-file")
                .arg(&log_file)
                .env("RCLONE_CONFIG", &config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        let mut child = relaunch();
        wait_for_port(port, &mut child, &log);
        let url = format!("http://127.0.0.1:{port}");
        Self { child, relaunch, port, log, kind: "rclone serve webdav", url, root, _dir: dir }
    }

    /// Makes the folder `name` at the server's root (with the server's own user as owner) and returns its
    /// URL.
    pub fn folder(&self, name: &str) -> String {
        let path = self.root.join(name);
        std::fs::create_dir_all(&path).unwrap();
        if self.kind.starts_with("Apache") {
            give_to_apache(&path);
        }
        format!("{}/{name}", self.url)
    }

    /// Gives what was written into the served folder by this process back to the server's user.
    pub fn settle_ownership(&self) {
        if self.kind.starts_with("Apache") {
            give_to_apache(&self.root);
        }
    }
}

impl DavServer {
    /// Kills the server and every process it forked (Apache's workers outlive a killed parent and keep
    /// the port), and reaps it.
    fn kill_all(&mut self) {
        let group = self.child.id() as libc::pid_t;
        // Only Apache runs in a group of its own; rclone is one process.
        if self.kind.starts_with("Apache") {
            // SAFETY: signals the process group the server leads; no memory is involved.
            unsafe { libc::killpg(group, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DavServer {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// `python3 -m pycryptomator` (an independent Python implementation of vault format 8, MIT, from PyPI):
/// from the Python path, else from `target/pylib` (where scripts/test.sh installs it). Fails with what to install.
pub fn pycryptomator() -> Command {
    let pylib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pylib");
    let mut python_path = pylib.display().to_string();
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        python_path = format!("{python_path}:{}", existing.to_string_lossy());
    }
    let check = Command::new("python3").args(["-c", "import pycryptomator"]).env("PYTHONPATH", &python_path).output();
    assert!(
        check.is_ok_and(|output| output.status.success()),
        "pycryptomator is not installed: python3 -m pip install --target target/pylib pycryptomator==1.15 \
         (scripts/test.sh does)"
    );
    let mut command = Command::new("python3");
    command.args(["-m", "pycryptomator"]).env("PYTHONPATH", python_path);
    command
}
