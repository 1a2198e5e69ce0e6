//! Cryptomator vaults over SFTP against a real OpenSSH server (Debian's openssh-server, started per test on
//! a loopback port with its own configuration, host key and PAM service; tests/common/ssh.rs), mounted in
//! the kernel:
//! - a passphrase-protected Ed25519 key from a file and a one-time code (keyboard-interactive through PAM
//!   and libpam-google-authenticator, the code computed by the test): the real-tool workload, a large file
//!   read from the middle, remount, pycryptomator reading what the mount wrote, nothing written to ~/.ssh;
//! - refusals: a wrong key passphrase, a wrong code, an unknown host key (asked, refused), a changed host
//!   key (refused with both fingerprints, even when "accepted"), and `--remember-host` writing one hashed
//!   line;
//! - the same key served by a real ssh-agent; the server killed and restarted mid-write (the data kept in
//!   RAM, uploaded after the reconnect); a second mount as a second device with a concurrent edit ending in
//!   a conflicted copy; a folder made by both devices (EEXIST, nothing left behind), and rmdir of a folder
//!   holding a cut write's temporary file.

#[path = "common/dav.rs"]
mod dav;
#[path = "common/mount.rs"]
mod mount;
#[path = "common/server.rs"]
mod server;
#[path = "common/ssh.rs"]
mod ssh;
#[path = "common/tools.rs"]
mod tools;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use mount::{eventually, ok, pattern, start_mount_answering, Answerer, Mounted};
use server::{cloakfs, TempDir};
use ssh::{Agent, Factor, SshServer, KEY_PASSPHRASE};

const PASSPHRASE: &str = "correct horse battery staple";

/// How a client logs in.
#[derive(Clone)]
enum Login<'a> {
    /// The key file (its passphrase typed), then a one-time code if the server asks.
    KeyFile,
    /// The agent's key.
    Agent(&'a Agent),
}

/// A `cloakfs` command against `server` with an empty HOME (no ~/.ssh) of its own.
fn client(server: &SshServer, home: &Path, login: &Login, accept_host_key: bool) -> std::process::Command {
    let mut command = cloakfs();
    command.env("HOME", home).env("CLOAKFS_PASSPHRASE", PASSPHRASE).env_remove("SSH_AUTH_SOCK");
    match login {
        Login::KeyFile => {
            command.arg("-i").arg(&server.key).arg("--no-agent");
        }
        Login::Agent(agent) => {
            command.env("SSH_AUTH_SOCK", &agent.socket);
        }
    }
    if accept_host_key {
        command.args(["--accept-host-key", &server.fingerprint]);
    }
    command
}

