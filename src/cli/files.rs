//! File commands over an encrypted folder: `ls`, `get`, `put`, `rm`, `mv`, `mkdir [--encrypted]`. Paths are
//! clear paths from the user's root, e.g. `/Vault/docs/report.pdf`; `/Vault` is the encrypted top folder.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::common::{runtime, ConnectionArgs, MnemonicArgs};
use super::progress::ProgressLine;
use crate::session::unlock;
use crate::storage::NextcloudClient;
use crate::vault::{Vault, VaultError};

/// The server, user and mnemonic of a file command.
#[derive(Debug, Clone, clap::Args)]
pub struct VaultArgs {
    /// The server and user.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The mnemonic.
    #[command(flatten)]
    pub mnemonic: MnemonicArgs,
}

/// The file commands.
#[derive(Debug, clap::Subcommand)]
pub enum FileCommand {
    /// List a folder: clear names inside encrypted folders; outside, plain entries with encrypted folders marked.
    Ls {
        /// The folder, e.g. /Vault/docs (default: the root).
        #[arg(default_value = "/")]
        path: String,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Download, verify and decrypt a file to LOCAL ('-' for stdout; default: its name in the current folder).
    Get {
        /// The file, e.g. /Vault/docs/report.pdf.
        path: String,
        /// Where to write the plaintext.
        local: Option<PathBuf>,
        /// Replace LOCAL if it exists.
        #[arg(long)]
        force: bool,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Encrypt a local file with a fresh key and upload it (into PATH if PATH is a folder or ends in '/').
    Put {
        /// The local file ('-' for stdin).
        local: PathBuf,
        /// The destination, e.g. /Vault/docs/ or /Vault/docs/report.pdf.
        path: String,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Remove a file, or a folder (empty, or with -r everything in it).
    Rm {
        /// The file or folder.
        path: String,
        /// Remove a folder and everything in it.
        #[arg(short, long)]
        recursive: bool,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Rename or move a file or folder within its encrypted folder (into TO if TO is a folder).
    Mv {
        /// The source.
        from: String,
        /// The destination.
        to: String,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Check an encrypted folder: every entry its metadata names exists on the server, and every blob or
    /// folder on the server is named (orphans are left by clients that crashed before committing).
    Fsck {
        /// The encrypted folder, e.g. /Vault.
        path: String,
        /// Remove orphans (under the folder's lock, after checking again under it).
        #[arg(long)]
        repair: bool,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Create a folder: with --encrypted a new end-to-end encrypted top folder, else a sub-folder of one.
    Mkdir {
        /// The folder, e.g. /Vault (with --encrypted) or /Vault/docs.
        path: String,
        /// Create a new end-to-end encrypted folder (outside any encrypted folder).
        #[arg(long)]
        encrypted: bool,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
}

/// Unlocks the keys and opens the vault of a file or sharing command.
pub(super) fn open(args: &VaultArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vault<NextcloudClient>> {
    // The connection first: a bad URL is reported before anything secret is asked for.
    let client = args.connection.client()?;
    let mnemonic = args.mnemonic.read()?;
    let mut trust = args.connection.trust_store()?;
    let session = runtime.block_on(unlock(client, &mut trust, &mnemonic))?;
    let (client, parts) = session.into_parts();
    let server = args.connection.server.trim_end_matches('/').to_owned();
    Ok(Vault::new(client, server, parts, trust))
}

pub(super) fn human_size(size: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size}")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// Writes downloaded plaintext to `local` (default: the last name of `path` in the current folder; `-`:
/// stdout), created 0600, replacing a file only with `force`.
pub(super) fn save_plaintext(path: &str, local: Option<PathBuf>, plaintext: &[u8], force: bool) -> anyhow::Result<()> {
    let name = path.rsplit('/').find(|segment| !segment.is_empty()).unwrap_or("download");
    let local = local.unwrap_or_else(|| PathBuf::from(name));
    if local.as_os_str() == "-" {
        std::io::stdout().lock().write_all(plaintext)?;
        return Ok(());
    }
    let mut file = create_output(&local, force)?;
    file.write_all(plaintext).with_context(|| format!("writing {}", local.display()))?;
    file.sync_all()?;
    eprintln!("{} bytes written to {}", plaintext.len(), local.display());
    Ok(())
}

/// Creates the local file a download is written to: mode 0600, replacing an existing file only with
/// `force`.
pub(super) fn create_output(local: &std::path::Path, force: bool) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(local)
        .with_context(|| format!("cannot create {} (use --force to replace an existing file)", local.display()))
}

/// The plaintext of a local file to upload (`-`: stdin).
pub(super) fn read_plaintext(local: &std::path::Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    Ok(if local.as_os_str() == "-" {
        let mut buffer = Zeroizing::new(Vec::new());
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buffer).context("reading stdin")?;
        buffer
    } else {
        Zeroizing::new(std::fs::read(local).with_context(|| format!("cannot read {}", local.display()))?)
    })
}

/// Runs a file command.
pub fn run(command: FileCommand) -> anyhow::Result<()> {
    let runtime = runtime()?;
    match command {
        FileCommand::Ls { path, vault } => {
            let vault = open(&vault, &runtime)?;
            let entries = runtime.block_on(vault.list(&path)).with_context(|| format!("ls {path}"))?;
            let mut stdout = std::io::stdout().lock();
            for entry in entries {
                let kind = if entry.is_dir { "d" } else { "-" };
                let size = entry.size.map(human_size).unwrap_or_else(|| "-".into());
                let modified = entry.modified.map(httpdate::fmt_http_date).unwrap_or_else(|| "-".into());
                let marker = match entry.origin {
                    _ if entry.is_dir && entry.is_encrypted => "  [encrypted]",
                    crate::vault::Origin::Dropped => "  [dropped]",
                    crate::vault::Origin::PendingDrop => "  [pending file drop]",
                    crate::vault::Origin::Member => "",
                };
                let slash = if entry.is_dir { "/" } else { "" };
                writeln!(stdout, "{kind} {size:>8}  {modified}  {}{slash}{marker}", entry.name.as_str())?;
            }
        }
        FileCommand::Get { path, local, force, vault } => {
            let vault = open(&vault, &runtime)?;
            let progress = ProgressLine::new("get", None);
            let plaintext = runtime
                .block_on(vault.read_file(&path, progress.as_ref().map(ProgressLine::callback)))
                .with_context(|| format!("get {path}"))?;
            if let Some(progress) = &progress {
                progress.finish();
            }
            save_plaintext(&path, local, &plaintext, force)?;
        }
        FileCommand::Put { local, path, vault } => {
            let plaintext = read_plaintext(&local)?;
            let local_name = local.file_name().and_then(|name| name.to_str()).unwrap_or("upload").to_owned();
            let mut vault = open(&vault, &runtime)?;
            let progress = ProgressLine::new("put", Some(plaintext.len() as u64 + 16));
            vault.set_progress(progress.as_ref().map(ProgressLine::callback));
            let target = if path.ends_with('/') { format!("{path}{local_name}") } else { path.clone() };
            let result = match runtime.block_on(vault.write_file(&target, &plaintext)) {
                Err(VaultError::IsAFolder) if !path.ends_with('/') => {
                    let inside = format!("{path}/{local_name}");
                    runtime.block_on(vault.write_file(&inside, &plaintext)).map(|()| inside)
                }
                other => other.map(|()| target),
            };
            if let Some(progress) = &progress {
                progress.finish();
            }
            let written = result.with_context(|| format!("put {path}"))?;
            eprintln!("{} bytes encrypted and stored as {written}", plaintext.len());
        }
        FileCommand::Rm { path, recursive, vault } => {
            let vault = open(&vault, &runtime)?;
            runtime.block_on(vault.remove(&path, recursive)).with_context(|| format!("rm {path}"))?;
        }
        FileCommand::Mv { from, to, vault } => {
            let vault = open(&vault, &runtime)?;
            runtime.block_on(vault.rename(&from, &to)).with_context(|| format!("mv {from} {to}"))?;
        }
        FileCommand::Fsck { path, repair, vault } => {
            let vault = open(&vault, &runtime)?;
            let report = runtime.block_on(vault.fsck(&path, repair)).with_context(|| format!("fsck {path}"))?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{path}: {} folder(s), {} file(s) checked; {} orphan(s){}, {} missing",
                report.folders,
                report.files,
                report.orphans.len(),
                if repair { format!(" ({} removed)", report.removed) } else { String::new() },
                report.missing.len()
            )?;
            for orphan in &report.orphans {
                writeln!(out, "  orphan (named by no metadata): {}/{}", path.trim_end_matches('/'), orphan.join("/"))?;
            }
            for missing in &report.missing {
                writeln!(out, "  MISSING on the server: {}/{}", path.trim_end_matches('/'), missing.join("/"))?;
            }
            if !report.missing.is_empty() {
                bail!(
                    "{} entry(ies) the metadata names are missing on the server (their data is lost)",
                    report.missing.len()
                );
            }
            if !repair && !report.orphans.is_empty() {
                bail!("{} orphan(s) found: run `cloakfs fsck --repair {path}` to remove them", report.orphans.len());
            }
        }
        FileCommand::Mkdir { path, encrypted, vault } => {
            let vault = open(&vault, &runtime)?;
            if encrypted {
                let file_id = runtime
                    .block_on(vault.create_encrypted_folder(&path))
                    .with_context(|| format!("mkdir --encrypted {path}"))?;
                eprintln!("created end-to-end encrypted folder {path} (file id {file_id})");
            } else {
                match runtime.block_on(vault.make_folder(&path)) {
                    Err(VaultError::NotEncrypted) => {
                        bail!("mkdir {path}: not inside an end-to-end encrypted folder; to create one, use --encrypted")
                    }
                    other => other.with_context(|| format!("mkdir {path}"))?,
                }
            }
        }
    }
    Ok(())
}
