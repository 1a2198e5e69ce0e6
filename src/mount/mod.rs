//! The mount. [`core`] is the file-system engine (platform-neutral: no FUSE, no errno), with its plaintext
//! [`cache`], [`content`] buffers and [`upload`] streams; [`error`] its errors. On Linux, `fuse` adapts the
//! engine to fuser, `control` answers `cloakfs status`, `unmount` and `lock`, `suspend` watches logind and
//! the screen locker, `table` reads the kernel's mount table, and `run` (src/mount/session.rs) ties them
//! together: mount, serve until Ctrl-C / SIGTERM / `cloakfs unmount` / an external unmount / the idle
//! timeout, then upload everything, unmount and wipe.

pub mod cache;
pub mod content;
#[cfg(unix)]
pub mod control;
pub mod core;
pub mod error;
#[cfg(target_os = "linux")]
pub mod fuse;
#[cfg(target_os = "linux")]
mod session;
#[cfg(target_os = "linux")]
pub mod suspend;
#[cfg(target_os = "linux")]
mod table;
pub mod upload;
pub mod winfs;

use std::path::PathBuf;
use std::time::Duration;

#[cfg(target_os = "linux")]
pub use session::run;
#[cfg(target_os = "linux")]
pub use table::{detach, is_mounted};

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
    #[cfg(unix)]
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// `--lock-on-suspend` was asked for but the system bus cannot be watched.
    #[cfg(target_os = "linux")]
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
    /// Unmount after this long without activity (see [`core::Core::note_activity`]).
    pub idle_timeout: Option<Duration>,
    /// Lock when the system is about to sleep or the screen locks ([`suspend`]).
    pub lock_on_suspend: bool,
}
