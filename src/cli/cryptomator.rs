//! `cloakfs vault …`: Cryptomator vaults (format 8) on any WebDAV server or in a local folder: create one,
//! show what it is, and the file commands ls, get, put, rm, mv and mkdir inside it. LOCATION is the vault's
//! own folder: `https://host/dav/path/Vault` or a local path; PATH is a clear path inside the vault.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::common::runtime;
use super::files::{create_output, human_size, read_plaintext};
use super::ssh::SshArgs;
use crate::cryptomator::vault::{clear_segments, ClearText, Written};
use crate::cryptomator::{CipherCombo, CryptomatorError, CryptomatorVault, EntryKind};
use crate::storage::local::LocalStore;
use crate::storage::sftp::SftpLocation;
use crate::storage::webdav::{DavConfig, DavStore};
use crate::storage::{is_url, AnyStore, Store as _};

/// Where a Cryptomator vault is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct LocationArgs {
    /// The vault's folder: https://host/dav/path/Vault (http only to this machine), sftp://user@host[:port]/path
    /// (/~/path: below the login folder), or a local folder.
    pub location: String,
    /// The WebDAV user (Basic authentication; the password from CLOAKFS_PASSWORD or a prompt).
    #[arg(long, env = "CLOAKFS_DAV_USER")]
    pub user: Option<String>,
    /// Permit plain http to a host that is not this machine (the password and ciphertext travel unprotected).
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Timeout of each request, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// SSH options for sftp:// locations.
    #[command(flatten)]
    pub ssh: SshArgs,
}

impl LocationArgs {
    /// The store the location names (asking for the WebDAV password if a user is given; for sftp://,
    /// connecting and logging in).
    pub fn store(&self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<AnyStore> {
        if SftpLocation::is_sftp(&self.location) {
            let location = SftpLocation::parse(&self.location).map_err(anyhow::Error::msg)?;
            let timeout = Duration::from_secs(self.timeout.max(1));
            let store = self.ssh.connect(&location, self.user.as_deref(), timeout, runtime)?;
            return Ok(AnyStore::Sftp(std::sync::Arc::new(store)));
        }
        if !is_url(&self.location) {
            let root = PathBuf::from(&self.location);
            if !root.is_dir() {
                bail!("{} is not a folder (give the vault's folder, or an https:// URL)", root.display());
            }
            return Ok(AnyStore::Local(LocalStore::new(root)));
        }
        let url = url::Url::parse(&self.location).with_context(|| format!("invalid URL {:?}", self.location))?;
        let password = match &self.user {
            None => Zeroizing::new(String::new()),
            Some(user) => match std::env::var("CLOAKFS_PASSWORD") {
                Ok(password) => Zeroizing::new(password),
                Err(_) => Zeroizing::new(
                    rpassword::prompt_password(format!("password for {user} at {}: ", url.host_str().unwrap_or("?")))
                        .context("reading the password")?,
                ),
            },
        };
        let config = DavConfig {
            url,
            user: self.user.clone(),
            password,
            timeout: Duration::from_secs(self.timeout.max(1)),
            allow_insecure_http: self.allow_insecure_http,
        };
        Ok(AnyStore::Dav(DavStore::new(config)?))
    }
}

/// The vault passphrase: CLOAKFS_PASSPHRASE (scripts), else a prompt without echo.
pub fn passphrase(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    Ok(match std::env::var("CLOAKFS_PASSPHRASE") {
        Ok(passphrase) => Zeroizing::new(passphrase),
        Err(_) => Zeroizing::new(rpassword::prompt_password(prompt).context("reading the passphrase")?),
    })
}

/// Cipher combinations a new vault may use.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ComboArg {
    /// AES-GCM (Cryptomator's default since 1.6).
    SivGcm,
    /// AES-CTR with HMAC-SHA256 (as vaults made before 1.6).
    SivCtrmac,
}

