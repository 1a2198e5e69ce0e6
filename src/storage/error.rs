//! Errors of a [`Remote`](super::Remote), and their kinds: what the engine branches on. A backend maps its
//! own status codes (HTTP, SFTP, ...) to a [`RemoteErrorKind`] once; nothing above `src/remote` reads a
//! protocol's status code.

/// What went wrong, in the engine's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// The file, folder or metadata does not exist.
    NotFound,
    /// Another client holds the folder's lock (Nextcloud: 423).
    Locked,
    /// The server refused the metadata counter of a lock request: its counter is ahead of ours (Nextcloud:
    /// 412 on `POST /lock`).
    CounterRefused,
    /// A request made under a lock was refused because the server no longer knows that lock (Nextcloud:
    /// 403, 404 or 412 when storing metadata or unlocking with our token).
    LockLost,
    /// The server's storage or the user's quota is full (HTTP 413, 507).
    NoSpace,
    /// The server refused the credentials (HTTP 401).
    Unauthorized,
    /// The server refused the operation (HTTP 403).
    Forbidden,
    /// The server could not be reached or is down (no connection, timeout, HTTP 502–504): worth waiting for.
    Unreachable,
    /// The target exists already (HTTP 405 on MKCOL, 412 on a create-only write).
    Exists,
    /// The file changed since it was read: a conditional write's ETag (or size and time) no longer matches
    /// (HTTP 412 on `If-Match`).
    Changed,
    /// The server's answer does not have the expected shape.
    Protocol,
    /// The address or configuration is unusable.
    BadConfiguration,
    /// Any other failure the server reported.
    Failed,
}

impl RemoteErrorKind {
    /// The kind an HTTP status stands for when the request gives it no more specific meaning.
    pub fn of_http_status(status: u16) -> Self {
        match status {
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 | 410 => Self::NotFound,
            413 | 507 => Self::NoSpace,
            423 => Self::Locked,
            502..=504 => Self::Unreachable,
            _ => Self::Failed,
        }
    }
}

/// Errors talking to a server. Each names the request (method and path, never a clear file name).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL is not usable (plain HTTP to a remote host without permission, bad scheme).
    #[error("{0}")]
    BadUrl(String),
    /// The server refused the credentials.
    #[error("{request}: the server refused the user name or password (HTTP 401); use an app password")]
    Unauthorized {
        /// The request.
        request: String,
    },
    /// The server answered with an error status.
    #[error("{request}: HTTP {status}: {message}")]
    Status {
        /// The request.
        request: String,
        /// The HTTP status.
        status: u16,
        /// The server's message (OCS `data.message` or the body's start).
        message: String,
        /// What the status means for this request.
        kind: RemoteErrorKind,
    },
    /// The request did not complete (connection refused, timeout, TLS).
    #[error("{request}: {reason}")]
    Transport {
        /// The request.
        request: String,
        /// What went wrong.
        reason: String,
    },
    /// A local file-system store failed.
    #[error("{request}: {reason}")]
    Local {
        /// The operation and store path.
        request: String,
        /// What the failure means.
        kind: RemoteErrorKind,
        /// The system's message.
        reason: String,
    },
    /// An SFTP server (over SSH) refused or failed an operation, or the connection is gone.
    #[error("{request}: {reason}")]
    Ssh {
        /// The operation and server path.
        request: String,
        /// What the failure means.
        kind: RemoteErrorKind,
        /// The server's message, or what happened to the connection.
        reason: String,
    },
    /// The server's answer does not have the expected shape.
    #[error("{request}: unexpected answer: {reason}")]
    Protocol {
        /// The request.
        request: String,
        /// What is wrong.
        reason: String,
    },
}

impl RemoteError {
    /// An error status of an HTTP answer, of the kind the status stands for in general.
    pub fn http_status(request: impl Into<String>, status: u16, message: impl Into<String>) -> Self {
        Self::Status {
            request: request.into(),
            status,
            message: message.into(),
            kind: RemoteErrorKind::of_http_status(status),
        }
    }

    /// What went wrong, in the engine's terms.
    pub fn kind(&self) -> RemoteErrorKind {
        match self {
            Self::BadUrl(_) => RemoteErrorKind::BadConfiguration,
            Self::Unauthorized { .. } => RemoteErrorKind::Unauthorized,
            Self::Status { kind, .. } | Self::Local { kind, .. } | Self::Ssh { kind, .. } => *kind,
            Self::Transport { .. } => RemoteErrorKind::Unreachable,
            Self::Protocol { .. } => RemoteErrorKind::Protocol,
        }
    }

    /// The same error with the kinds of some statuses replaced: a request that gives a status a more
    /// specific meaning (a 412 answering a lock request is a refused counter) says so here.
    pub fn with_status_kinds(self, specific: impl Fn(u16) -> Option<RemoteErrorKind>) -> Self {
        match self {
            Self::Status { request, status, message, kind } => {
                Self::Status { kind: specific(status).unwrap_or(kind), request, status, message }
            }
            other => other,
        }
    }

    /// The HTTP status, when the server answered with one (for the backend's own use and for messages).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// The server could not be reached or is down: worth waiting for, unlike an answer that refuses or fails
    /// verification.
    pub fn is_unreachable(&self) -> bool {
        self.kind() == RemoteErrorKind::Unreachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_statuses_and_request_specific_meanings() {
        assert_eq!(RemoteError::http_status("GET /x", 404, "").kind(), RemoteErrorKind::NotFound);
        assert_eq!(RemoteError::http_status("PUT /x", 507, "").kind(), RemoteErrorKind::NoSpace);
        assert_eq!(RemoteError::http_status("POST lock", 423, "").kind(), RemoteErrorKind::Locked);
        assert_eq!(RemoteError::http_status("GET /x", 503, "").kind(), RemoteErrorKind::Unreachable);
        assert!(RemoteError::http_status("GET /x", 502, "").is_unreachable());
        assert_eq!(RemoteError::http_status("GET /x", 500, "").kind(), RemoteErrorKind::Failed);
        let refused = RemoteError::http_status("POST lock", 412, "")
            .with_status_kinds(|status| (status == 412).then_some(RemoteErrorKind::CounterRefused));
        assert_eq!(refused.kind(), RemoteErrorKind::CounterRefused);
        assert_eq!(refused.status(), Some(412));
        let other = RemoteError::http_status("POST lock", 423, "")
            .with_status_kinds(|status| (status == 412).then_some(RemoteErrorKind::CounterRefused));
        assert_eq!(other.kind(), RemoteErrorKind::Locked);
        let transport = RemoteError::Transport { request: "GET /x".into(), reason: "refused".into() };
        assert_eq!(transport.kind(), RemoteErrorKind::Unreachable);
    }
}
