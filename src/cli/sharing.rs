//! Sharing commands: `share`, `unshare`, `members`, `audit`, and `drop` (a file drop into a folder one
//! cannot read).

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::common::runtime;
use super::files::{open, VaultArgs};
use crate::metadata::audit::AuditEvent;
use crate::storage::SharePermissions;
use crate::vault::TrailStatus;

/// What a share allows (`--permissions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PermissionsArg {
    /// Read the folder.
    Read,
    /// Read and change the folder.
    Write,
    /// Only drop files into it (cannot read it; not a member of the key).
    Drop,
}

/// The sharing commands.
#[derive(Debug, clap::Subcommand)]
pub enum SharingCommand {
    /// Share an end-to-end encrypted top folder with a user: pins their certificate (shown for you to compare
    /// with them), makes the server share, and gives them the folder's key under a new metadata key.
    Share {
        /// The top encrypted folder, e.g. /Vault.
        path: String,
        /// The user to share with.
        #[arg(value_name = "USER")]
        member: String,
        /// What the share allows.
        #[arg(long, value_enum, default_value = "write")]
        permissions: PermissionsArg,
        /// The user made a new key pair: accept their new certificate with this SHA-256 fingerprint (check it
        /// with them first). It replaces the pinned one and is recorded in the folder's audit trail.
        #[arg(long, value_name = "FINGERPRINT")]
        accept_new_certificate: Option<String>,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Take a folder back from a user: removes the server share and the user's key, under a new metadata
    /// key. Files keep their keys unless --rekey-files.
    Unshare {
        /// The top encrypted folder.
        path: String,
        /// The user.
        #[arg(value_name = "USER")]
        member: String,
        /// Also re-encrypt every file under a fresh key, so keys the user kept open nothing on the server.
        #[arg(long)]
        rekey_files: bool,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Show a top folder's members with certificate fingerprints, who signed the current metadata, and
    /// which members this device had never seen.
    Members {
        /// The top encrypted folder.
        path: String,
        /// Accept the current members after a refused change you checked with the folder's owner.
        #[arg(long)]
        accept: bool,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Verify and show a top folder's audit trail: membership changes, key rotations, new certificates.
    Audit {
        /// The top encrypted folder.
        path: String,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Drop a local file into a folder shared with you as a file drop (you cannot read the folder).
    Drop {
        /// The local file.
        local: PathBuf,
        /// The shared folder, e.g. /Vault.
        path: String,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
}

fn event_text(event: AuditEvent) -> &'static str {
    match event {
        AuditEvent::FolderCreated => "folder created",
        AuditEvent::TrailStarted => "trail started",
        AuditEvent::MemberAdded => "member added",
        AuditEvent::MemberRemoved => "member removed",
        AuditEvent::FilesRekeyed => "files re-keyed",
        AuditEvent::RecoveryEnabled => "recovery key enabled",
        AuditEvent::NewCertificate => "new certificate",
        AuditEvent::RecoveryUsed => "access restored with the recovery key for",
    }
}

/// Runs a sharing command.
pub fn run(command: SharingCommand) -> anyhow::Result<()> {
    let runtime = runtime()?;
    match command {
        SharingCommand::Share { path, member: user, permissions, accept_new_certificate, vault } => {
            let vault = open(&vault, &runtime)?;
            let permissions = match permissions {
                PermissionsArg::Read => SharePermissions::Read,
                PermissionsArg::Write => SharePermissions::Write,
                PermissionsArg::Drop => SharePermissions::Drop,
            };
            let outcome = runtime
                .block_on(vault.share(&path, &user, permissions, accept_new_certificate.as_deref()))
                .with_context(|| format!("share {path} with {user}"))?;
            let pinned = if outcome.first_use { "first use: pinned now" } else { "matches the pin" };
            println!("certificate of {user}: SHA256 {} ({pinned})", outcome.fingerprint);
            println!("compare it with {user} over another channel (they see it with `cloakfs keys check`)");
            if permissions == SharePermissions::Drop {
                println!("{path} shared with {user} as a file drop");
            } else if outcome.already_member {
                println!("{user} was already a member of {path}");
            } else {
                println!("{path} shared with {user}; the folder has a new metadata key");
            }
        }
        SharingCommand::Unshare { path, member: user, rekey_files, vault } => {
            let vault = open(&vault, &runtime)?;
            let removed =
                runtime.block_on(vault.unshare(&path, &user)).with_context(|| format!("unshare {path} from {user}"))?;
            if removed {
                println!("{user} removed from {path}; the folder has a new metadata key");
            } else {
                println!("{user} was not a member of {path} (server shares removed if there were any)");
            }
            if rekey_files {
                let report = runtime.block_on(vault.rekey_files(&path)).with_context(|| format!("re-keying {path}"))?;
                println!("{} files re-encrypted under fresh keys", report);
            } else {
                println!(
                    "files keep their keys: copies of file keys {user} made before can still decrypt the current \
                     blobs if they get them from the server (use --rekey-files to close that)"
                );
            }
        }
        SharingCommand::Members { path, accept, vault } => {
            let vault = open(&vault, &runtime)?;
            let report = if accept {
                runtime.block_on(vault.accept_members(&path))
            } else {
                runtime.block_on(vault.members(&path))
            }
            .with_context(|| format!("members of {path}"))?;
            for member in &report.members {
                let new = if member.new_to_this_device { "  NEW to this device" } else { "" };
                println!("{:<20} SHA256 {}{new}", member.user_id, member.fingerprint);
            }
            println!("current metadata signed by {}", report.signed_by);
            match report.trail_status {
                TrailStatus::Verified(entries) => println!("audit trail: {entries} entries, verified"),
                TrailStatus::Absent => println!("audit trail: none (the folder was made by another client)"),
                TrailStatus::Dropped(seen) => println!(
                    "audit trail: DROPPED by a rewrite (this device saw {seen} entries); the next change by \
                     cloakfs starts a new trail linked to the last one"
                ),
            }
            if let Some(recovery) = &report.recovery {
                println!("WARNING: an offline recovery key (SHA256 {recovery}) can read this folder");
            }
            if let Some(dropped) = &report.recovery_dropped {
                println!(
                    "the recovery key SHA256 {dropped} was dropped by a client that does not keep it; cloakfs \
         adds it back at its next change to the folder"
                );
            }
        }
        SharingCommand::Audit { path, vault } => {
            let vault = open(&vault, &runtime)?;
            let report = runtime.block_on(vault.members(&path)).with_context(|| format!("audit {path}"))?;
            let Some(trail) = report.trail else {
                bail!("{path} has no audit trail (it was never shared by cloakfs, or a client that does not keep it rewrote it)");
            };
            for entry in &trail.entries {
                let subject = entry.subject.as_deref().map(|user| format!(" {user}")).unwrap_or_default();
                let time = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(entry.time));
                println!(
                    "#{:<3} {time}  counter {:<5} {}{subject}  by {}  members: {}",
                    entry.seq,
                    entry.counter,
                    event_text(entry.event),
                    entry.actor,
                    entry.members.iter().map(|(user, _)| user.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            println!("audit trail of {path}: {} entries, chain and signatures verified", trail.entries.len());
        }
        SharingCommand::Drop { local, path, vault } => {
            let name = local
                .file_name()
                .and_then(|name| name.to_str())
                .context("the local file needs a UTF-8 name")?
                .to_owned();
            let plaintext =
                zeroize::Zeroizing::new(std::fs::read(&local).with_context(|| format!("reading {}", local.display()))?);
            let vault = open(&vault, &runtime)?;
            runtime.block_on(vault.drop_file(&path, &name, &plaintext)).with_context(|| format!("drop into {path}"))?;
            println!("dropped into {path}; its members will see it the next time they open the folder");
        }
    }
    Ok(())
}
