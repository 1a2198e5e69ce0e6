//! Engines without a kernel for tests, over both vault formats, as several devices ([`Devices`]):
//! - [`NextcloudDevices`]: a user with keys on a real `cloakfs serve` and its real database — a process
//!   ([`NextcloudDevices::new`]), or the same server run inside the test process on loopback
//!   ([`NextcloudDevices::embedded`], no server process), optionally answering listings late;
//! - [`CryptomatorDevices`]: Cryptomator vaults in a local folder (the local-folder store: no server at
//!   all), optionally listing late.
//!
//! Each device has its own engine (and, for Nextcloud, its own pin file); [`Devices::elsewhere`] changes a
//! case as another device does, with the format's own commands (not a mount).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cloakfs::crypto::{Mnemonic, PrivateIdentity};
use cloakfs::cryptomator::vault::clear_segments;
use cloakfs::cryptomator::{CipherCombo, CryptomatorVault};
use cloakfs::format::cryptomator::CryptomatorFormat;
use cloakfs::format::nextcloud::NextcloudFormat;
use cloakfs::format::Format;
use cloakfs::storage::local::LocalStore;
use cloakfs::storage::{BodyStream, NextcloudClient, RemoteError, ServerConfig, Store, StoreEntry, WriteCondition};
use cloakfs::trust::TrustStore;
use cloakfs::vault::{SessionParts, Vault};
use cloakfs::vfs::{Vfs, VfsOptions};
use zeroize::Zeroizing;

use super::mount::Account;
use super::server::{self, TempDir};

/// The passphrase of the test vaults.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// A change another device makes (paths below the case folder).
#[derive(Debug, Clone)]
pub enum Change {
    /// Writes a file (creating or replacing it).
    Write(Vec<String>, Vec<u8>),
    /// Makes a folder.
    Mkdir(Vec<String>),
    /// Removes a file or a folder with everything in it.
    Remove(Vec<String>),
    /// Renames (replacing a file there).
    Rename(Vec<String>, Vec<String>),
}

/// Engines of one format as several devices, for case folders (each test sequence works in its own).
pub trait Devices {
    /// The format under the engines.
    type Format: Format;
    /// A runtime to drive engines from synchronous tests.
    fn runtime(&self) -> &tokio::runtime::Runtime;
    /// A new, empty case folder.
    async fn new_case(&self, case: &str);
    /// A new engine over case folder `case`, as device `device`.
    async fn engine(&self, device: &str, case: &str) -> Arc<Vfs<Self::Format>>;
    /// `change` made in case `case` by another device.
    async fn elsewhere(&self, case: &str, change: &Change) -> Result<(), String>;
    /// Listings (of any folder, by any device) come this much later from now on.
    fn set_list_delay(&self, delay: Duration);
}

/// A delay that can be changed while it is used (milliseconds).
#[derive(Debug, Clone, Default)]
pub struct Delay(Arc<std::sync::atomic::AtomicU64>);

