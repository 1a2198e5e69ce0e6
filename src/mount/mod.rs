//! The platform adapters over the one engine ([`crate::vfs::Engine`], for every vault format). On Linux and
//! macOS, `fuse` adapts the engine to fuser, `control` answers `cloakfs status`, `unmount` and `lock`,
//! `suspend` watches logind and the screen locker (Linux; a clear refusal on macOS), `table` reads the mount
//! table, and `run` (src/mount/session.rs) ties them together: mount, serve until Ctrl-C / SIGTERM /
//! `cloakfs unmount` / an external unmount / the idle timeout, then upload everything, unmount and wipe.
//! [`winfs`] is the engine with Windows' semantics (paths, names, delete-on-close, NTSTATUS),
//! platform-neutral and tested on Linux; the WinFsp binding that calls it lives in platform/windows.

#[cfg(any(unix, windows))]
pub mod control;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub mod fuse;
#[cfg(any(unix, windows))]
pub mod lifecycle;
pub mod output;
pub mod questions;
#[cfg(any(target_os = "linux", target_os = "macos"))]
mod session;
#[cfg(any(target_os = "linux", target_os = "macos"))]
#[cfg_attr(target_os = "macos", path = "suspend_macos.rs")]
pub mod suspend;
#[cfg(any(target_os = "linux", target_os = "macos"))]
mod table;
pub mod winfs;

use std::path::PathBuf;
use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "macos"))]
pub use session::run;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub use table::{detach, is_mounted, stale_mounts};

/// Errors of mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point cannot be used.
    #[error("mount point {path}: {reason}")]
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The kernel mount failed.
    #[error("mounting {path} failed: {reason} (is fuse3 installed and /dev/fuse accessible?)")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The control socket failed.
    #[cfg(any(unix, windows))]
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// `--lock-on-suspend` was asked for but cannot work (no system bus on Linux; not built on macOS).
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[error(transparent)]
    Suspend(#[from] suspend::WatchError),
}

/// What the mount reports about itself.
#[derive(Debug, Clone)]
pub struct MountInfo {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// The server.
    pub server: String,
    /// The user.
    pub user: String,
    /// The mounted folder as given.
    pub remote: String,
    /// Unmount after this long without activity (see [`crate::vfs::Vfs::note_activity`]).
    pub idle_timeout: Option<Duration>,
    /// Lock when the system is about to sleep or the screen locks ([`suspend`]).
    pub lock_on_suspend: bool,
}
