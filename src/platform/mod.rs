//! The operating-system calls cloakfs makes outside its platform adapters, behind one small interface:
//! anonymous temporary files, positioned file I/O, key memory, file-system syncs, the host name and the
//! owning user. Each function has a Unix body (with Linux-only refinements) and a fallback for other
//! systems that keeps the promise or says plainly that it cannot (see each function). The engine
//! (src/mount/core), the vault and the crypto compile for Linux, macOS and Windows through this module.
//!
//! The FUSE adapter, the mount table and the mount session (src/mount) are compiled on Linux and macOS; the
//! Windows drive letter is the WinFsp binary in platform/windows over src/mount/winfs.

use std::fs::File;
use std::io;
use std::path::Path;

pub mod memory;

/// This machine's host name, if the system tells it.
pub fn host_name() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buffer = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or truncates.
        let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
        let end = buffer.iter().position(|&byte| byte == 0).unwrap_or(buffer.len());
        match std::str::from_utf8(&buffer[..end]) {
            Ok(host) if result == 0 && !host.is_empty() => Some(host.to_owned()),
            _ => None,
        }
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").ok().filter(|name| !name.is_empty())
    }
}

/// The user and group that own every node of a mount (the mounting user); `(0, 0)` where the system has
/// no such ids (Windows: the adapter decides ownership).
pub fn owner_ids() -> (u32, u32) {
    #[cfg(unix)]
    {
        // SAFETY: getuid and getgid cannot fail.
        unsafe { (libc::getuid(), libc::getgid()) }
    }
    #[cfg(not(unix))]
    {
        (0, 0)
    }
}

/// A new temporary file in `directory` that no other process can open by name: on Linux `O_TMPFILE` (no
/// name ever exists); where the file system lacks it, and on other Unix systems, a random name made with
/// mode 0600 and unlinked at once; on Windows a random name opened delete-on-close with no sharing.
pub fn create_anonymous_file(directory: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let anonymous = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(directory);
        match anonymous {
            Ok(file) => return Ok(file),
            Err(error) if matches!(error.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {}
            Err(error) => return Err(error),
        }
    }
    let mut random = [0u8; 16];
    crate::crypto::secret::random_bytes(&mut random);
    let path = directory.join(format!(".cloakfs-spill-{}", hex::encode(random)));
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
        let file = options.open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt as _;
        // FILE_FLAG_DELETE_ON_CLOSE | FILE_ATTRIBUTE_TEMPORARY, no sharing: gone when the handle closes.
        options.custom_flags(0x0400_0000).attributes(0x100).share_mode(0);
        options.open(&path)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (options, path);
        Err(io::Error::new(io::ErrorKind::Unsupported, "no anonymous temporary files on this system"))
    }
}

/// Reads exactly `buffer.len()` bytes at `offset` without moving a shared file position.
pub fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buffer.len() {
            match std::os::windows::fs::FileExt::seek_read(file, &mut buffer[done..], offset + done as u64)? {
                0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                read => done += read,
            }
        }
        Ok(())
    }
}

/// Writes all of `data` at `offset`.
pub fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, data, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < data.len() {
            match std::os::windows::fs::FileExt::seek_write(file, &data[done..], offset + done as u64)? {
                0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                written => done += written,
            }
        }
        Ok(())
    }
}

/// Makes `options` create files readable and writable by their owner only (mode 0600). Windows: the new
/// file inherits its folder's access list (a user's profile folders are private to the user).
pub fn owner_only(options: &mut std::fs::OpenOptions) {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    #[cfg(not(unix))]
    let _ = options;
}

/// Asks the system to start writing `len` bytes of `file` from `offset` to disk without waiting (Linux:
/// `sync_file_range`); elsewhere nothing (the later fsync writes them).
pub fn start_write_back(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: an open descriptor and a range of it; SYNC_FILE_RANGE_WRITE only starts write-back.
    unsafe {
        libc::sync_file_range(
            std::os::fd::AsRawFd::as_raw_fd(file),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Tells the system that `file` is read front to back (Linux: a doubled read-ahead).
#[cfg(target_os = "linux")]
pub fn advise_sequential(file: &impl std::os::fd::AsRawFd) {
    // SAFETY: advice on an open descriptor; a failure only loses the larger read-ahead.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Tells the system that `file` is read front to back: nothing to tell outside Linux.
#[cfg(not(target_os = "linux"))]
pub fn advise_sequential<T>(_file: &T) {}

/// Makes everything written to the file system holding `directory` durable: Linux `syncfs` (that file
/// system only); other Unix systems `sync` (all of them); Windows: not available without administrator
/// rights, so an error says so (callers sync file by file there).
pub fn sync_file_system(directory: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let root = File::open(directory)?;
        // SAFETY: syncfs takes an open file descriptor, which `root` keeps alive for the call.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&root)) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let _ = directory;
        // SAFETY: sync has no arguments and cannot fail.
        unsafe { libc::sync() };
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = directory;
        Err(io::Error::new(io::ErrorKind::Unsupported, "no file-system sync on this system"))
    }
}

/// Keeps this process from writing memory to disk when it crashes, and other processes of the same user
/// from reading it: no core dumps (`RLIMIT_CORE` 0) and, on Linux, not dumpable (no ptrace attach, no
/// /proc/PID/mem). Windows has no per-process switch for crash dumps: here the crash dialog and critical-error
/// boxes are turned off (`SetErrorMode`), key memory is excluded from Windows Error Reporting's dumps
/// ([`memory::mark_secret`]), and what remains is said in THREAT-MODEL.md ("Windows").
pub fn forbid_core_dumps() {
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Diagnostics::Debug::{
            SetErrorMode, SEM_FAILCRITICALERRORS, SEM_NOGPFAULTERRORBOX,
        };
        // SAFETY: sets this process's error mode; no pointers.
        unsafe {
            SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
        }
    }
    #[cfg(unix)]
    {
        let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: plain syscalls with valid arguments.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        }
    }
}