impl Delay {
    fn set(&self, delay: Duration) {
        self.0.store(delay.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }

    async fn wait(&self) {
        let millis = self.0.load(std::sync::atomic::Ordering::SeqCst);
        if millis > 0 {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
    }
}

/// The engine options of the tests: `dir_cache_time` as given, this device's name.
fn options(device: &str, dir_cache_time: Duration) -> VfsOptions {
    VfsOptions {
        dir_cache_time,
        device: device.to_owned(),
        spill_directory: std::env::temp_dir(),
        ..VfsOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    // RUST_LOG=cloakfs=debug shows the engine's log (storage ids only).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

// ----- Nextcloud -----

/// Where the server runs.
enum Server {
    /// A `cloakfs serve` process with its account (keys made with the CLI).
    Process(Account),
    /// The server in this process; its data folder.
    Embedded(TempDir),
}

/// A user with keys on a real `cloakfs serve`, and engines over its encrypted folders as devices.
pub struct NextcloudDevices {
    server: Server,
    url: String,
    /// Device pin files.
    config: TempDir,
    /// The user's unlocked keys (once: the mnemonic's key derivation is not repeated per device).
    identity_pem: Zeroizing<String>,
    parts: SessionParts,
    /// How long listings are trusted.
    pub dir_cache_time: Duration,
    list_delay: Delay,
    runtime: tokio::runtime::Runtime,
}

impl NextcloudDevices {
    /// A new account (label `label`) on a new `cloakfs serve` process.
    pub fn new(label: &str) -> Self {
        let runtime = runtime();
        let account = Account::new(label);
        let words = std::fs::read_to_string(&account.mnemonic).unwrap();
        let mnemonic = Mnemonic::parse(words.trim()).unwrap();
        let config = TempDir::new(&format!("{label}-devices"));
        let pins = config.0.join("pins.json");
        std::fs::copy(account.config.0.join("cloakfs/pins.json"), &pins).unwrap();
        let url = account.url.clone();
        let session = runtime.block_on(async {
            let mut trust = TrustStore::load(&pins).unwrap();
            cloakfs::session::unlock(client(&url), &mut trust, &mnemonic).await.unwrap()
        });
        let (_, parts) = session.into_parts();
        let identity_pem = parts.identity.to_pkcs8_pem();
        Self {
            server: Server::Process(account),
            url,
            config,
            identity_pem,
            parts,
            dir_cache_time: Duration::from_secs(60),
            list_delay: Delay::default(),
            runtime,
        }
    }

    /// A new account on the server run inside this process (no server process), whose listings (WebDAV
    /// PROPFINDs of depth 1) can be answered late ([`Devices::set_list_delay`]).
    pub fn embedded(label: &str) -> Self {
        let list_delay = Delay::default();
        let runtime = runtime();
        let data = TempDir::new(&format!("{label}-data"));
        let config = TempDir::new(&format!("{label}-devices"));
        let url = runtime.block_on(async {
            let options = cloakfs::server::ServeOptions {
                data_dir: data.0.clone(),
                listen: "127.0.0.1:0".parse().unwrap(),
                lock_ttl_seconds: 86_400,
                quota_bytes: None,
            };
            let state = cloakfs::server::open_state(&options).unwrap();
            state.store.add_user("alice", server::PASSWORD).unwrap();
            let listener = cloakfs::server::bind(options.listen).await.unwrap();
            let address = listener.local_addr().unwrap();
            let held_back = list_delay.clone();
            let delay = move |request: axum::extract::Request, next: axum::middleware::Next| {
                let held_back = held_back.clone();
                async move {
                    let listing = request.method().as_str() == "PROPFIND"
                        && request.headers().get("Depth").is_some_and(|depth| depth.as_bytes() == b"1");
                    let response = next.run(request).await;
                    if listing {
                        held_back.wait().await;
                    }
                    response
                }
            };
            let app = cloakfs::server::router(state).layer(axum::middleware::from_fn(delay));
            tokio::spawn(async move { axum::serve(cloakfs::server::no_delay(listener), app).await });
            format!("http://{address}")
        });
        let pins = config.0.join("pins.json");
        let session = runtime.block_on(async {
            let mut trust = TrustStore::load(&pins).unwrap();
            cloakfs::session::initialize_keys(client(&url), &mut trust).await.unwrap().0
        });
        let (_, parts) = session.into_parts();
        let identity_pem = parts.identity.to_pkcs8_pem();
        Self {
            server: Server::Embedded(data),
            url,
            config,
            identity_pem,
            parts,
            dir_cache_time: Duration::from_secs(60),
            list_delay,
            runtime,
        }
    }

    /// The account of the server process (none for the embedded server).
    pub fn account(&self) -> Option<&Account> {
        match &self.server {
            Server::Process(account) => Some(account),
            Server::Embedded(_) => None,
        }
    }

    /// A vault client as device `device` (its own pin file, copied from the first one).
    pub async fn vault(&self, device: &str) -> Vault<NextcloudClient> {
        let pins = self.config.0.join("pins.json");
        let device_pins = self.config.0.join(format!("pins-{device}.json"));
        if !device_pins.exists() {
            std::fs::copy(&pins, &device_pins).unwrap();
        }
        let trust = TrustStore::load(&device_pins).unwrap();
        let parts = SessionParts {
            user: self.parts.user.clone(),
            server_key: self.parts.server_key.clone(),
            identity: PrivateIdentity::from_pkcs8_pem(&self.identity_pem).unwrap(),
            certificate: self.parts.certificate.clone(),
        };
        Vault::new(client(&self.url), self.url.clone(), parts, trust)
    }
}

fn client(url: &str) -> NextcloudClient {
    NextcloudClient::new(ServerConfig {
        base_url: url::Url::parse(url).unwrap(),
        user: "alice".into(),
        password: Zeroizing::new(server::PASSWORD.to_owned()),
        timeout: Duration::from_secs(20),
        allow_insecure_http: false,
    })
    .unwrap()
}

impl Devices for NextcloudDevices {
    type Format = NextcloudFormat<NextcloudClient>;

    fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// A new encrypted top folder `/{case}` (each sequence has its own, with its own lock: a sequence that
    /// fails while holding its lock cannot hold up the next).
    async fn new_case(&self, case: &str) {
        self.vault("setup").await.create_encrypted_folder(&format!("/{case}")).await.unwrap();
    }

    async fn engine(&self, device: &str, case: &str) -> Arc<Vfs<Self::Format>> {
        let vault = self.vault(device).await;
        let (tree, root) = vault.open_folder(&format!("/{case}")).await.unwrap();
        Arc::new(Vfs::new(NextcloudFormat::new(vault, tree, &root), options(device, self.dir_cache_time)))
    }

    async fn elsewhere(&self, case: &str, change: &Change) -> Result<(), String> {
        let vault = self.vault("elsewhere").await;
        let path = |segments: &[String]| format!("/{case}/{}", segments.join("/"));
        let done = match change {
            Change::Write(to, content) => vault.write_file(&path(to), content).await,
            Change::Mkdir(at) => vault.make_folder(&path(at)).await,
            Change::Remove(at) => vault.remove(&path(at), true).await,
            Change::Rename(from, to) => vault.rename(&path(from), &path(to)).await,
        };
        done.map_err(|error| error.to_string())
    }

    fn set_list_delay(&self, delay: Duration) {
        self.list_delay.set(delay);
    }
}

// ----- Cryptomator -----

/// A store whose listings come late (by the delay set), the rest as it is.
#[derive(Debug, Clone)]
pub struct Delayed<S> {
    inner: S,
    delay: Delay,
}

impl<S: Store> Store for Delayed<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn list(&self, path: &[String]) -> Result<Vec<StoreEntry>, RemoteError> {
        let listed = self.inner.list(path).await;
        self.delay.wait().await;
        listed
    }
    async fn stat(&self, path: &[String]) -> Result<StoreEntry, RemoteError> {
        self.inner.stat(path).await
    }
    async fn read(&self, path: &[String], range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>, RemoteError> {
        self.inner.read(path, range).await
    }
    async fn read_each(
        &self,
        path: &[String],
        on_piece: &mut (dyn FnMut(&[u8]) -> bool + Send),
    ) -> Result<(), RemoteError> {
        self.inner.read_each(path, on_piece).await
    }
    async fn write(
        &self,
        path: &[String],
        body: Bytes,
        condition: WriteCondition,
    ) -> Result<Option<String>, RemoteError> {
        self.inner.write(path, body, condition).await
    }
    async fn write_streamed(
        &self,
        path: &[String],
        length: u64,
        body: &(dyn Fn() -> BodyStream + Send + Sync),
        condition: WriteCondition,
    ) -> Result<Option<String>, RemoteError> {
        self.inner.write_streamed(path, length, body, condition).await
    }
    async fn make_dir(&self, path: &[String]) -> Result<(), RemoteError> {
        self.inner.make_dir(path).await
    }
    async fn make_dir_if_missing(&self, path: &[String]) -> Result<(), RemoteError> {
        self.inner.make_dir_if_missing(path).await
    }
    async fn create_small(&self, path: &[String], body: Bytes) -> Result<(), RemoteError> {
        self.inner.create_small(path, body).await
    }
    async fn rename(&self, from: &[String], to: &[String], overwrite: bool) -> Result<(), RemoteError> {
        self.inner.rename(from, to, overwrite).await
    }
    async fn remove(&self, path: &[String]) -> Result<(), RemoteError> {
        self.inner.remove(path).await
    }
    async fn remove_file(&self, path: &[String]) -> Result<(), RemoteError> {
        self.inner.remove_file(path).await
    }
    async fn remove_emptied_dir(&self, path: &[String]) -> Result<(), RemoteError> {
        self.inner.remove_emptied_dir(path).await
    }
    fn versions_from_writes(&self) -> bool {
        self.inner.versions_from_writes()
    }
    fn renames_keep_versions(&self) -> bool {
        self.inner.renames_keep_versions()
    }
}

/// Cryptomator vaults (one per case) in a store, and engines over them as devices.
pub struct CryptomatorDevices<S: Store + Clone + 'static> {
    /// The store of case folder `case` (which exists: see `prepare`).
    store_of: Box<dyn Fn(&str) -> S>,
    /// Makes case folder `case` in storage.
    prepare: Box<dyn Fn(&str)>,
    list_delay: Delay,
    /// How long listings are trusted.
    pub dir_cache_time: Duration,
    /// The other device's vault of each case (opened once: its passphrase's key derivation is slow).
    others: Mutex<HashMap<String, Arc<CryptomatorVault<S>>>>,
    /// What must live as long as the vaults (a temporary folder, a WebDAV server).
    _keep: Box<dyn std::any::Any>,
    runtime: tokio::runtime::Runtime,
}

impl CryptomatorDevices<LocalStore> {
    /// Vaults in a new temporary folder (the local-folder store: no server).
    pub fn local(label: &str) -> Self {
        let root = TempDir::new(&format!("{label}-vaults"));
        let folder = root.0.clone();
        let stores = folder.clone();
        Self {
            store_of: Box::new(move |case| LocalStore::new(stores.join(case))),
            prepare: Box::new(move |case| std::fs::create_dir_all(folder.join(case)).unwrap()),
            list_delay: Delay::default(),
            dir_cache_time: Duration::from_secs(60),
            others: Mutex::new(HashMap::new()),
            _keep: Box::new(root),
            runtime: runtime(),
        }
    }
}

impl CryptomatorDevices<cloakfs::storage::webdav::DavStore> {
    /// Vaults on a real WebDAV server (`server`, kept running as long as the devices).
    pub fn over_dav(server: super::dav::DavServer) -> Self {
        let url = server.url.clone();
        let root = server.root.clone();
        let apache = server.kind.starts_with("Apache");
        let store_of = move |case: &str| {
            cloakfs::storage::webdav::DavStore::new(cloakfs::storage::webdav::DavConfig {
                url: url::Url::parse(&format!("{url}/{case}/")).unwrap(),
                user: Some(super::dav::DAV_USER.into()),
                password: Zeroizing::new(super::dav::DAV_PASSWORD.into()),
                timeout: Duration::from_secs(20),
                allow_insecure_http: false,
            })
            .unwrap()
        };
        let prepare = move |case: &str| {
            std::fs::create_dir_all(root.join(case)).unwrap();
            if apache {
                super::dav::give_to_apache(&root.join(case));
            }
        };
        Self {
            store_of: Box::new(store_of),
            prepare: Box::new(prepare),
            list_delay: Delay::default(),
            dir_cache_time: Duration::from_secs(60),
            others: Mutex::new(HashMap::new()),
            _keep: Box::new(server),
            runtime: runtime(),
        }
    }
}

impl<S: Store + Clone + 'static> CryptomatorDevices<S> {
    async fn other(&self, case: &str) -> Arc<CryptomatorVault<S>> {
        if let Some(vault) = self.others.lock().unwrap().get(case) {
            return vault.clone();
        }
        let vault = Arc::new(CryptomatorVault::open((self.store_of)(case), PASSPHRASE).await.unwrap());
        self.others.lock().unwrap().insert(case.to_owned(), vault.clone());
        vault
    }
}

impl<S: Store + Clone + 'static> Devices for CryptomatorDevices<S> {
    type Format = CryptomatorFormat<Delayed<S>>;

    fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    async fn new_case(&self, case: &str) {
        (self.prepare)(case);
        CryptomatorVault::create((self.store_of)(case), PASSPHRASE, CipherCombo::SivGcm).await.unwrap();
    }

    async fn engine(&self, device: &str, case: &str) -> Arc<Vfs<Self::Format>> {
        let store = Delayed { inner: (self.store_of)(case), delay: self.list_delay.clone() };
        let vault = CryptomatorVault::open(store, PASSPHRASE).await.unwrap();
        Arc::new(Vfs::new(CryptomatorFormat::new(vault, device.to_owned()), options(device, self.dir_cache_time)))
    }
    async fn elsewhere(&self, case: &str, change: &Change) -> Result<(), String> {
        let vault = self.other(case).await;
        let split = |segments: &[String]| {
            let (name, parent) = segments.split_last().expect("a path below the case folder");
            (clear_segments(&parent.join("/")).unwrap(), name.clone())
        };
        let done = async {
            match change {
                Change::Write(to, content) => {
                    let (parent, name) = split(to);
                    let dir = vault.resolve_dir(&parent).await?;
                    let existing = vault.lookup(&dir, &name).await?;
                    vault.write_file(&dir, &name, content, existing.as_ref()).await.map(|_| ())
                }
                Change::Mkdir(at) => {
                    let (parent, name) = split(at);
                    let dir = vault.resolve_dir(&parent).await?;
                    vault.make_dir(&dir, &name).await.map(|_| ())
                }
                Change::Remove(at) => {
                    let entry = vault.resolve(at).await?.expect("not the root").1;
                    vault.remove(&entry, true).await
                }
                Change::Rename(from, to) => {
                    let entry = vault.resolve(from).await?.expect("not the root").1;
                    let (parent, name) = split(to);
                    let dir = vault.resolve_dir(&parent).await?;
                    vault.rename(&entry, &dir, &name, true).await.map(|_| ())
                }
            }
        };
        done.await.map_err(|error: cloakfs::cryptomator::CryptomatorError| error.to_string())
    }

    fn set_list_delay(&self, delay: Duration) {
        self.list_delay.set(delay);
    }
}
