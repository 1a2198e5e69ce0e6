//! A real OpenSSH server (Debian's openssh-server) for the SFTP tests, on a free loopback port with its own
//! configuration, host key and PAM service, stopped on drop:
//! - the test user `cloakfs-sftp` (made with useradd when missing; the tests run as root, as the kernel
//!   mounts need) logs in with an Ed25519 key protected by a passphrase ([`SshServer::key`]);
//! - with [`Factor::KeyAndCode`] the server then asks, through PAM and libpam-google-authenticator, for a
//!   one-time code ([`SshServer::code`] computes the current one, RFC 6238, as a phone would);
//! - SFTP is OpenSSH's internal-sftp; the vaults live in [`SshServer::root`], owned by the test user.
//!
//! The PAM service is the name the server runs under (OpenSSH takes it from its program name), so each
//! server runs as a symlink `cloakfs-test-sshd-<port>` to /usr/sbin/sshd with its own
//! /etc/pam.d/cloakfs-test-sshd-<port>, removed on drop. A missing package fails the test with what to
//! install (`scripts/test.sh` installs them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::dav::{free_port, require};
use super::server::TempDir;

/// The remote user of every test server.
pub const SSH_USER: &str = "cloakfs-sftp";
/// The passphrase of the user's key.
pub const KEY_PASSPHRASE: &str = "key passphrase 4821";
/// The one-time-code secret (base32 of `cloakfs-test-totp!!!`), as google-authenticator keeps it.
const TOTP_SECRET_BASE32: &str = "MNWG6YLLMZZS25DFON2C25DPORYCCIJB";
const TOTP_SECRET: &[u8] = b"cloakfs-test-totp!!!";

/// What the server asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// The key only.
    Key,
    /// The key, then a one-time code (keyboard-interactive through PAM).
    KeyAndCode,
    /// A password only ([`USER_PASSWORD`], checked against the system's shadow file, no PAM).
    Password,
}

/// The test user's password, set when a [`Factor::Password`] server starts.
pub const USER_PASSWORD: &str = "user password 7733";

