//! `cloakfs serve`: an embedded server that speaks Nextcloud's end-to-end encryption API.
//!
//! Users (Argon2id passwords, app passwords, session cookies: [`session`]), the server's signing key, the OCS keys API ([`ocs`]), the
//! folder API (encrypted flag, locks, metadata; [`e2ee`], [`locking`]) and WebDAV ([`dav`]) over a file tree
//! kept in SQLite with blobs as files ([`tree`], [`blobs`], [`store`]).

pub mod blobs;
pub mod dav;
pub mod e2ee;
pub mod error;
pub mod locking;
pub mod login;
pub mod ocs;
pub mod session;
pub mod shares;
pub mod store;
pub mod tree;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::crypto::PrivateIdentity;
use store::{Store, StoreError};

/// Base path of the end-to-end encryption OCS API.
pub const OCS_E2EE_BASE: &str = "/ocs/v2.php/apps/end_to_end_encryption/api";

/// Largest request body accepted by the OCS API.
pub const MAX_OCS_BODY: usize = 64 << 20;

/// State shared by all requests.
pub struct ServerState {
    /// The database.
    pub store: Store,
    /// The server's RSA key: signs users' certificate requests.
    pub server_identity: PrivateIdentity,
    /// The blob files.
    pub blobs: blobs::BlobDir,
    /// Locks older than this are rolled back (Nextcloud: 24 hours).
    pub lock_ttl_seconds: i64,
    /// Bytes of file content each user may store (`None`: no limit); an upload beyond it is 507.
    pub quota_bytes: Option<u64>,
    /// Login Flow v2 sessions in progress.
    pub logins: login::LoginFlows,
    /// Session cookies handed out after a password check (in memory only).
    pub sessions: session::Sessions,
}

/// Shared handle to the server state.
pub type Shared = Arc<ServerState>;

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listening socket could not be bound or served.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where and what to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The data directory (database and blobs).
    pub data_dir: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Locks older than this many seconds are rolled back.
    pub lock_ttl_seconds: i64,
    /// Bytes of file content each user may store (`None`: no limit).
    pub quota_bytes: Option<u64>,
}

/// The HTTP routes of the server.
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(ocs::routes())
        .merge(e2ee::routes())
        .merge(shares::routes())
        .merge(dav::routes())
        .merge(login::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), session::authenticate))
        .layer(axum::middleware::from_fn(log_request))
        .layer(DefaultBodyLimit::max(MAX_OCS_BODY))
        .with_state(state)
}

/// Logs every request at debug level (method, path, status, time): paths hold only server-side names
/// (random ids) below the user's top folders, never clear names.
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::debug!(target: "cloakfs::server::request", %method, %path, status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64, "request");
    response
}

/// Opens the data directory (database, blobs; sweeping orphaned blobs) and builds the server state.
pub fn open_state(options: &ServeOptions) -> Result<Shared, ServeError> {
    let store = Store::open(&options.data_dir)?;
    let server_identity = store.server_identity()?;
    let blobs = blobs::BlobDir::open(&options.data_dir)
        .map_err(|source| StoreError::DataDir { path: options.data_dir.clone(), source })?;
    let swept =
        blobs.sweep(&store.lock()).map_err(|source| StoreError::DataDir { path: options.data_dir.clone(), source })?;
    if swept > 0 {
        tracing::info!(swept, "removed blob files left by an interrupted upload");
    }
    Ok(Arc::new(ServerState {
        store,
        server_identity,
        blobs,
        lock_ttl_seconds: options.lock_ttl_seconds,
        quota_bytes: options.quota_bytes,
        logins: login::LoginFlows::default(),
        sessions: session::Sessions::default(),
    }))
}

/// Binds the listening socket.
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(listen).await.map_err(|source| ServeError::Listen { address: listen, source })
}

/// `listener` with TCP_NODELAY on every connection: without it a small answer written in two pieces waits
/// for the client's delayed ACK (40 ms per request on loopback).
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    fn set(stream: &mut tokio::net::TcpStream) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    }
    axum::serve::ListenerExt::tap_io(listener, set as fn(&mut tokio::net::TcpStream))
}

/// Runs the server until Ctrl-C / SIGTERM. Prints `listening on http://ADDRESS` on stdout once ready.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let state = open_state(&options)?;
    let listener = bind(options.listen).await?;
    let address = listener.local_addr().map_err(|source| ServeError::Listen { address: options.listen, source })?;
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "listening on a non-loopback address: put TLS in front of cloakfs serve");
    }
    println!("listening on http://{address}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    axum::serve(no_delay(listener), router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| ServeError::Listen { address, source })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
