//! `cloakfs recovery`: the offline recovery key. `init` makes one and shows its private half once; `enable`
//! sets a recovery public key on another device; `open` reads a folder with the private half when every
//! member's keys are lost.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use super::common::{runtime, ConnectionArgs};
use crate::crypto::{PrivateIdentity, PublicKey};
use crate::session::pinned_server_key;
use crate::vault::{SessionParts, Vault};

/// The recovery commands.
#[derive(Debug, clap::Subcommand)]
pub enum RecoveryCommand {
    /// Create an offline recovery key for this server: prints its private half ONCE (keep it offline, e.g.
    /// printed in a safe) and sets its public half on this device. Folders created or re-keyed from now on
    /// (by this device) also wrap their key for it; every member is warned while a folder has one.
    Init {
        /// Also write the public half here (to run `cloakfs recovery enable` with it on other devices).
        #[arg(long, default_value = "cloakfs-recovery.pub.pem")]
        public_key_out: PathBuf,
        /// Write the private half to this file (mode 0600) instead of printing it, e.g. to print it at once.
        #[arg(long)]
        private_key_out: Option<PathBuf>,
        /// The server and user.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Use an existing recovery public key on this device (for folders it creates or re-keys).
    Enable {
        /// The public key (PEM) `recovery init` wrote.
        public_key: PathBuf,
        /// The server and user.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Stop wrapping new folders' keys for the recovery key on this device (folders that have it keep it:
    /// remove it from a folder with `cloakfs recovery remove FOLDER`).
    Disable {
        /// The server and user.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Remove the recovery key from a top folder: its key is rotated without it and the removal is recorded
    /// in the folder's audit trail; cloakfs never adds a recovery key back to that folder (re-add one by
    /// sharing anew from a device with `recovery enable`, after `recovery disable` elsewhere if needed).
    Remove {
        /// The top encrypted folder, e.g. /Vault.
        path: String,
        /// Server and credentials.
        #[command(flatten)]
        vault: super::files::VaultArgs,
    },
    /// Give your new keys (after you lost the old ones and ran `cloakfs keys init` again) back your access
    /// to a folder you were a member of, with the recovery private key. Recorded in the folder's audit trail,
    /// signed by your new key and by the recovery key; the other members' devices accept it from there.
    Restore {
        /// The recovery private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// The top encrypted folder, e.g. /Vault.
        path: String,
        /// Server, credentials and the mnemonic of your NEW keys.
        #[command(flatten)]
        vault: super::files::VaultArgs,
    },
    /// Read a folder with the recovery private key and write its decrypted tree to DEST (read-only on the
    /// server). Logs in as any user who can reach the folder; no mnemonic is needed.
    Open {
        /// The recovery private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// The top encrypted folder, e.g. /Vault.
        path: String,
        /// A new local folder for the decrypted files (PLAINTEXT on this disk).
        dest: PathBuf,
        /// The server and user.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// Runs a recovery command.
pub fn run(command: RecoveryCommand) -> anyhow::Result<()> {
    match command {
        RecoveryCommand::Init { public_key_out, private_key_out, connection } => {
            let server = connection.server.trim_end_matches('/').to_owned();
            let mut trust = connection.trust_store()?;
            let identity = PrivateIdentity::generate().context("generating the recovery key")?;
            let public_pem = identity.public_key().to_pem();
            std::fs::write(&public_key_out, &public_pem)
                .with_context(|| format!("writing {}", public_key_out.display()))?;
            let private_pem = identity.to_pkcs8_pem();
            match &private_key_out {
                Some(path) => write_private(path, private_pem.as_bytes())?,
                None => {
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "RECOVERY PRIVATE KEY: shown once. Keep it offline; whoever holds it can read")?;
                    writeln!(stdout, "every folder that wraps its key for it.")?;
                    stdout.write_all(private_pem.as_bytes())?;
                }
            }
            trust.set_recovery_key(&server, Some(public_pem))?;
            eprintln!(
                "recovery key SHA256 {} set for {server} on this device; public half in {}",
                identity.public_key().fingerprint(),
                public_key_out.display()
            );
        }
        RecoveryCommand::Enable { public_key, connection } => {
            let server = connection.server.trim_end_matches('/').to_owned();
            let pem =
                std::fs::read_to_string(&public_key).with_context(|| format!("reading {}", public_key.display()))?;
            let key = PublicKey::from_pem(&pem).context("not an RSA public key (PEM)")?;
            connection.trust_store()?.set_recovery_key(&server, Some(key.to_pem()))?;
            eprintln!("recovery key SHA256 {} set for {server} on this device", key.fingerprint());
        }
        RecoveryCommand::Disable { connection } => {
            let server = connection.server.trim_end_matches('/').to_owned();
            connection.trust_store()?.set_recovery_key(&server, None)?;
            eprintln!("no recovery key for new folders on {server} from this device");
        }
        RecoveryCommand::Remove { path, vault } => {
            let runtime = runtime()?;
            let vault = super::files::open(&vault, &runtime)?;
            let removed = runtime
                .block_on(vault.remove_recovery(&path))
                .with_context(|| format!("removing the recovery key from {path}"))?;
            if removed {
                println!(
                    "{path} no longer wraps its key for a recovery key (new metadata key; recorded in its audit trail)"
                );
            } else {
                println!("{path} has no recovery key");
            }
        }
        RecoveryCommand::Restore { key, path, vault } => {
            let recovery = read_private_key(&key)?;
            let runtime = runtime()?;
            let vault = super::files::open(&vault, &runtime)?;
            let restored = runtime
                .block_on(vault.restore_access(&path, &recovery))
                .with_context(|| format!("restoring access to {path}"))?;
            if restored {
                println!("your new keys are a member of {path} again (recorded in its audit trail)");
            } else {
                println!("your current keys are already the member's keys of {path}");
            }
        }
        RecoveryCommand::Open { key, path, dest, connection } => {
            let identity = read_private_key(&key)?;
            if dest.exists() {
                bail!("{} exists: give a new folder for the decrypted files", dest.display());
            }
            let runtime = runtime()?;
            let client = connection.client()?;
            let mut trust = connection.trust_store()?;
            let server_key = runtime.block_on(pinned_server_key(&client, &mut trust))?;
            // The recovery key never signs anything: a certificate of its own is only a placeholder.
            let request = identity.certificate_request_pem("recovery")?;
            let certificate = identity.issue_certificate(&request, "recovery", Duration::from_secs(3600))?;
            let server = connection.server.trim_end_matches('/').to_owned();
            let parts = SessionParts { user: "recovery".into(), server_key, identity, certificate };
            let vault = Vault::for_recovery(client, server, parts, trust);
            let count = runtime.block_on(export(&vault, &path, &dest))?;
            eprintln!("{count} files of {path} decrypted into {} (plaintext on this disk)", dest.display());
        }
    }
    Ok(())
}

fn read_private_key(path: &Path) -> anyhow::Result<PrivateIdentity> {
    let pem =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
    PrivateIdentity::from_pkcs8_pem(&pem).context("not an RSA private key (PKCS#8 PEM)")
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Writes the decrypted tree at `clear_path` into `dest`; returns the number of files.
async fn export(
    vault: &Vault<crate::storage::NextcloudClient>,
    clear_path: &str,
    dest: &Path,
) -> anyhow::Result<usize> {
    let mut pending = vec![(clear_path.trim_end_matches('/').to_owned(), dest.to_owned())];
    let mut count = 0;
    while let Some((folder, local)) = pending.pop() {
        create_private_dir(&local)?;
        for entry in vault.list(&folder).await.with_context(|| format!("listing {folder}"))? {
            let remote = format!("{folder}/{}", entry.name.as_str());
            let target = local.join(entry.name.as_str());
            if entry.is_dir {
                pending.push((remote, target));
            } else {
                let plaintext = vault.read_file(&remote, None).await.with_context(|| format!("reading {remote}"))?;
                write_private(&target, &plaintext)?;
                count += 1;
            }
        }
    }
    Ok(count)
}

fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    #[cfg(not(unix))]
    let _ = &mut builder;
    builder.create(path).with_context(|| format!("creating {}", path.display()))
}
