//! The real-tool workload every kind of mount runs: cp -r and diff -r, an editor's save (a swap file and
//! the new version renamed over the old), sed -i, tar x and diff -r, git clone and git fsck, rsync -a in and
//! out. The files it leaves (`src`, `note.txt` holding "third version", `untar`, `clone`, `rsynced`) are
//! what the callers check again after a remount. Also what the vault tests check on the server side.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use super::dav::pycryptomator;
use super::mount::{ok, pattern, sh};

/// Runs the workload in the mounted folder `root`, with `work` as a scratch folder outside the mount.
pub fn real_tool_workload(root: &Path, work: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    // cp -r, then diff -r.
    sh(&format!("cp -r '{0}' src && diff -r '{0}' src", source.join("src").display()), root);
    // An editor's save: a swap file, the new version under another name renamed over the original.
    fs::write(root.join("note.txt"), b"first version\n").unwrap();
    fs::write(root.join(".note.txt.swp"), pattern(4096, 9)).unwrap();
    fs::write(root.join("note.txt~"), b"second version\n").unwrap();
    fs::rename(root.join("note.txt~"), root.join("note.txt")).unwrap();
    fs::remove_file(root.join(".note.txt.swp")).unwrap();
    assert_eq!(fs::read(root.join("note.txt")).unwrap(), b"second version\n");
    sh("sed -i 's/second/third/' note.txt", root);
    assert_eq!(fs::read(root.join("note.txt")).unwrap(), b"third version\n");
    // tar x of a real source tarball, then diff -r.
    sh(&format!("tar czf src.tgz -C '{}' src tests Cargo.toml", source.display()), work);
    sh(&format!("mkdir untar && tar xzf '{}/src.tgz' -C untar", work.display()), root);
    sh(
        &format!(
            "diff -r '{}' untar/src && diff -r '{}' untar/tests",
            source.join("src").display(),
            source.join("tests").display()
        ),
        root,
    );
    // git clone into the mount, then git fsck.
    sh(
        &format!(
            "git init -q repo && cp -r '{}' repo/ && cd repo && git add -A && \
             git -c user.name=t -c user.email=t@t commit -qm init",
            source.join("src").display()
        ),
        work,
    );
    sh(
        &format!(
            "git clone -q '{}/repo' clone && cd clone && git fsck --full && git status --porcelain",
            work.display()
        ),
        root,
    );
    // rsync -a in and out.
    sh(&format!("rsync -a '{0}/' rsynced/ && diff -r '{0}' rsynced", source.join("src").display()), root);
    sh(
        &format!("rsync -a '{}/rsynced/' back/ && diff -r '{}' back", root.display(), source.join("src").display()),
        work,
    );
}

/// Every file and folder below `root`, for checking what a server stores.
pub fn paths_below(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

/// Fails if a path below `stored` contains one of the `clear` names.
pub fn assert_no_clear_names(stored: &Path, clear: &[&str]) {
    for path in paths_below(stored) {
        let text = path.strip_prefix(stored).unwrap().to_string_lossy().into_owned();
        for name in clear {
            assert!(!text.contains(name), "the server stores a clear name: {text}");
        }
    }
}

/// pycryptomator's decryption of `path` in the vault in `stored` (unlocked with `passphrase`).
pub fn py_read(stored: &Path, passphrase: &str, path: &str, scratch: &Path) -> Vec<u8> {
    let out = scratch.join("py-out");
    let _ = fs::remove_file(&out);
    ok(pycryptomator()
        .args(["--password", passphrase])
        .arg(stored)
        .args(["decrypt", path])
        .arg(&out)
        .output()
        .unwrap());
    fs::read(&out).unwrap()
}

/// The name of the conflicted copy of `stem.txt` made by `device` in `folder`, if there is one.
pub fn conflicted_copy(folder: &Path, stem: &str, device: &str) -> Option<String> {
    let prefix = format!("{stem} (conflicted copy {device} ");
    fs::read_dir(folder)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .find(|name| name.starts_with(&prefix) && name.ends_with(").txt"))
}

/// Writes `bytes` as the whole file at `path` and waits until the store has it (fsync): a mount's close
/// may return before its upload (write-behind), so a test that needs one device's version to reach the
/// store before another's says so.
pub fn write_durably(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

/// Writes a file and closes it, returning close's error too (std's drop ignores it): a mount's close
/// reports an upload that failed.
pub fn write_and_close(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::fd::IntoRawFd as _;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    // SAFETY: the descriptor comes from into_raw_fd and is closed exactly once.
    match unsafe { libc::close(file.into_raw_fd()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