/// A running OpenSSH server.
pub struct SshServer {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
    program: PathBuf,
    pam_service: PathBuf,
    /// The port.
    pub host_port: u16,
    /// The folder the vaults live in (on this machine; the same path on the server).
    pub root: PathBuf,
    /// The user's private key file (passphrase-protected).
    pub key: PathBuf,
    /// The server's host key fingerprint, `SHA256:…`.
    pub fingerprint: String,
    /// The server's public host key line (`ssh-ed25519 AAAA…`).
    pub host_public_key: String,
    log: PathBuf,
    dir: TempDir,
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn ensure_user(home: &Path) {
    let exists = || Command::new("id").arg(SSH_USER).output().unwrap().status.success();
    if !exists() {
        // Tests run in parallel: another one may make the user first.
        let _ = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--home-dir"])
            .arg(home)
            .arg(SSH_USER)
            .output();
        assert!(exists(), "could not make the test user {SSH_USER} (the SFTP tests run as root)");
    }
}

impl SshServer {
    /// Starts a server asking for `factor`.
    pub fn start(label: &str, factor: Factor) -> Self {
        require("/usr/sbin/sshd", "openssh-server");
        require("ssh-keygen", "openssh-client");
        assert!(
            Path::new("/lib/x86_64-linux-gnu/security/pam_google_authenticator.so").exists()
                || Path::new("/usr/lib/x86_64-linux-gnu/security/pam_google_authenticator.so").exists()
                || Command::new("sh")
                    .arg("-c")
                    .arg("find /lib /usr/lib -name pam_google_authenticator.so | grep -q .")
                    .status()
                    .unwrap()
                    .success(),
            "pam_google_authenticator.so is not installed: apt-get install libpam-google-authenticator (scripts/test.sh does)"
        );
        let dir = TempDir::new(&format!("sshd-{label}"));
        let root = dir.0.join("srv");
        std::fs::create_dir_all(&root).unwrap();
        ensure_user(&dir.0.join("home"));
        run(Command::new("chown").arg(SSH_USER).arg(&root));
        std::fs::create_dir_all("/run/sshd").unwrap();

        let host_key = dir.0.join("host_ed25519");
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "host", "-f"]).arg(&host_key));
        let key = dir.0.join("id_ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", KEY_PASSPHRASE, "-C", "cloakfs test user", "-f"])
            .arg(&key));
        let authorized = dir.0.join("authorized");
        std::fs::create_dir_all(&authorized).unwrap();
        std::fs::copy(key.with_extension("pub"), authorized.join(SSH_USER)).unwrap();
        let totp = dir.0.join("totp");
        std::fs::write(&totp, format!("{TOTP_SECRET_BASE32}\n\" TOTP_AUTH\n")).unwrap();
        run(Command::new("chown").arg(SSH_USER).arg(&totp));
        run(Command::new("chmod").arg("600").arg(&totp));

        let port = free_port();
        let service = format!("cloakfs-test-sshd-{port}");
        let pam_service = PathBuf::from("/etc/pam.d").join(&service);
        std::fs::write(
            &pam_service,
            format!(
                "# cloakfs tests ({}), removed when the test ends\nauth required pam_google_authenticator.so secret={} user={SSH_USER}\naccount required pam_permit.so\nsession required pam_permit.so\n",
                dir.0.display(),
                totp.display()
            ),
        )
        .unwrap();
        let program = dir.0.join(&service);
        std::os::unix::fs::symlink("/usr/sbin/sshd", &program).unwrap();
        let (methods, pam, passwords) = match factor {
            Factor::Key => ("publickey", "yes", "no"),
            Factor::KeyAndCode => ("publickey,keyboard-interactive", "yes", "no"),
            Factor::Password => ("password", "no", "yes"),
        };
        if factor == Factor::Password {
            let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().unwrap();
            use std::io::Write as _;
            writeln!(chpasswd.stdin.take().unwrap(), "{SSH_USER}:{USER_PASSWORD}").unwrap();
            assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        }
        let config = dir.0.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}/%u\nStrictModes no\n\
                 UsePAM {pam}\nKbdInteractiveAuthentication yes\nPasswordAuthentication {passwords}\nAuthenticationMethods {methods}\n\
                 Subsystem sftp internal-sftp\nMaxStartups 50\nMaxSessions 50\nLogLevel VERBOSE\n",
                host_key.display(),
                dir.0.join("sshd.pid").display(),
                authorized.display()
            ),
        )
        .unwrap();
        let fingerprint = {
            let output = Command::new("ssh-keygen").arg("-lf").arg(host_key.with_extension("pub")).output().unwrap();
            String::from_utf8_lossy(&output.stdout).split_whitespace().nth(1).unwrap().to_owned()
        };
        let host_public_key = std::fs::read_to_string(host_key.with_extension("pub"))
            .unwrap()
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let mut server = Self {
            child: None,
            port,
            config,
            program,
            pam_service,
            host_port: port,
            root,
            key,
            fingerprint,
            host_public_key,
            log: dir.0.join("sshd.log"),
            dir,
        };
        server.start_again();
        server
    }

    /// The sftp:// address of a folder below [`SshServer::root`].
    pub fn url(&self, folder: &str) -> String {
        format!("sftp://{SSH_USER}@127.0.0.1:{}{}/{folder}", self.port, self.root.display())
    }

    /// The current one-time code.
    pub fn code(&self) -> String {
        totp(TOTP_SECRET, std::time::SystemTime::now())
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A folder for the test's own files (an ssh client's home, known_hosts).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.0.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Stops the server and every session it serves (as a reboot or a dropped network would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let listener = child.id();
            for session in descendants(listener) {
                // SAFETY: kill(2) on a process id; no memory is shared.
                unsafe { libc::kill(session as libc::pid_t, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and keys.
    pub fn start_again(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut child = Command::new(&self.program)
            .arg("-D")
            .arg("-E")
            .arg(&self.log)
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sshd exited ({status}): {}", self.log());
            }
            assert!(Instant::now() < deadline, "sshd did not listen: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.pam_service);
    }
}

/// Every process below `parent`.
fn descendants(parent: u32) -> Vec<u32> {
    let mut children: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(after_name) = stat.rsplit_once(')').map(|(_, rest)| rest.to_owned()) else { continue };
        if let Some(ppid) = after_name.split_whitespace().nth(1).and_then(|field| field.parse::<u32>().ok()) {
            children.push((pid, ppid));
        }
    }
    let mut found = vec![parent];
    let mut index = 0;
    while index < found.len() {
        let current = found[index];
        found.extend(children.iter().filter(|(_, ppid)| *ppid == current).map(|(pid, _)| *pid));
        index += 1;
    }
    found.remove(0);
    found
}

/// RFC 6238 TOTP (HMAC-SHA1, 30 s, 6 digits), as google-authenticator checks it.
pub fn totp(secret: &[u8], at: std::time::SystemTime) -> String {
    let counter = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = aws_lc_rs::hmac::sign(&key, &counter.to_be_bytes());
    let digest = tag.as_ref();
    let offset = usize::from(digest[19] & 0x0f);
    let value = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", value % 1_000_000)
}

/// A running `ssh-agent` holding the test key (added with `ssh-add`, answering its passphrase through
/// SSH_ASKPASS), killed on drop.
pub struct Agent {
    /// The agent's socket (SSH_AUTH_SOCK).
    pub socket: PathBuf,
    child: Child,
}

impl Agent {
    /// Starts an agent and adds `key`.
    pub fn with_key(server: &SshServer) -> Self {
        require("ssh-agent", "openssh-client");
        let folder = server.scratch("agent");
        let socket = folder.join("socket");
        let child = Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).stdout(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        let askpass = folder.join("askpass.sh");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{KEY_PASSPHRASE}'\n")).unwrap();
        run(Command::new("chmod").arg("700").arg(&askpass));
        run(Command::new("ssh-add")
            .arg(&server.key)
            .env("SSH_AUTH_SOCK", &socket)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null()));
        Self { socket, child }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
