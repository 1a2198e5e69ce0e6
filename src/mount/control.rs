//! The control socket of a running mount, for `cloakfs status` and `cloakfs unmount`. Sockets live in the
//! user's runtime directory (`$XDG_RUNTIME_DIR/cloakfs`, a tmpfs; else `/tmp/cloakfs-UID`, mode 0700) and are
//! named by process id only; they carry no content and disappear with the mount.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::core::CoreStatus;

/// Errors of the control channel.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The runtime directory cannot be used.
    #[error("runtime directory {path}: {reason}")]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Talking to a mount failed.
    #[error("control socket {path}: {reason}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// A request to a mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    /// Report status.
    Status,
    /// Upload everything, unmount and exit.
    Unmount,
    /// Upload everything (refusing if that fails, unless `discard`), unmount, wipe and exit.
    Lock {
        /// Drop changes that are not on the server yet instead of refusing.
        discard: bool,
    },
}

/// What a mount reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountStatus {
    /// The mount process.
    pub pid: u32,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The server.
    pub server: String,
    /// The user.
    pub user: String,
    /// The mounted folder (its path on the server, as given).
    pub remote: String,
    /// The idle timeout, if any.
    #[serde(default)]
    pub idle_timeout_seconds: Option<u64>,
    /// Whether it locks on sleep and screen lock.
    #[serde(default)]
    pub lock_on_suspend: bool,
    /// Cache use, dirty files and errors.
    pub core: CoreStatusReport,
}

/// [`CoreStatus`] as sent over the socket.
pub type CoreStatusReport = serde_json::Value;

/// Converts a core status for the socket.
pub fn report(status: &CoreStatus) -> CoreStatusReport {
    serde_json::to_value(status).unwrap_or_default()
}

/// The answer to a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// The status (for `status`, and after `unmount`).
    pub status: Option<MountStatus>,
    /// An error, if the request failed.
    pub error: Option<String>,
}

/// The directory holding the control sockets, created with mode 0700 if missing.
pub fn runtime_dir() -> Result<PathBuf, ControlError> {
    let uid = crate::platform::owner_ids().0;
    let path = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(base) if !base.is_empty() => PathBuf::from(base).join("cloakfs"),
        _ => std::env::temp_dir().join(format!("cloakfs-{uid}")),
    };
    let error = |reason: String| ControlError::RuntimeDir { path: path.clone(), reason };
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&path).map_err(|e| error(e.to_string()))?;
        let metadata = std::fs::symlink_metadata(&path).map_err(|e| error(e.to_string()))?;
        if !metadata.is_dir() || metadata.uid() != uid {
            return Err(error("not a directory owned by this user".into()));
        }
        if metadata.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| error(e.to_string()))?;
        }
    }
    Ok(path)
}

/// The socket path of this process.
pub fn own_socket() -> Result<PathBuf, ControlError> {
    Ok(runtime_dir()?.join(format!("{}.sock", std::process::id())))
}

/// Sends `request` to the mount listening on `socket`.
pub async fn send(socket: &Path, request: &Request) -> Result<Reply, ControlError> {
    let error = |reason: String| ControlError::Socket { path: socket.to_owned(), reason };
    let mut stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| error(e.to_string()))?;
    let mut line = serde_json::to_string(request).map_err(|e| error(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).await.map_err(|e| error(e.to_string()))?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).await.map_err(|e| error(e.to_string()))?;
    serde_json::from_str(&answer).map_err(|e| error(format!("bad answer: {e}")))
}

/// The status of every running mount of this user (stale sockets are removed).
pub async fn all_mounts() -> Result<Vec<(PathBuf, MountStatus)>, ControlError> {
    let directory = runtime_dir()?;
    let mut mounts = Vec::new();
    let entries = std::fs::read_dir(&directory)
        .map_err(|e| ControlError::RuntimeDir { path: directory.clone(), reason: e.to_string() })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|extension| extension.to_str()) != Some("sock") {
            continue;
        }
        match send(&path, &Request::Status).await {
            Ok(Reply { status: Some(status), .. }) => mounts.push((path, status)),
            Ok(_) => {}
            Err(_) => {
                // No process behind it any more.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    mounts.sort_by(|left, right| left.1.mountpoint.cmp(&right.1.mountpoint));
    Ok(mounts)
}
