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
