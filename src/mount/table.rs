//! The kernel's mount table as cloakfs needs it (Linux): which cloakfs file systems are mounted where
//! (`/proc/self/mountinfo`), detaching one (`umount2`, or `fusermount3 -u -z` without privileges), and
//! checking a mount point before mounting (a stale mount of a dead process is cleared).

use std::path::{Path, PathBuf};

use super::MountError;

/// The absolute form of `path` without resolving symlinks or touching a (possibly stale) mount.
pub(super) fn absolute(path: &Path) -> Result<PathBuf, MountError> {
    std::path::absolute(path)
        .map_err(|error| MountError::MountPoint { path: path.to_owned(), reason: error.to_string() })
}

/// Mount points of cloakfs file systems listed by the kernel.
fn cloakfs_mounts() -> Vec<PathBuf> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right_fields = right.split(' ');
            let fstype = right_fields.next()?;
            let source = right_fields.next()?;
            if !(fstype.starts_with("fuse") && (source == "cloakfs" || fstype == "fuse.cloakfs")) {
                return None;
            }
            let mountpoint = left.split(' ').nth(4)?;
            // mountinfo escapes space, tab, newline and backslash as octal.
            Some(PathBuf::from(unescape_octal(mountpoint)))
        })
        .collect()
}

fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\'
            && index + 3 < bytes.len()
            && bytes[index + 1..index + 4].iter().all(u8::is_ascii_digit)
        {
            let value = u8::from_str_radix(&text[index + 1..index + 4], 8).unwrap_or(b'?');
            out.push(value);
            index += 4;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a cloakfs file system is mounted at `path`.
pub fn is_mounted(path: &Path) -> bool {
    absolute(path).map(|path| cloakfs_mounts().contains(&path)).unwrap_or(false)
}

/// Detaches the mount at `path` (lazily: programs with open files keep them until they close).
pub fn detach(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::EPERM) {
        return Err(error);
    }
    // Not root: the setuid helper does it.
    let output = std::process::Command::new("fusermount3").arg("-u").arg("-z").arg("--").arg(path).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(String::from_utf8_lossy(&output.stderr).trim().to_owned()))
    }
}

/// Refuses a mount point with a live cloakfs mount; clears a stale one (its process is gone).
pub(super) fn prepare_mountpoint(path: &Path) -> Result<(), MountError> {
    let error = |reason: String| MountError::MountPoint { path: path.to_owned(), reason };
    if cloakfs_mounts().contains(&path.to_path_buf()) {
        match std::fs::metadata(path) {
            Err(stat) if stat.raw_os_error() == Some(libc::ENOTCONN) => {
                tracing::warn!("clearing a stale cloakfs mount left by a process that is gone");
                detach(path).map_err(|e| error(format!("a stale mount is there and could not be removed: {e}")))?;
            }
            _ => return Err(error("a cloakfs file system is already mounted there".into())),
        }
    }
    let metadata = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
    if !metadata.is_dir() {
        return Err(error("not a directory".into()));
    }
    Ok(())
}
