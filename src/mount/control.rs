//! The control channel of a running mount, for `cloakfs status`, `unmount` and `lock`: one JSON request
//! line, one JSON reply line. On Unix a socket in the user's runtime directory (`$XDG_RUNTIME_DIR/cloakfs`,
//! a tmpfs; else `/tmp/cloakfs-UID`, mode 0700); on Windows a local named pipe `\\.\pipe\cloakfs-USER-PID`
//! (remote clients refused; created with the security descriptor the mount passes, the user and SYSTEM
//! only). Named by process id only; they carry no content and disappear with the mount.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::vfs::VfsStatus;

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
    /// The question the mount waits on, if any (`cloakfs unlock`).
    Question,
    /// Answers question `id` (a one-time code or a passphrase for reconnecting).
    Answer {
        /// The question answered.
        id: u64,
        /// The answer (wiped once handed over).
        text: String,
    },
}

/// A question a mount waits on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuestionReport {
    /// Its id, for the answer.
    pub id: u64,
    /// The prompt, as the server or the key file wrote it.
    pub prompt: String,
    /// Whether the answer is a secret (asked without echo).
    pub secret: bool,
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
    pub core: VfsStatusReport,
}

impl MountStatus {
    /// The status of this process's mount of `info` at `mountpoint`, with the engine's report now.
    pub fn describe(info: &super::MountInfo, mountpoint: &Path, core: &VfsStatus) -> Self {
        Self {
            pid: std::process::id(),
            mountpoint: mountpoint.to_owned(),
            server: info.server.clone(),
            user: info.user.clone(),
            remote: info.remote.clone(),
            idle_timeout_seconds: info.idle_timeout.map(|timeout| timeout.as_secs()),
            lock_on_suspend: info.lock_on_suspend,
            core: report(core),
        }
    }
}

/// [`VfsStatus`] as sent over the socket.
pub type VfsStatusReport = serde_json::Value;

/// Converts a core status for the socket.
pub fn report(status: &VfsStatus) -> VfsStatusReport {
    serde_json::to_value(status).unwrap_or_default()
}

/// The answer to a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// The status (for `status`, and after `unmount`).
    pub status: Option<MountStatus>,
    /// An error, if the request failed.
    pub error: Option<String>,
    /// The question waiting (for `question`).
    #[serde(default)]
    pub question: Option<QuestionReport>,
}

/// The reply to a `question` or `answer` request, which concern the question waiting in
/// [`super::questions`] rather than the engine; any other request is given back.
pub fn question_reply(request: Request) -> Result<Reply, Request> {
    match request {
        Request::Question => Ok(Reply {
            status: None,
            error: None,
            question: super::questions::waiting().map(|(id, prompt, secret)| QuestionReport { id, prompt, secret }),
        }),
        Request::Answer { id, text } => {
            let taken = super::questions::answer(id, zeroize::Zeroizing::new(text));
            Ok(Reply {
                status: None,
                error: (!taken).then(|| "that question is no longer waiting".into()),
                question: None,
            })
        }
        other => Err(other),
    }
}

/// The directory holding the control sockets, created with mode 0700 if missing.
#[cfg(unix)]
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
#[cfg(unix)]
pub fn own_socket() -> Result<PathBuf, ControlError> {
    Ok(runtime_dir()?.join(format!("{}.sock", std::process::id())))
}

/// Sends `request` to the mount listening on `socket` (a socket path; on Windows a pipe name).
pub async fn send(socket: &Path, request: &Request) -> Result<Reply, ControlError> {
    let error = |reason: String| ControlError::Socket { path: socket.to_owned(), reason };
    #[cfg(unix)]
    let mut stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| error(e.to_string()))?;
    #[cfg(windows)]
    let mut stream = pipe::connect(socket).await.map_err(|e| error(e.to_string()))?;
    let mut line = serde_json::to_string(request).map_err(|e| error(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).await.map_err(|e| error(e.to_string()))?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).await.map_err(|e| error(e.to_string()))?;
    serde_json::from_str(&answer).map_err(|e| error(format!("bad answer: {e}")))
}