/// The `vault` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VaultCommand {
    /// Create a new Cryptomator vault (format 8) in an empty folder (a URL or a local folder).
    Create {
        /// Where.
        #[command(flatten)]
        location: LocationArgs,
        /// The content encryption.
        #[arg(long, value_enum, default_value = "siv-gcm")]
        cipher: ComboArg,
    },
    /// Unlock a vault and show its format and settings.
    Info {
        /// Where.
        #[command(flatten)]
        location: LocationArgs,
    },
    /// List a folder of the vault by clear names.
    Ls {
        /// Where.
        #[command(flatten)]
        location: LocationArgs,
        /// The folder (default: the vault's root).
        #[arg(default_value = "/")]
        path: String,
    },
    /// Download, authenticate and decrypt a file to LOCAL ('-' for stdout; default: its name here).
    Get {
        /// Where.
        #[command(flatten)]
        location: LocationArgs,
        /// The file in the vault.
        path: String,
        /// Where to write the plaintext.
        local: Option<PathBuf>,
        /// Replace LOCAL if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Encrypt a local file ('-' for stdin) and store it at PATH (into PATH if it is a folder or ends in '/').
    Put {
        /// Where.
        #[command(flatten)]
        location: LocationArgs,
        /// The local file.
        local: PathBuf,
        /// The destination in the vault.
        path: String,
    },
    /// Remove a file, or a folder (empty, or with -r everything in it).
    Rm {
        /// Where.
        #[command(flatten)]
        location: LocationArgs,
        /// The file or folder.
        path: String,
        /// Remove a folder and everything in it.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Rename or move a file or folder (into TO if TO is a folder).
    Mv {
        /// Where.
        #[command(flatten)]
        location: LocationArgs,
        /// The source.
        from: String,
        /// The destination.
        to: String,
    },
    /// Create a folder.
    Mkdir {
        /// Where.
        #[command(flatten)]
        location: LocationArgs,
        /// The folder.
        path: String,
    },
}

fn open(location: &LocationArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<CryptomatorVault<AnyStore>> {
    let store = location.store(runtime)?;
    let passphrase = passphrase("vault passphrase: ")?;
    let vault = runtime
        .block_on(CryptomatorVault::open(store, &passphrase))
        .with_context(|| format!("opening the vault at {}", location.location))?;
    Ok(vault)
}

/// Streams a file of the vault to `local` (default: its name here; `-`: stdout) a window at a time: every
/// byte written has been authenticated (per chunk), and a file that fails part-way is removed, not left
/// half written. The plaintext never sits in RAM whole.
async fn download(
    vault: &CryptomatorVault<AnyStore>,
    segments: &[String],
    local: Option<PathBuf>,
    force: bool,
) -> anyhow::Result<()> {
    const PIECE: usize = 1 << 20;
    let (_, entry) = vault.resolve(segments).await?.ok_or_else(|| CryptomatorError::IsADirectory("/".into()))?;
    let mut reader = vault.open_reader(&entry).await?;
    let local = local.unwrap_or_else(|| PathBuf::from(&entry.name));
    let to_stdout = local.as_os_str() == "-";
    let mut output: Box<dyn std::io::Write> =
        if to_stdout { Box::new(std::io::stdout().lock()) } else { Box::new(create_output(&local, force)?) };
    let mut offset = 0;
    let outcome: anyhow::Result<()> = async {
        while offset < reader.size {
            let piece = vault.read_at(&mut reader, offset, PIECE).await?;
            output.write_all(&piece)?;
            offset += piece.len() as u64;
        }
        output.flush()?;
        Ok(())
    }
    .await;
    drop(output);
    if let Err(error) = outcome {
        if !to_stdout {
            let _ = std::fs::remove_file(&local);
        }
        return Err(error.context(if to_stdout {
            format!("stopped after {offset} bytes (what was written to stdout is authenticated, but incomplete)")
        } else {
            format!("{} was removed", local.display())
        }));
    }
    if !to_stdout {
        eprintln!("{offset} bytes written to {}", local.display());
    }
    Ok(())
}

/// Runs a `vault` subcommand.
pub fn run(command: VaultCommand) -> anyhow::Result<()> {
    let runtime = runtime()?;
    match command {
        VaultCommand::Create { location, cipher } => {
            let store = location.store(&runtime)?;
            let first = passphrase("new vault passphrase: ")?;
            if std::env::var_os("CLOAKFS_PASSPHRASE").is_none() {
                let again = passphrase("the same passphrase again: ")?;
                if *again != *first {
                    bail!("the two passphrases differ; nothing was created");
                }
            }
            if first.chars().count() < 8 {
                bail!("the passphrase is shorter than 8 characters; nothing was created");
            }
            let combo = match cipher {
                ComboArg::SivGcm => CipherCombo::SivGcm,
                ComboArg::SivCtrmac => CipherCombo::SivCtrMac,
            };
            let vault = runtime
                .block_on(async {
                    // The vault's own folder is made if only it is missing.
                    if let Err(missing) = store.stat(&[]).await {
                        if missing.kind() == crate::storage::RemoteErrorKind::NotFound {
                            store.make_dir(&[]).await?;
                        }
                    }
                    CryptomatorVault::create(store, &first, combo).await
                })
                .with_context(|| format!("creating a vault at {}", location.location))?;
            eprintln!(
                "created a Cryptomator vault (format 8, {}) at {}; keep the passphrase safe: nothing can recover it",
                vault.config().cipher_combo.name(),
                location.location
            );
        }
        VaultCommand::Info { location } => {
            let vault = open(&location, &runtime)?;
            let config = vault.config();
            println!("vault:     {}", location.location);
            println!("format:    8 (Cryptomator 1.6 and later)");
            println!("cipher:    {}", config.cipher_combo.name());
            println!("id:        {}", config.id);
            println!("long names shortened above {} characters", config.shortening_threshold);
        }
        VaultCommand::Ls { location, path } => {
            let vault = open(&location, &runtime)?;
            let segments = clear_segments(&path)?;
            let (entries, problems) = runtime
                .block_on(async {
                    let dir = vault.resolve_dir(&segments).await?;
                    vault.list(&dir).await
                })
                .with_context(|| format!("ls {path}"))?;
            let mut stdout = std::io::stdout().lock();
            for entry in &entries {
                let (kind, slash) = match entry.kind {
                    EntryKind::Dir => ("d", "/"),
                    EntryKind::File => ("-", ""),
                    EntryKind::Symlink => ("l", ""),
                };
                let size = if entry.kind == EntryKind::Dir { "-".into() } else { human_size(entry.size) };
                let modified = entry.modified.map(httpdate::fmt_http_date).unwrap_or_else(|| "-".into());
                writeln!(stdout, "{kind} {size:>8}  {modified}  {}{slash}", entry.name)?;
            }
            for problem in &problems {
                eprintln!("cloakfs: left out: {problem}");
            }
            if !problems.is_empty() {
                bail!("{} entry(ies) of {path} could not be read (see above)", problems.len());
            }
        }
        VaultCommand::Get { location, path, local, force } => {
            let vault = open(&location, &runtime)?;
            let segments = clear_segments(&path)?;
            runtime.block_on(download(&vault, &segments, local, force)).with_context(|| format!("get {path}"))?;
        }
        VaultCommand::Put { location, local, path } => {
            let plaintext = read_plaintext(&local)?;
            let local_name = local.file_name().and_then(|name| name.to_str()).unwrap_or("upload").to_owned();
            let vault = open(&location, &runtime)?;
            let mut segments = clear_segments(&path)?;
            let written = runtime
                .block_on(async {
                    let is_folder = |found: Result<Option<(_, crate::cryptomator::VaultEntry)>, _>| {
                        matches!(found, Ok(Some((_, entry))) if entry.kind == EntryKind::Dir)
                    };
                    let into_folder =
                        path.ends_with('/') || segments.is_empty() || is_folder(vault.resolve(&segments).await);
                    if into_folder {
                        segments.push(local_name.clone());
                    }
                    let (name, parent_segments) = segments.split_last().expect("at least one name");
                    let parent = vault.resolve_dir(parent_segments).await?;
                    let existing = vault.lookup(&parent, name).await?;
                    let device = crate::conflict::default_device_name();
                    let written = vault.write_file_keeping_both(&parent, name, ClearText::Bytes(&plaintext), existing.as_ref(), &device).await?;
                    let parent_path = &segments[..segments.len() - 1];
                    Ok::<_, CryptomatorError>(match written {
                        Written::AsAsked(_) => format!("/{}", segments.join("/")),
                        Written::ConflictedCopy(copy) => {
                            eprintln!(
                                "cloakfs: /{} was changed by another writer meanwhile: yours is kept beside it",
                                segments.join("/")
                            );
                            format!("/{}", parent_path.iter().chain([&copy.name]).cloned().collect::<Vec<_>>().join("/"))
                        }
                    })
                })
                .with_context(|| format!("put {path}"))?;
            eprintln!("{} bytes encrypted and stored as {written}", plaintext.len());
        }
        VaultCommand::Rm { location, path, recursive } => {
            let vault = open(&location, &runtime)?;
            let segments = clear_segments(&path)?;
            runtime
                .block_on(async {
                    let (_, entry) =
                        vault.resolve(&segments).await?.ok_or(CryptomatorError::InvalidName("/".into()))?;
                    vault.remove(&entry, recursive).await
                })
                .with_context(|| format!("rm {path}"))?;
        }
        VaultCommand::Mv { location, from, to } => {
            let vault = open(&location, &runtime)?;
            let (source, mut target) = (clear_segments(&from)?, clear_segments(&to)?);
            runtime
                .block_on(async {
                    let (_, entry) = vault.resolve(&source).await?.ok_or(CryptomatorError::InvalidName("/".into()))?;
                    if entry.kind == EntryKind::Dir && target.len() > source.len() && target.starts_with(&source) {
                        return Err(CryptomatorError::IntoItself(from.clone()));
                    }
                    let into_folder = target.is_empty()
                        || matches!(vault.resolve(&target).await, Ok(Some((_, existing))) if existing.kind == EntryKind::Dir && existing.node != entry.node);
                    if into_folder {
                        target.push(entry.name.clone());
                    }
                    let (name, parent_segments) = target.split_last().expect("at least one name");
                    let parent = vault.resolve_dir(parent_segments).await?;
                    vault.rename(&entry, &parent, name, true).await
                })
                .with_context(|| format!("mv {from} {to}"))?;
        }
        VaultCommand::Mkdir { location, path } => {
            let vault = open(&location, &runtime)?;
            let segments = clear_segments(&path)?;
            runtime
                .block_on(async {
                    let (name, parent_segments) = segments.split_last().ok_or(CryptomatorError::Exists("/".into()))?;
                    let parent = vault.resolve_dir(parent_segments).await?;
                    vault.make_dir(&parent, name).await
                })
                .with_context(|| format!("mkdir {path}"))?;
        }
    }
    Ok(())
}
