//! The per-OS glue under platform/: the `mount.cloakfs` fstab helper turns mount(8)'s call into the
//! `cloakfs mount` command line it documents (run by a real `sh`, with a stand-in `cloakfs` that records its
//! arguments), and the launchd agent is a well-formed property list that names the mount command.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh scratch directory for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("cloakfs-test-glue-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the helper with `arguments`; returns its exit code and the arguments the stand-in cloakfs got.
fn run_helper(scratch: &Path, arguments: &[&str]) -> (i32, Vec<String>) {
    let recorder = scratch.join("cloakfs");
    let record = scratch.join("arguments");
    let _ = std::fs::remove_file(&record);
    std::fs::write(&recorder, format!("#!/bin/sh\nfor a do printf '%s\\n' \"$a\"; done > '{}'\n", record.display()))
        .unwrap();
    Command::new("chmod").arg("+x").arg(&recorder).status().unwrap();
    let status = Command::new("sh")
        .arg(repository().join("platform/linux/mount.cloakfs"))
        .args(arguments)
        .env("CLOAKFS", &recorder)
        .status()
        .unwrap();
    let recorded = std::fs::read_to_string(&record).unwrap_or_default();
    (status.code().unwrap_or(-1), recorded.lines().map(str::to_owned).collect())
}

#[test]
fn fstab_helper_builds_the_mount_command() {
    let scratch = Scratch::new("builds");
    let (code, arguments) = run_helper(
        scratch.path(),
        &[
            "/Vault",
            "/home/alice/Vault",
            "-n",
            "-o",
            "rw,noauto,user,_netdev,x-systemd.automount,server=https://cloud.example.org,account=alice,idle-timeout=30m,travel",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        arguments,
        [
            "mount",
            "/Vault",
            "/home/alice/Vault",
            "--daemon",
            "--server",
            "https://cloud.example.org",
            "--user",
            "alice",
            "--idle-timeout",
            "30m",
            "--travel"
        ]
    );
}

#[test]
fn fstab_helper_refuses_what_it_cannot_honour() {
    let scratch = Scratch::new("refuses");
    // Read-only is not a cloakfs mount mode: refused with mount(8)'s "mount failure", cloakfs never started.
    let (code, arguments) = run_helper(scratch.path(), &["/Vault", "/mnt", "-o", "ro,server=https://h,account=a"]);
    assert_eq!((code, arguments.len()), (32, 0));
    // A mnemonic file from fstab would put the key on disk.
    let (code, arguments) = run_helper(scratch.path(), &["/Vault", "/mnt", "-o", "mnemonic-file=/etc/words"]);
    assert_ne!(code, 0);
    assert!(arguments.is_empty());
    // A failing mount is reported as mount(8)'s failure code.
    std::fs::write(scratch.path().join("fails"), "#!/bin/sh\nexit 1\n").unwrap();
    Command::new("chmod").arg("+x").arg(scratch.path().join("fails")).status().unwrap();
    let status = Command::new("sh")
        .arg(repository().join("platform/linux/mount.cloakfs"))
        .args(["/Vault", "/mnt", "-o", "server=https://h,account=a"])
        .env("CLOAKFS", scratch.path().join("fails"))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(32));
}

#[test]
fn systemd_unit_and_launchd_agent_mount_without_a_mnemonic_file() {
    let unit = std::fs::read_to_string(repository().join("platform/linux/cloakfs@.service")).unwrap();
    let exec = unit.lines().find(|line| line.starts_with("ExecStart=")).expect("an ExecStart line");
    assert!(exec.contains("cloakfs mount --mnemonic-file /dev/stdin"), "{exec}");
    // Every shell variable is escaped from systemd's own expansion.
    assert!(!exec.replace("$$", "").contains('$'), "unescaped $ in {exec}");
    assert!(unit.contains("LimitCORE=0"));

    let plist = std::fs::read_to_string(repository().join("platform/macos/org.cloakfs.mount.plist")).unwrap();
    assert!(plist.starts_with("<?xml") && plist.trim_end().ends_with("</plist>"));
    assert!(plist.contains("cloakfs mount") && plist.contains("--mnemonic-file /dev/stdin"));
    assert!(plist.contains("<key>Core</key>\n    <integer>0</integer>"));
}