/// The status of every running mount of this user (stale sockets are removed).
#[cfg(unix)]
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

/// The status of every running mount of this user: the pipes named `cloakfs-USER-*`.
#[cfg(windows)]
pub async fn all_mounts() -> Result<Vec<(PathBuf, MountStatus)>, ControlError> {
    let directory = PathBuf::from(pipe::PIPES);
    let prefix = pipe::prefix();
    let entries = std::fs::read_dir(&directory)
        .map_err(|e| ControlError::RuntimeDir { path: directory.clone(), reason: e.to_string() })?;
    let mut mounts = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) {
            continue;
        }
        let path = directory.join(&name);
        if let Ok(Reply { status: Some(status), .. }) = send(&path, &Request::Status).await {
            mounts.push((path, status));
        }
    }
    mounts.sort_by(|left, right| left.1.mountpoint.cmp(&right.1.mountpoint));
    Ok(mounts)
}

/// Named pipes: the control channel on Windows.
#[cfg(windows)]
pub mod pipe {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions};

    /// Where Windows lists named pipes.
    pub const PIPES: &str = r"\\.\pipe\";

    /// `cloakfs-USER-`: the start of this user's pipe names.
    pub fn prefix() -> String {
        let user = std::env::var("USERNAME").unwrap_or_default();
        let user: String = user.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
        format!("cloakfs-{user}-")
    }

    /// The pipe name of this process.
    pub fn own_pipe() -> PathBuf {
        PathBuf::from(format!("{PIPES}{}{}", prefix(), std::process::id()))
    }

    /// Accepts connections on this process's pipe, one instance after the other.
    pub struct PipeListener {
        name: PathBuf,
        /// The self-relative security descriptor every instance is created with.
        descriptor: Vec<u8>,
        next: NamedPipeServer,
    }

    /// One instance of the pipe `name`, created with `descriptor`.
    fn instance(name: &Path, descriptor: &mut [u8], first: bool) -> std::io::Result<NamedPipeServer> {
        use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
        let mut attributes = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: descriptor.as_mut_ptr().cast(),
            bInheritHandle: 0,
        };
        // SAFETY: the attributes point at a self-relative descriptor that outlives the call
        // (CreateNamedPipeW copies it).
        unsafe {
            ServerOptions::new()
                .first_pipe_instance(first)
                .reject_remote_clients(true)
                .create_with_security_attributes_raw(name, (&mut attributes as *mut SECURITY_ATTRIBUTES).cast())
        }
    }

    impl PipeListener {
        /// Creates the pipe with `descriptor` (a self-relative security descriptor, e.g. full access for
        /// the user and SYSTEM only, instead of Windows' default pipe DACL, which lets Everyone read),
        /// refusing if another process already has the name, and refusing remote clients.
        pub fn bind(name: &Path, mut descriptor: Vec<u8>) -> std::io::Result<Self> {
            let next = instance(name, &mut descriptor, true)?;
            Ok(Self { name: name.to_owned(), descriptor, next })
        }

        /// The next client's connection.
        pub async fn accept(&mut self) -> std::io::Result<NamedPipeServer> {
            self.next.connect().await?;
            let fresh = instance(&self.name, &mut self.descriptor, false)?;
            Ok(std::mem::replace(&mut self.next, fresh))
        }
    }

    /// Connects to the pipe `name`, waiting while all its instances are busy.
    pub async fn connect(name: &Path) -> std::io::Result<NamedPipeClient> {
        // ERROR_PIPE_BUSY
        const PIPE_BUSY: i32 = 231;
        for _ in 0..50 {
            match ClientOptions::new().open(name) {
                Err(error) if error.raw_os_error() == Some(PIPE_BUSY) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => return other,
            }
        }
        ClientOptions::new().open(name)
    }
}
