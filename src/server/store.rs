//! The embedded server's state in SQLite: users and their passwords, the server's signing key, and users'
//! end-to-end encryption keys (certificates and wrapped private keys, both opaque to the server).
//!
//! Every change is one transaction; the database runs in WAL mode with `synchronous=FULL`, so a crash
//! leaves either the old or the new state.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, Connection, OptionalExtension};

use crate::crypto::secret::random_bytes;
use crate::crypto::PrivateIdentity;

/// Current schema version (SQLite `user_version`).
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS app_passwords (
    token_sha256 TEXT PRIMARY KEY NOT NULL,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    label TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS server_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pkcs8 BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS public_keys (
    user TEXT PRIMARY KEY NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    certificate TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS private_keys (
    user TEXT PRIMARY KEY NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    wrapped TEXT NOT NULL
);
-- The file tree of every user. `id` is the file id of the WebDAV and OCS APIs. Inside encrypted folders,
-- writes under a lock are staged by name as on Nextcloud (`x.e2e-to-save`, `x.e2e-to-delete`; see
-- server::tree) until unlock finalizes them.
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    parent INTEGER REFERENCES nodes(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    is_dir INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    etag TEXT NOT NULL,
    mtime INTEGER NOT NULL,
    encrypted INTEGER NOT NULL DEFAULT 0,
    blob TEXT,
    counter INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS nodes_name ON nodes(parent, name);
CREATE UNIQUE INDEX IF NOT EXISTS nodes_root ON nodes(owner) WHERE parent IS NULL;
-- Blob reference checks would otherwise scan every node.
CREATE INDEX IF NOT EXISTS nodes_blob ON nodes(blob) WHERE blob IS NOT NULL;
CREATE TABLE IF NOT EXISTS metadata (
    node INTEGER PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    json TEXT NOT NULL,
    signature TEXT NOT NULL
);
-- Metadata written under a lock; json NULL = deleted. Committed at unlock, dropped at abort. The folders
-- with a row for a token are the ones that lock touched: only their staged changes are finalized.
CREATE TABLE IF NOT EXISTS intermediate_metadata (
    node INTEGER PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    token TEXT NOT NULL,
    json TEXT,
    signature TEXT
);
CREATE TABLE IF NOT EXISTS locks (
    node INTEGER PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    token TEXT NOT NULL UNIQUE,
    counter INTEGER NOT NULL,
    created INTEGER NOT NULL
);
-- User shares (Nextcloud's OCS share API, share type 0): `node` of `owner` appears in `recipient`'s root as
-- `mount_name`. `permissions` uses Nextcloud's bits: 1 read, 2 update, 4 create, 8 delete, 16 share.
CREATE TABLE IF NOT EXISTS shares (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    node INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    recipient TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    permissions INTEGER NOT NULL,
    mount_name TEXT NOT NULL,
    created INTEGER NOT NULL,
    UNIQUE(node, recipient),
    UNIQUE(recipient, mount_name)
);
";

/// Errors of the server's store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database was written by a newer cloakfs.
    #[error("database schema version {0} is newer than this cloakfs understands ({SCHEMA_VERSION})")]
    NewerSchema(i64),
    /// A user name is not acceptable.
    #[error("invalid user name {0:?}: use 1-64 characters from letters, digits, '.', '_', '-', '@'")]
    InvalidUserName(String),
    /// The user exists already.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// The stored server key is unusable.
    #[error("stored server key is unusable: {0}")]
    ServerKey(String),
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
}

/// Schema 2 kept staged writes in columns (`staged_token`, `delete_token`, `move_*`); schema 3 stages by name
/// as Nextcloud does. Open locks are rolled back (as an expired lock would be: staged rows dropped, pending
/// deletions and moves forgotten, intermediate metadata discarded), then the columns and their indexes go.
/// Blob files no row names any more are swept when the server starts.
fn migrate_to_staging_by_name(connection: &Connection) -> Result<(), StoreError> {
    let has_column =
        connection.prepare("SELECT 1 FROM pragma_table_info('nodes') WHERE name = 'staged_token'")?.exists([])?;
    if !has_column {
        return Ok(());
    }
    tracing::info!("migrating the database to schema 3 (open locks are rolled back)");
    connection.execute_batch(
        "BEGIN;
         DELETE FROM locks;
         DELETE FROM intermediate_metadata;
         DELETE FROM nodes WHERE staged_token IS NOT NULL;
         DROP INDEX IF EXISTS nodes_live_name;
         DROP INDEX IF EXISTS nodes_parent_name;
         DROP INDEX IF EXISTS nodes_staged;
         DROP INDEX IF EXISTS nodes_move;
         DROP INDEX IF EXISTS nodes_delete;
         ALTER TABLE nodes DROP COLUMN staged_token;
         ALTER TABLE nodes DROP COLUMN delete_token;
         ALTER TABLE nodes DROP COLUMN move_token;
         ALTER TABLE nodes DROP COLUMN move_parent;
         ALTER TABLE nodes DROP COLUMN move_name;
         COMMIT;",
    )?;
    Ok(())
}

/// The server's database.
pub struct Store {
    connection: Mutex<Connection>,
}

/// Whether `name` is acceptable as a user id (it appears in URLs and certificates).
pub fn is_valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'@'))
        && name != "."
        && name != ".."
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::DataDir { path: data_dir.to_owned(), source })?;
        let connection = Connection::open(data_dir.join("cloakfs-server.sqlite3"))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement is prepared through this cache: parsing SQL cost a quarter of the server's CPU.
        connection.set_prepared_statement_cache_capacity(128);
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema(version));
        }
        if (1..3).contains(&version) {
            migrate_to_staging_by_name(&connection)?;
        }
        connection.execute_batch(SCHEMA)?;
        connection.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self { connection: Mutex::new(connection) })
    }

    /// The connection, for one operation at a time (tree operations live in `server::tree`).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back).
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a user with an Argon2id password hash.
    pub fn add_user(&self, name: &str, password: &str) -> Result<(), StoreError> {
        if !is_valid_user_name(name) {
            return Err(StoreError::InvalidUserName(name.to_owned()));
        }
        let hash = hash_password(password)?;
        let connection = self.lock();
        let inserted = connection
            .prepare_cached("INSERT OR IGNORE INTO users(name, password_hash) VALUES (?1, ?2)")?
            .execute(params![name, hash])?;
        if inserted == 0 {
            return Err(StoreError::UserExists(name.to_owned()));
        }
        Ok(())
    }

    /// Whether the user exists.
    pub fn user_exists(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .query_row("SELECT 1 FROM users WHERE name = ?1", params![name], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Checks a login: the user's password (Argon2id) or one of the user's app passwords.
    pub fn authenticate(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        let (stored, app_password_owner) = {
            let connection = self.lock();
            let stored: Option<String> = connection
                .prepare_cached("SELECT password_hash FROM users WHERE name = ?1")?
                .query_row(params![name], |row| row.get(0))
                .optional()?;
            let owner: Option<String> = connection
                .prepare_cached("SELECT user FROM app_passwords WHERE token_sha256 = ?1")?
                .query_row(params![sha256_hex(password.as_bytes())], |row| row.get(0))
                .optional()?;
            (stored, owner)
        };
        if app_password_owner.as_deref() == Some(name) {
            return Ok(true);
        }
        let Some(stored) = stored else { return Ok(false) };
        let Ok(parsed) = PasswordHash::new(&stored) else { return Ok(false) };
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    }

    /// Creates an app password for `user` and returns it (shown once; only its SHA-256 is stored).
    pub fn create_app_password(&self, user: &str, label: &str) -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        random_bytes(&mut bytes);
        let token = hex::encode(bytes);
        self.lock().execute(
            "INSERT INTO app_passwords(token_sha256, user, label) VALUES (?1, ?2, ?3)",
            params![sha256_hex(token.as_bytes()), user, label],
        )?;
        Ok(token)
    }

    /// The server's RSA key, generated and stored on first use.
    pub fn server_identity(&self) -> Result<PrivateIdentity, StoreError> {
        let connection = self.lock();
        let existing: Option<Vec<u8>> = connection
            .prepare_cached("SELECT pkcs8 FROM server_key WHERE id = 1")?
            .query_row([], |row| row.get(0))
            .optional()?;
        let pkcs8 = match existing {
            Some(pkcs8) => zeroize::Zeroizing::new(pkcs8),
            None => {
                let identity = PrivateIdentity::generate().map_err(|error| StoreError::ServerKey(error.to_string()))?;
                let pem = identity.to_pkcs8_pem();
                let (_, der) =
                    der::pem::decode_vec(pem.as_bytes()).map_err(|error| StoreError::ServerKey(error.to_string()))?;
                connection.prepare_cached("INSERT INTO server_key(id, pkcs8) VALUES (1, ?1)")?.execute(params![der])?;
                zeroize::Zeroizing::new(der)
            }
        };
        PrivateIdentity::from_pkcs8_der(&pkcs8).map_err(|error| StoreError::ServerKey(error.to_string()))
    }

    /// A user's certificate (PEM), if any.
    pub fn certificate(&self, user: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .query_row("SELECT certificate FROM public_keys WHERE user = ?1", params![user], |row| row.get(0))
            .optional()?)
    }

    /// Stores a user's certificate; `false` if the user has one already.
    pub fn insert_certificate(&self, user: &str, certificate_pem: &str) -> Result<bool, StoreError> {
        let inserted = self.lock().execute(
            "INSERT OR IGNORE INTO public_keys(user, certificate) VALUES (?1, ?2)",
            params![user, certificate_pem],
        )?;
        Ok(inserted == 1)
    }

    /// A user's wrapped private key, if any.
    pub fn wrapped_private_key(&self, user: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .query_row("SELECT wrapped FROM private_keys WHERE user = ?1", params![user], |row| row.get(0))
            .optional()?)
    }

    /// Stores a user's wrapped private key; `false` if the user has one already.
    pub fn insert_wrapped_private_key(&self, user: &str, wrapped: &str) -> Result<bool, StoreError> {
        let inserted = self
            .lock()
            .execute("INSERT OR IGNORE INTO private_keys(user, wrapped) VALUES (?1, ?2)", params![user, wrapped])?;
        Ok(inserted == 1)
    }
}

fn hash_password(password: &str) -> Result<String, StoreError> {
    let mut salt = [0u8; 16];
    random_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|error| StoreError::PasswordHash(error.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| StoreError::PasswordHash(error.to_string()))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}
