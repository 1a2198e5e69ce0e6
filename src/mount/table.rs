//! The kernel's mount table as cloakfs needs it: which cloakfs file systems are mounted where (Linux:
//! `/proc/self/mountinfo`; macOS: `getmntinfo`), detaching one (Linux: `umount2` lazily, or `fusermount3 -u
//! -z` without privileges; macOS: `umount`, then `diskutil unmount force`, which is not lazy: programs with
//! files open inside get errors), and checking a mount point before mounting (a stale mount of a dead
//! process is cleared).

use std::path::{Path, PathBuf};

use super::MountError;

/// The absolute form of `path` without resolving symlinks or touching a (possibly stale) mount.
pub(super) fn absolute(path: &Path) -> Result<PathBuf, MountError> {
    std::path::absolute(path)
        .map_err(|error| MountError::MountPoint { path: path.to_owned(), reason: error.to_string() })
}

/// Mount points of cloakfs file systems listed by the kernel.
#[cfg(target_os = "linux")]
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

#[cfg(target_os = "linux")]
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

/// Mount points of cloakfs file systems listed by the kernel: macFUSE reports the `fsname` option
/// ("cloakfs") as the source of a `macfuse` (or older `osxfuse`) file system.
#[cfg(target_os = "macos")]
fn cloakfs_mounts() -> Vec<PathBuf> {
    use std::ffi::CStr;
    let mut entries: *mut libc::statfs = std::ptr::null_mut();
    // SAFETY: getmntinfo points `entries` at a buffer it owns and returns how many it holds.
    let count = unsafe { libc::getmntinfo(&mut entries, libc::MNT_NOWAIT) };
    if count <= 0 || entries.is_null() {
        return Vec::new();
    }
    // SAFETY: `count` initialised entries at `entries`, valid until the next getmntinfo in this process.
    let entries = unsafe { std::slice::from_raw_parts(entries, count as usize) };
    entries
        .iter()
        .filter_map(|entry| {
            // SAFETY: the kernel NUL-terminates these fixed-size name fields.
            let (fstype, source, mountpoint) = unsafe {
                (
                    CStr::from_ptr(entry.f_fstypename.as_ptr()),
                    CStr::from_ptr(entry.f_mntfromname.as_ptr()),
                    CStr::from_ptr(entry.f_mntonname.as_ptr()),
                )
            };
            let fstype = fstype.to_string_lossy();
            let is_fuse = fstype.contains("fuse");
            (is_fuse && source.to_bytes() == b"cloakfs").then(|| {
                use std::os::unix::ffi::OsStrExt;
                PathBuf::from(std::ffi::OsStr::from_bytes(mountpoint.to_bytes()))
            })
        })
        .collect()
}

/// Detaches the mount at `path` (lazily: programs with open files keep them until they close).
#[cfg(target_os = "linux")]
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

/// Detaches the mount at `path`: `umount`, and when something inside is busy, `diskutil unmount force`
/// (macOS has no lazy unmount; programs with files open inside get errors from then on).
#[cfg(target_os = "macos")]
pub fn detach(path: &Path) -> std::io::Result<()> {
    let run = |program: &str, args: &[&str]| -> std::io::Result<Result<(), String>> {
        let output = std::process::Command::new(program).args(args).arg(path).output()?;
        Ok(if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        })
    };
    match run("umount", &[])? {
        Ok(()) => Ok(()),
        Err(_busy) => run("diskutil", &["unmount", "force"])?.map_err(std::io::Error::other),
    }
}

/// Mount points of cloakfs file systems whose process is gone (killed, crashed): listed by the kernel,
/// but `stat` fails with "Transport endpoint is not connected". `cloakfs unmount` or `fusermount3 -u`
/// clears them; `cloakfs mount` at one clears it first.
pub fn stale_mounts() -> Vec<PathBuf> {
    cloakfs_mounts().into_iter().filter(|path| std::fs::metadata(path).is_err_and(|error| is_stale(&error))).collect()
}

/// Whether `stat` of a listed mount point failed the way a mount of a dead process fails.
fn is_stale(error: &std::io::Error) -> bool {
    #[cfg(target_os = "macos")]
    let stale = [libc::ENOTCONN, libc::ENXIO];
    #[cfg(target_os = "linux")]
    let stale = [libc::ENOTCONN];
    error.raw_os_error().is_some_and(|code| stale.contains(&code))
}

/// Refuses a mount point with a live cloakfs mount; clears a stale one (its process is gone).
pub(super) fn prepare_mountpoint(path: &Path) -> Result<(), MountError> {
    let error = |reason: String| MountError::MountPoint { path: path.to_owned(), reason };
    if cloakfs_mounts().contains(&path.to_path_buf()) {
        match std::fs::metadata(path) {
            Err(stat) if is_stale(&stat) => {
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
