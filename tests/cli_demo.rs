//! The README's main command, run as a user would (it starts an embedded server itself), and a scan of what
//! it leaves in the server's data directory.

use std::path::Path;
use std::process::Command;

fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_below(&path));
        }
        found.push(path);
    }
    found
}

#[test]
fn demo_round_trips_and_leaves_only_ciphertext_on_the_server() {
    let server_dir = std::env::temp_dir().join(format!("cloakfs-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&server_dir);
    let output = Command::new(env!("CARGO_BIN_EXE_cloakfs"))
        .args(["demo", "--user", "traveller", "--keep"])
        .arg(&server_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "demo failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("passport-scan.txt (45 bytes, verified)"), "{stdout}");
    assert!(stdout.contains("started cloakfs serve on http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("is caught: file ") && stdout.contains("authentication tag mismatch"), "{stdout}");
    let mnemonic_line = stdout.lines().find(|line| line.contains("mnemonic")).unwrap();
    let mnemonic = mnemonic_line.rsplit(": ").next().unwrap();
    assert_eq!(mnemonic.split(' ').count(), 12);

    // Nothing stored on the server side reveals a clear name, a content marker or the mnemonic.
    let markers: [&[u8]; 6] =
        [b"passport-scan", b"travel plan", b"Tax 2026", b"ERIKSSON", b"meet the lawyer", mnemonic.as_bytes()];
    let files = files_below(&server_dir);
    assert!(files.len() >= 7, "{files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for marker in markers {
            assert!(!name.as_bytes().windows(marker.len()).any(|w| w == marker), "{name}");
        }
        if path.is_file() {
            let content = std::fs::read(&path).unwrap();
            for marker in markers {
                assert!(
                    !content.windows(marker.len()).any(|w| w == marker),
                    "{} contains {:?}",
                    path.display(),
                    String::from_utf8_lossy(marker)
                );
            }
        }
    }
    std::fs::remove_dir_all(&server_dir).unwrap();
}

#[test]
fn unknown_commands_fail_with_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_cloakfs")).arg("frobnicate").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage"));
}

/// The README's first command with a mount point, its output through a pipe whose reader goes away (as with
/// `| head`), ended with Ctrl-C (SIGINT): what was written into the mount is uploaded, and the demo ends
/// cleanly.
#[test]
fn the_mounted_demo_ended_with_ctrl_c_uploads_even_when_its_output_pipe_is_gone() {
    use std::io::BufRead as _;

    let base = std::env::temp_dir();
    let server_dir = base.join(format!("cloakfs-test-demo-pipe-data-{}", std::process::id()));
    let mountpoint = base.join(format!("cloakfs-test-demo-pipe-mnt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&server_dir);
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloakfs"))
        .args(["demo", "--keep"])
        .arg(&server_dir)
        .arg(&mountpoint)
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let collected = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut lines = std::io::BufReader::new(reader).lines();
    loop {
        let line = lines.next().expect("the demo ended before mounting").unwrap();
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    // The reader goes away: every later line the demo prints meets a closed pipe.
    drop(lines);
    let content = vec![7u8; 12_345];
    std::fs::write(mountpoint.join("written through the mount.bin"), &content).unwrap();
    // SAFETY: kill with a valid pid and signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the demo kept running after Ctrl-C");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let stderr = collected.join().unwrap();
    assert!(status.success(), "the demo ended with {status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The file is on the server: one blob of its ciphertext size (plaintext + the 16-byte tag).
    let database = rusqlite::Connection::open(server_dir.join("cloakfs-server.sqlite3")).unwrap();
    let uploaded: i64 = database
        .query_row("SELECT count(*) FROM nodes WHERE is_dir = 0 AND size = ?1", [content.len() as i64 + 16], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(uploaded, 1, "the file written before Ctrl-C is not on the server");
    let mounted = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounted.contains(mountpoint.to_str().unwrap()), "still mounted");
    std::fs::remove_dir_all(&server_dir).unwrap();
    let _ = std::fs::remove_dir(&mountpoint);
}
