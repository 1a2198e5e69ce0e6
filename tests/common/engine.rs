//! Engines without a kernel for tests: a user with keys on a real `cloakfs serve` and [`Core`]s over one
//! of its encrypted folders, as several devices (each with its own pin file).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use cloakfs::crypto::Mnemonic;
use cloakfs::mount::core::{Core, CoreOptions};
use cloakfs::storage::{NextcloudClient, ServerConfig};
use cloakfs::trust::TrustStore;
use cloakfs::vault::Vault;
use zeroize::Zeroizing;

use super::mount::Account;
use super::server;

/// An engine as the tests hold it.
pub type Engine = Arc<Core<NextcloudClient>>;

/// How to build engines for one account.
pub struct Harness {
    /// The account on its server.
    pub account: Account,
    /// The account's mnemonic.
    pub mnemonic: Mnemonic,
    /// A runtime to drive engines from synchronous tests.
    pub runtime: tokio::runtime::Runtime,
}

impl Harness {
    /// A new account (label `label`) on a new server.
    pub fn new(label: &str) -> Self {
        // RUST_LOG=cloakfs=debug shows the engine's log (server-side names only).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let account = Account::new(label);
        let words = std::fs::read_to_string(&account.mnemonic).unwrap();
        let mnemonic = Mnemonic::parse(words.trim()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Self { account, mnemonic, runtime }
    }

    /// A vault client as device `device` (its own pin file, copied from the account's).
    pub async fn vault(&self, device: &str) -> Vault<NextcloudClient> {
        let client = NextcloudClient::new(ServerConfig {
            base_url: url::Url::parse(&self.account.url).unwrap(),
            user: self.account.user.clone(),
            password: Zeroizing::new(server::PASSWORD.to_owned()),
            timeout: Duration::from_secs(20),
            allow_insecure_http: false,
        })
        .unwrap();
        let pins = self.account.config.0.join("cloakfs/pins.json");
        let device_pins = self.account.config.0.join(format!("pins-{device}.json"));
        if !device_pins.exists() {
            std::fs::copy(&pins, &device_pins).unwrap();
        }
        let mut trust = TrustStore::load(&device_pins).unwrap();
        let session = cloakfs::session::unlock(client, &mut trust, &self.mnemonic).await.unwrap();
        let (client, parts) = session.into_parts();
        Vault::new(client, self.account.url.clone(), parts, trust)
    }

    /// A new engine over the encrypted folder `/{case}`, as device `device`.
    pub async fn engine(&self, device: &str, case: &str) -> Engine {
        let vault = self.vault(device).await;
        let (tree, root) = vault.open_folder(&format!("/{case}")).await.unwrap();
        let options = CoreOptions {
            dir_cache_time: Duration::from_secs(60),
            device: device.to_owned(),
            spill_directory: std::env::temp_dir(),
            ..CoreOptions::default()
        };
        Arc::new(Core::new(vault, tree, root, options))
    }

    /// A new encrypted top folder `/{case}` (each sequence has its own, with its own lock: a sequence that
    /// fails while holding its lock cannot hold up the next).
    pub async fn new_case(&self, case: &str) {
        self.vault("setup").await.create_encrypted_folder(&format!("/{case}")).await.unwrap();
    }
}
