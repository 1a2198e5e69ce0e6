//! What several subcommands share: server connection options, the password and the mnemonic.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use crate::crypto::Mnemonic;
use crate::storage::{NextcloudClient, ServerConfig};
use crate::trust::{default_pin_path, TrustStore};

/// How to reach the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// The server's URL, e.g. https://cloud.example.org (http only to loopback, or with --allow-insecure-http).
    #[arg(long, env = "CLOAKFS_SERVER", value_parser = parse_server_url)]
    pub server: String,
    /// The user id.
    #[arg(long, env = "CLOAKFS_USER")]
    pub user: String,
    /// Permit plain http to a non-loopback host (the password and all metadata travel unprotected).
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Timeout of each request, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// The pin file for trust on first use (default: $XDG_CONFIG_HOME/cloakfs/pins.json).
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
}

impl ConnectionArgs {
    /// The app password: CLOAKFS_PASSWORD (scripts), else the OS keyring (after `cloakfs login`), else a
    /// prompt without echo.
    pub fn password(&self) -> anyhow::Result<Zeroizing<String>> {
        self.password_from(true)
    }

    /// Like [`Self::password`]; with `use_keyring` false (travel) the OS keyring is not consulted.
    pub fn password_from(&self, use_keyring: bool) -> anyhow::Result<Zeroizing<String>> {
        let stored = || if use_keyring { super::credentials::load(&self.server, &self.user) } else { None };
        Ok(match std::env::var("CLOAKFS_PASSWORD") {
            Ok(password) => Zeroizing::new(password),
            Err(_) => match stored() {
                Some(password) => password,
                None => Zeroizing::new(
                    rpassword::prompt_password(format!("app password for {} on {}: ", self.user, self.server))
                        .context("reading the password")?,
                ),
            },
        })
    }

    /// A client for the server, with the password from [`Self::password`].
    pub fn client(&self) -> anyhow::Result<NextcloudClient> {
        self.client_with(self.password()?)
    }

    /// A client for the server with `password`.
    pub fn client_with(&self, password: Zeroizing<String>) -> anyhow::Result<NextcloudClient> {
        let base_url =
            url::Url::parse(&self.server).with_context(|| format!("invalid server URL {:?}", self.server))?;
        let config = ServerConfig {
            base_url,
            user: self.user.clone(),
            password,
            timeout: Duration::from_secs(self.timeout.max(1)),
            allow_insecure_http: self.allow_insecure_http,
        };
        Ok(NextcloudClient::new(config)?)
    }

    /// The trust-on-first-use pin store.
    pub fn trust_store(&self) -> anyhow::Result<TrustStore> {
        Ok(TrustStore::load(&pin_path(self.pin_file.as_deref())?)?)
    }
}

/// The pin file: `explicit`, else `$XDG_CONFIG_HOME/cloakfs/pins.json`.
pub fn pin_path(explicit: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(path) => Ok(path.to_owned()),
        None => default_pin_path().context("no home directory: give --pin-file"),
    }
}

/// Where the mnemonic comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct MnemonicArgs {
    /// Read the 12 words from this file (for scripts; keep it off shared disks). Else CLOAKFS_MNEMONIC,
    /// else a prompt without echo.
    #[arg(long, value_name = "FILE")]
    pub mnemonic_file: Option<PathBuf>,
}

impl MnemonicArgs {
    /// Reads and parses the mnemonic.
    pub fn read(&self) -> anyhow::Result<Mnemonic> {
        parse_mnemonic(&self.read_text()?)
    }

    /// Reads the mnemonic's text (file, CLOAKFS_MNEMONIC, or a prompt), unparsed.
    pub fn read_text(&self) -> anyhow::Result<Zeroizing<String>> {
        Ok(if let Some(path) = &self.mnemonic_file {
            Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the mnemonic file {}", path.display()))?,
            )
        } else if let Ok(text) = std::env::var("CLOAKFS_MNEMONIC") {
            Zeroizing::new(text)
        } else {
            Zeroizing::new(rpassword::prompt_password("mnemonic (12 words): ").context("reading the mnemonic")?)
        })
    }
}

/// Checks `--server` before anything else is asked for: an absolute http(s) URL without credentials.
fn parse_server_url(text: &str) -> Result<String, String> {
    let url =
        url::Url::parse(text).map_err(|error| format!("not a server URL ({error}); e.g. https://cloud.example.org"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err("the server URL must start with https:// (or http:// for a server on this machine)".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("do not put credentials in the server URL: use --user and an app password".into());
    }
    Ok(text.to_owned())
}

/// Parses a mnemonic's text.
pub fn parse_mnemonic(text: &str) -> anyhow::Result<Mnemonic> {
    if text.trim().is_empty() {
        bail!("the mnemonic is empty");
    }
    Ok(Mnemonic::parse(text)?)
}

/// A runtime for the asynchronous parts of a command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}