/// `cloakfs vault SUBCOMMAND URL ARGS…`, typing `typed` (one answer per line) into its prompts.
fn vault(server: &SshServer, home: &Path, login: &Login, subcommand: &str, args: &[&str], typed: &[String]) -> Output {
    let mut command = cloakfs();
    command.args(["vault", subcommand, &server.url("Vault")]).args(args);
    let base = client(server, home, login, !typed.iter().any(|line| line == "no" || line == "yes"));
    for (key, value) in base.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command.args(base.get_args());
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in typed {
        let _ = writeln!(stdin, "{line}");
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// What a client types for a key file and a code: the passphrase, then the current code.
fn key_and_code(server: &SshServer) -> Vec<String> {
    vec![KEY_PASSPHRASE.to_owned(), server.code()]
}

/// What the mounting terminal does: counts the one-time codes asked, and answers them while
/// `answer_codes` is set (else they are left for `cloakfs unlock`).
#[derive(Clone, Default)]
struct Terminal {
    codes_asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    leave_codes: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Terminal {
    fn codes_asked(&self) -> usize {
        self.codes_asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers the key's passphrase and, unless told to leave them, one-time codes (computed when asked).
    fn answerer(&self) -> Answerer {
        let terminal = self.clone();
        Box::new(move |seen: &str| {
            if seen.contains("Enter passphrase for key") {
                Some(KEY_PASSPHRASE.to_owned())
            } else if seen.contains("Verification code:") {
                terminal.codes_asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if terminal.leave_codes.load(std::sync::atomic::Ordering::SeqCst) {
                    return None;
                }
                Some(ssh::totp(b"cloakfs-test-totp!!!", std::time::SystemTime::now()))
            } else {
                None
            }
        })
    }
}

fn mount_over_sftp(server: &SshServer, home: &Path, login: &Login, label: &str, run: &Path, extra: &[&str]) -> Mounted {
    mount_counting_codes(server, home, login, label, run, extra).0
}

/// A mount, and how many one-time codes it has been asked for (at mount, and at each reconnection).
fn mount_counting_codes(
    server: &SshServer,
    home: &Path,
    login: &Login,
    label: &str,
    run: &Path,
    extra: &[&str],
) -> (Mounted, Terminal) {
    let dir = TempDir::new(&format!("{label}-mnt"));
    let mut command = client(server, home, login, true);
    let base_args: Vec<_> = command.get_args().map(|arg| arg.to_owned()).collect();
    let mut mount = cloakfs();
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => mount.env(key, value),
            None => mount.env_remove(key),
        };
    }
    mount.args(["mount", &server.url("Vault")]).arg(&dir.0).args(["--dir-cache-time", "1"]).args(extra).args(base_args);
    mount.env("XDG_RUNTIME_DIR", run);
    command = mount;
    let terminal = Terminal::default();
    let mounted =
        start_mount_answering(command, dir, run.to_owned(), terminal.answerer()).unwrap_or_else(|log| panic!("{log}"));
    (mounted, terminal)
}

fn py_read(stored: &Path, path: &str, scratch: &Path) -> Vec<u8> {
    tools::py_read(stored, PASSPHRASE, path, scratch)
}

/// The content folders (`d/XX/YYYY…`) of the vault stored at `stored`.
fn content_folders(stored: &Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut found = std::collections::BTreeSet::new();
    for shard in fs::read_dir(stored.join("d")).unwrap() {
        for folder in fs::read_dir(shard.unwrap().path()).unwrap() {
            found.insert(folder.unwrap().path());
        }
    }
    found
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// fsync of a folder of the mount: everything changed in it, folders made and removed included, in storage.
fn sync_folder(path: &Path) {
    fs::File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn totp_matches_rfc_6238() {
    // RFC 6238 appendix B (SHA1, secret "12345678901234567890"), the last 6 of its 8 digits.
    assert_eq!(ssh::totp(b"12345678901234567890", std::time::UNIX_EPOCH + Duration::from_secs(59)), "287082");
    assert_eq!(
        ssh::totp(b"12345678901234567890", std::time::UNIX_EPOCH + Duration::from_secs(1_111_111_109)),
        "081804"
    );
}

#[test]
fn a_key_file_and_a_one_time_code_then_the_real_tools_a_remount_and_an_independent_reader() {
    let mut server = SshServer::start("tools", Factor::KeyAndCode);
    let home = server.scratch("home");
    let created = vault(&server, &home, &Login::KeyFile, "create", &[], &key_and_code(&server));
    ok(created.clone());
    // The server's keyboard-interactive prompt is shown as it is.
    assert!(stderr_of(&created).contains("Verification code:"), "{}", stderr_of(&created));

    let run = TempDir::new("sftp-tools-run");
    let work = TempDir::new("sftp-tools-work");
    let mounted = mount_over_sftp(&server, &home, &Login::KeyFile, "sftp-tools", &run.0, &[]);
    let root = mounted.path("");
    tools::real_tool_workload(&root, &work.0);
    let big = pattern((3 << 20) + 12_345, 5);
    fs::write(root.join("big.bin"), &big).unwrap();
    let mut file = fs::File::open(root.join("big.bin")).unwrap();
    file.seek(SeekFrom::Start((2 << 20) + 7)).unwrap();
    let mut middle = vec![0; 100_000];
    file.read_exact(&mut middle).unwrap();
    assert!(middle[..] == big[(2 << 20) + 7..(2 << 20) + 100_007], "a read from the middle differs");
    drop(file);
    ok(mounted.unmount());

    // On the server: ciphertext only, no temporary file left; on the laptop: nothing in ~/.ssh.
    let stored = server.root.join("Vault");
    for path in tools::paths_below(&stored) {
        let name = path.strip_prefix(&stored).unwrap().to_string_lossy().into_owned();
        for clear in ["note.txt", "big.bin", "clone", "untar", "rsynced", "main.rs"] {
            assert!(!name.contains(clear), "the server stores a clear name: {name}");
        }
        assert!(!name.contains(".cloakfs-"), "a temporary file was left: {name}");
    }
    assert!(!home.join(".ssh").exists(), "something was written to ~/.ssh");
    // pycryptomator reads what the mount wrote.
    assert_eq!(py_read(&stored, "/note.txt", &work.0), b"third version\n");
    assert!(py_read(&stored, "/big.bin", &work.0) == big, "pycryptomator decrypts big.bin differently");

    // Remount: everything is still there.
    let (again, terminal) = mount_counting_codes(&server, &home, &Login::KeyFile, "sftp-tools-again", &run.0, &[]);
    let root = again.path("");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    mount::sh(&format!("diff -r '{0}' src && diff -r '{0}' untar/src", source.join("src").display()), &root);
    mount::sh("cd clone && git fsck --full", &root);
    assert_eq!(fs::read(root.join("note.txt")).unwrap(), b"third version\n");
    assert_eq!(terminal.codes_asked(), 1);

    // The server restarts (its sessions killed): the change waits in RAM, and the reconnection asks for a
    // new one-time code on the terminal that mounted (the key's passphrase is not asked again).
    let mut file = fs::File::create(root.join("after restart.txt")).unwrap();
    file.write_all(b"uploaded after a new code").unwrap();
    server.stop();
    assert_eq!(file.sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
    drop(file);
    server.start_again();
    assert!(
        eventually(Duration::from_secs(40), || again.status().contains("dirty files: 0")),
        "not uploaded after the restart: {}",
        again.status()
    );
    assert!(terminal.codes_asked() >= 2, "no new code was asked: {}", again.log());
    assert_eq!(again.log().matches("Enter passphrase for key").count(), 1, "{}", again.log());

    // Once more, and this time the code is given with `cloakfs unlock` from another terminal.
    terminal.leave_codes.store(true, std::sync::atomic::Ordering::SeqCst);
    let asked_before = terminal.codes_asked();
    let mut file = fs::File::create(root.join("unlocked.txt")).unwrap();
    file.write_all(b"uploaded after cloakfs unlock").unwrap();
    server.stop();
    assert_eq!(file.sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
    drop(file);
    let nothing_waits = cloakfs().arg("unlock").env("XDG_RUNTIME_DIR", &run.0).output().unwrap();
    assert!(
        String::from_utf8_lossy(&nothing_waits.stderr).contains("no cloakfs mount is waiting"),
        "{nothing_waits:?}"
    );
    server.start_again();
    assert!(
        eventually(Duration::from_secs(40), || terminal.codes_asked() > asked_before),
        "the reconnection asked no code: {}",
        again.log()
    );
    let unlocked = eventually(Duration::from_secs(30), || {
        let mut unlock = cloakfs()
            .arg("unlock")
            .arg(&again.dir.0)
            .env("XDG_RUNTIME_DIR", &run.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = writeln!(unlock.stdin.take().unwrap(), "{}", server.code());
        let output = unlock.wait_with_output().unwrap();
        output.status.success() && String::from_utf8_lossy(&output.stderr).contains("Verification code:")
    });
    assert!(unlocked, "cloakfs unlock did not answer the mount's question: {}", again.log());
    assert!(
        eventually(Duration::from_secs(40), || again.status().contains("dirty files: 0")),
        "not uploaded after cloakfs unlock: {}",
        again.status()
    );
    ok(again.unmount());
    assert_eq!(py_read(&stored, "/after restart.txt", &work.0), b"uploaded after a new code");
    assert_eq!(py_read(&stored, "/unlocked.txt", &work.0), b"uploaded after cloakfs unlock");
}

#[test]
fn wrong_passphrase_wrong_code_unknown_and_changed_host_keys_are_refused() {
    let server = SshServer::start("refusals", Factor::KeyAndCode);
    let home = server.scratch("home");
    ok(vault(&server, &home, &Login::KeyFile, "create", &[], &key_and_code(&server)));

    // A wrong key passphrase, three times: refused, naming the key file.
    let wrong = vec!["not it".to_owned(), "not it either".to_owned(), "still not".to_owned()];
    let refused = vault(&server, &home, &Login::KeyFile, "ls", &[], &wrong);
    assert!(!refused.status.success());
    assert!(
        stderr_of(&refused).contains(&format!("wrong passphrase for {}", server.key.display())),
        "{}",
        stderr_of(&refused)
    );

    // Wrong codes: the key is accepted, the codes are not; the server's prompt was shown each time.
    let now = std::time::SystemTime::now();
    let near: Vec<String> = [-60i64, -30, 0, 30, 60]
        .iter()
        .map(|shift| {
            let at = if *shift < 0 {
                now - Duration::from_secs((-shift) as u64)
            } else {
                now + Duration::from_secs(*shift as u64)
            };
            ssh::totp(b"cloakfs-test-totp!!!", at)
        })
        .collect();
    let bad_code =
        ["000000", "111111", "222222"].iter().find(|code| !near.contains(&code.to_string())).unwrap().to_string();
    let typed = vec![KEY_PASSPHRASE.to_owned(), bad_code.clone(), bad_code.clone(), bad_code];
    let refused = vault(&server, &home, &Login::KeyFile, "ls", &[], &typed);
    let message = stderr_of(&refused);
    assert!(!refused.status.success());
    assert!(message.contains("refused the login"), "{message}");
    assert!(message.contains("(accepted, more needed)") && message.contains("keyboard-interactive"), "{message}");
    assert!(message.matches("Verification code:").count() >= 2, "{message}");

    // An unknown host key: the fingerprint is shown and the answer "no" refuses.
    let mut typed = vec!["no".to_owned()];
    typed.extend(key_and_code(&server));
    let refused = vault(&server, &home, &Login::KeyFile, "ls", &[], &typed);
    let message = stderr_of(&refused);
    assert!(!refused.status.success());
    assert!(message.contains(&server.fingerprint) && message.contains("is not known"), "{message}");
    // "yes" trusts it for this session only: it works and nothing is written.
    let mut typed = vec!["yes".to_owned()];
    typed.extend(key_and_code(&server));
    ok(vault(&server, &home, &Login::KeyFile, "ls", &[], &typed));
    assert!(!home.join(".ssh").exists(), "a host key accepted for the session was written");

    // --remember-host records one hashed line; the next login needs no acceptance.
    ok(vault(&server, &home, &Login::KeyFile, "ls", &["--remember-host"], &key_and_code(&server)));
    let known_hosts = fs::read_to_string(home.join(".ssh/known_hosts")).unwrap();
    assert_eq!(known_hosts.lines().count(), 1);
    assert!(known_hosts.starts_with("|1|") && !known_hosts.contains("127.0.0.1"), "{known_hosts}");
    let mut command = client(&server, &home, &Login::KeyFile, false);
    let args: Vec<_> = command.get_args().map(|arg| arg.to_owned()).collect();
    command = cloakfs();
    command.env("HOME", &home).env("CLOAKFS_PASSPHRASE", PASSPHRASE).env_remove("SSH_AUTH_SOCK");
    command.args(["vault", "ls", &server.url("Vault")]).args(args);
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{}\n{}", KEY_PASSPHRASE, server.code()).unwrap();
    ok(child.wait_with_output().unwrap());

    // A host alias of an ssh client configuration: HostName, Port, User and IdentityFile come from it.
    let config = server.scratch("config").join("ssh_config");
    fs::write(
        &config,
        format!(
            "Host vaulthost\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n",
            server.host_port,
            ssh::SSH_USER,
            server.key.display()
        ),
    )
    .unwrap();
    let mut command = cloakfs();
    command.env("HOME", &home).env("CLOAKFS_PASSPHRASE", PASSPHRASE).env_remove("SSH_AUTH_SOCK");
    command
        .args(["vault", "ls", &format!("sftp://vaulthost{}/Vault", server.root.display()), "--no-agent"])
        .arg("--ssh-config")
        .arg(&config);
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{}\n{}", KEY_PASSPHRASE, server.code()).unwrap();
    let through_alias = child.wait_with_output().unwrap();
    assert!(stderr_of(&through_alias).contains(&server.key.display().to_string()), "{}", stderr_of(&through_alias));
    ok(through_alias);

    // A changed host key: refused with both fingerprints, even with the new one "accepted".
    let other_key = server.scratch("other").join("host");
    ok(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .output()
        .unwrap());
    let other_public = fs::read_to_string(other_key.with_extension("pub")).unwrap();
    let other_line: Vec<&str> = other_public.split_whitespace().take(2).collect();
    fs::write(home.join(".ssh/known_hosts"), format!("[127.0.0.1]:{} {}\n", server.host_port, other_line.join(" ")))
        .unwrap();
    let other_fingerprint = {
        let output =
            std::process::Command::new("ssh-keygen").arg("-lf").arg(other_key.with_extension("pub")).output().unwrap();
        String::from_utf8_lossy(&output.stdout).split_whitespace().nth(1).unwrap().to_owned()
    };
    let refused = vault(&server, &home, &Login::KeyFile, "ls", &[], &key_and_code(&server));
    let message = stderr_of(&refused);
    assert!(!refused.status.success());
    assert!(
        message.contains("HAS CHANGED")
            && message.contains(&server.fingerprint)
            && message.contains(&other_fingerprint),
        "{message}"
    );
    // The server never saw a login attempt for the user after the changed key (refused before auth).
    assert!(!message.contains("Verification code:"), "{message}");
}

#[test]
fn the_agent_s_key_a_server_restart_mid_write_and_a_second_device_s_concurrent_edit() {
    let mut server = SshServer::start("agent", Factor::Key);
    let agent = Agent::with_key(&server);
    let home = server.scratch("home");
    let login = Login::Agent(&agent);
    let created = vault(&server, &home, &login, "create", &[], &[]);
    ok(created.clone());
    assert!(!stderr_of(&created).contains("Enter passphrase"), "the agent's key was not used: {}", stderr_of(&created));

    let run = TempDir::new("sftp-agent-run");
    let first = mount_over_sftp(&server, &home, &login, "sftp-agent-1", &run.0, &["--device", "laptop-1"]);
    let run2 = TempDir::new("sftp-agent-run2");
    let second = mount_over_sftp(&server, &home, &login, "sftp-agent-2", &run2.0, &["--device", "laptop-2"]);
    fs::write(first.path("before.txt"), b"before the restart").unwrap();

    // The server goes away with its sessions while a file is being written.
    let mut file =
        fs::OpenOptions::new().read(true).write(true).create_new(true).open(first.path("during.txt")).unwrap();
    file.write_all(b"written across a server restart").unwrap();
    server.stop();
    assert_eq!(file.sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
    assert!(first.status().contains("/during.txt (31 bytes): upload failed"), "{}", first.status());
    // Still there, through the open file (a new lookup would need a listing from the server that is down).
    let mut kept = String::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_string(&mut kept).unwrap();
    assert_eq!(kept, "written across a server restart");
    drop(file);
    // Back: the mount reconnects (the agent signs again) and uploads without being asked.
    server.start_again();
    assert!(
        eventually(Duration::from_secs(40), || first.status().contains("dirty files: 0")),
        "not uploaded after the restart: {}",
        first.status()
    );
    assert!(
        eventually(Duration::from_secs(20), || fs::read(second.path("during.txt")).ok().as_deref()
            == Some(&b"written across a server restart"[..])),
        "the second device does not see the file written across the restart"
    );

    // A concurrent edit: the second device opens the file and writes; the first replaces it and closes
    // first; the second's close keeps its version as a conflicted copy. (The versions differ in size: SFTP
    // gives modification times in whole seconds, DESIGN.md "SFTP".)
    let mut editing = fs::OpenOptions::new().write(true).open(second.path("before.txt")).unwrap();
    editing.set_len(0).unwrap();
    editing.write_all(b"the second device's version, longer").unwrap();
    tools::write_durably(&first.path("before.txt"), b"the first device's version");
    drop(editing);
    let conflicted = |mount: &Mounted| tools::conflicted_copy(&mount.path(""), "before", "laptop-2");
    assert!(
        eventually(Duration::from_secs(10), || conflicted(&first).is_some()),
        "no conflicted copy: {:?}",
        fs::read_dir(first.path("")).unwrap().map(|entry| entry.unwrap().file_name()).collect::<Vec<_>>()
    );
    let copy = conflicted(&first).unwrap();
    assert_eq!(fs::read(first.path(&copy)).unwrap(), b"the second device's version, longer");
    assert_eq!(fs::read(first.path("before.txt")).unwrap(), b"the first device's version");

    // The second device makes a folder the first has not seen yet, and the first makes one of the same name
    // before it does. Folders reach storage after their mkdir returns (in the background, at once on
    // fsync): the first's mkdir either sees the second's folder (EEXIST) or, from its listing of a moment
    // ago, does not, and then its folder is kept beside the second's as a conflicted copy, as a file would
    // be. Either way its refused try leaves no content folder of its own behind (it makes one in the same
    // round trip as the node, and takes it away when the node turns out to exist).
    let stored = server.root.join("Vault");
    let content_folders_before = content_folders(&stored);
    fs::read_dir(first.path("")).unwrap().for_each(drop);
    fs::create_dir(second.path("made twice")).unwrap();
    sync_folder(&second.path(""));
    let kept_both = match fs::create_dir(first.path("made twice")) {
        Ok(()) => true,
        Err(error) => {
            assert_eq!(error.raw_os_error(), Some(libc::EEXIST));
            false
        }
    };
    sync_folder(&first.path(""));
    let copies = fs::read_dir(first.path(""))
        .unwrap()
        .filter_map(|entry| entry.unwrap().file_name().into_string().ok())
        .filter(|name| name.starts_with("made twice (conflicted copy laptop-1 "))
        .count();
    assert_eq!(copies, usize::from(kept_both), "kept both: {kept_both}");
    assert_eq!(
        content_folders(&stored).len(),
        content_folders_before.len() + 1 + usize::from(kept_both),
        "an orphaned content folder"
    );
    // A folder whose content folder holds a cut write's temporary file (not an entry) is empty to rmdir,
    // and goes entirely once synced: its node and its content folder.
    let before_made = content_folders(&stored);
    fs::create_dir(first.path("emptied")).unwrap();
    sync_folder(&first.path(""));
    let made: Vec<_> = content_folders(&stored).difference(&before_made).cloned().collect();
    assert_eq!(made.len(), 1, "{made:?}");
    fs::write(made[0].join(".cloakfs-0123456789abcdef.tmp"), b"ciphertext of a cut upload").unwrap();
    fs::remove_dir(first.path("emptied")).unwrap();
    assert!(fs::metadata(first.path("emptied")).is_err());
    sync_folder(&first.path(""));
    assert!(!made[0].exists(), "the content folder of a removed folder is left");
    assert_eq!(content_folders(&stored), before_made);
    let listing = String::from_utf8_lossy(&ok(vault(&server, &home, &login, "ls", &[], &[])).stdout).into_owned();
    assert!(listing.contains("made twice") && !listing.contains("emptied"), "{listing}");

    let log = first.log();
    assert!(!log.contains("during") && !log.contains("before"), "a clear name in the log: {log}");
    ok(first.unmount());
    ok(second.unmount());
    let listing = String::from_utf8_lossy(&ok(vault(&server, &home, &login, "ls", &[], &[])).stdout).into_owned();
    assert!(listing.contains("during.txt") && listing.contains("conflicted copy laptop-2"), "{listing}");
}

#[test]
fn a_password_is_sent_only_when_allowed() {
    let server = SshServer::start("password", Factor::Password);
    let home = server.scratch("home");
    let run = |extra: &[&str]| {
        let mut command = cloakfs();
        command.env("HOME", &home).env("CLOAKFS_PASSPHRASE", PASSPHRASE).env_remove("SSH_AUTH_SOCK");
        command
            .args(["vault", "create", &server.url("Vault"), "--no-agent", "--accept-host-key", &server.fingerprint])
            .args(extra);
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        writeln!(child.stdin.take().unwrap(), "{}", ssh::USER_PASSWORD).unwrap();
        child.wait_with_output().unwrap()
    };
    // Not allowed: refused without asking, naming what the server accepts.
    let refused = run(&[]);
    let message = stderr_of(&refused);
    assert!(!refused.status.success());
    assert!(message.contains("refused the login") && message.contains("accepts: password"), "{message}");
    assert!(!message.contains("password:"), "a password was asked for: {message}");
    // Allowed: asked (no echo on a terminal; here on stdin) and accepted.
    let created = run(&["--allow-password"]);
    assert!(
        stderr_of(&created).contains(&format!("{}@127.0.0.1's password: ", ssh::SSH_USER)),
        "{}",
        stderr_of(&created)
    );
    ok(created);
    assert!(server.root.join("Vault/vault.cryptomator").is_file());
}
