//! Sharing commands: `share`, `unshare`, `members`, `audit`, and `drop` (a file drop into a folder one
//! cannot read).

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::common::runtime;
use super::files::{open, VaultArgs};
use crate::metadata::audit::AuditEvent;
use crate::storage::SharePermissions;
use crate::vault::{CertificateStatus, MemberTrust, TrailStatus};

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
    /// Share an end-to-end encrypted top folder with a user: shows their certificate's fingerprint and, on a
    /// terminal, asks you to confirm it (compare it with them: they see it with `cloakfs keys check`);
    /// without a terminal it needs --fingerprint. Then makes the server share and gives them the folder's key
    /// under a new metadata key. Nothing is shared with an unconfirmed certificate.
    Share {
        /// The top encrypted folder, e.g. /Vault.
        path: String,
        /// The user to share with.
        #[arg(value_name = "USER")]
        member: String,
        /// What the share allows.
        #[arg(long, value_enum, default_value = "write")]
        permissions: PermissionsArg,
        /// The SHA-256 fingerprint of USER's certificate, as USER read it to you (`cloakfs keys check`):
        /// confirms it without asking. Refused if the server presents another.
        #[arg(long, value_name = "FINGERPRINT")]
        fingerprint: Option<String>,
        /// The user made a new key pair: accept their new certificate with this SHA-256 fingerprint (check it
        /// with them first). It replaces the pinned one and is recorded in the folder's audit trail.
        #[arg(long, value_name = "FINGERPRINT", conflicts_with = "fingerprint")]
        accept_new_certificate: Option<String>,
        /// Server and credentials.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Confirm a user's certificate on this device after comparing its fingerprint with them (they see it with
    /// `cloakfs keys check`): only confirmed certificates, and members a folder's verified audit trail
    /// vouches for, ever receive a key from this device (sharing, re-keying, file drops).
    Confirm {
        /// The user.
        #[arg(value_name = "USER")]
        member: String,
        /// The fingerprint they read to you (else asked on a terminal).
        #[arg(long, value_name = "FINGERPRINT")]
        fingerprint: Option<String>,
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
        AuditEvent::RecoveryDisabled => "recovery key removed",
        AuditEvent::DropShareAdded => "file-drop share given to",
        AuditEvent::DropShareRemoved => "file-drop share taken from",
        AuditEvent::NewCertificate => "new certificate",
        AuditEvent::RecoveryUsed => "access restored with the recovery key for",
    }
}

/// Shows `user`'s certificate fingerprint and gets the user's confirmation of it: `given` (from the command
/// line), else a yes on the terminal. `Ok(None)` when it was confirmed on this device before. Without a
/// terminal and without `given`, refuses (nothing is shared).
fn confirmation(
    runtime: &tokio::runtime::Runtime,
    vault: &crate::vault::Vault<crate::storage::NextcloudClient>,
    user: &str,
    given: Option<String>,
) -> anyhow::Result<Option<String>> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let (certificate, status) =
        runtime.block_on(vault.certificate_of(user)).with_context(|| format!("the certificate of {user}"))?;
    let presented = certificate.fingerprint();
    let known = match &status {
        CertificateStatus::Confirmed => "confirmed on this device before".to_owned(),
        CertificateStatus::Pinned => "seen before on this device, never confirmed".to_owned(),
        CertificateStatus::New => "never seen on this device".to_owned(),
        CertificateStatus::Changed { pinned } => format!("CHANGED: this device pinned {pinned}"),
    };
    eprintln!("certificate of {user}: SHA256 {presented} ({known})");
    if let Some(given) = given {
        return Ok(Some(given));
    }
    if status == CertificateStatus::Confirmed {
        return Ok(None);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to give a key to {user} without a confirmed certificate: compare the fingerprint above with \
             {user} over another channel (they see it with `cloakfs keys check`), then run again with \
             --fingerprint {presented}"
        );
    }
    eprint!(
        "Compare it with {user} over another channel (they see it with `cloakfs keys check`). Does it match? [yes/no] "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("reading the answer")?;
    if answer.trim().eq_ignore_ascii_case("yes") || answer.trim().eq_ignore_ascii_case("y") {
        Ok(Some(presented))
    } else {
        bail!("not confirmed: nothing was shared")
    }
}

/// Runs a sharing command.
pub fn run(command: SharingCommand) -> anyhow::Result<()> {
    let runtime = runtime()?;
    match command {
        SharingCommand::Share { path, member: user, permissions, fingerprint, accept_new_certificate, vault } => {
            let vault = open(&vault, &runtime)?;
            let permissions = match permissions {
                PermissionsArg::Read => SharePermissions::Read,
                PermissionsArg::Write => SharePermissions::Write,
                PermissionsArg::Drop => SharePermissions::Drop,
            };
            let new_certificate = accept_new_certificate.is_some();
            let given = accept_new_certificate.or(fingerprint);
            let confirmed = confirmation(&runtime, &vault, &user, given)?;
            let outcome = runtime
                .block_on(vault.share(&path, &user, permissions, confirmed.as_deref(), new_certificate))
                .with_context(|| format!("share {path} with {user}"))?;
            if permissions == SharePermissions::Drop {
                println!("{path} shared with {user} as a file drop (recorded in the folder's audit trail)");
            } else if outcome.already_member {
                println!("{user} was already a member of {path}");
            } else {
                println!(
                    "{path} shared with {user} (certificate SHA256 {}); the folder has a new metadata key",
                    outcome.fingerprint
                );
            }
        }
        SharingCommand::Confirm { member: user, fingerprint, vault } => {
            let vault = open(&vault, &runtime)?;
            match confirmation(&runtime, &vault, &user, fingerprint)? {
                Some(fingerprint) => {
                    runtime
                        .block_on(vault.confirm_certificate(&user, &fingerprint, false))
                        .with_context(|| format!("confirm the certificate of {user}"))?;
                    println!("certificate of {user} confirmed on this device");
                }
                None => println!("certificate of {user} was already confirmed on this device"),
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
                let trust = match member.trust {
                    MemberTrust::Own => "you",
                    MemberTrust::Confirmed => "confirmed on this device",
                    MemberTrust::Trail => "vouched for by the audit trail",
                    MemberTrust::FirstUse => "TAKEN ON FIRST USE: compare with them, then `cloakfs confirm`",
                };
                let new = if member.new_to_this_device { ", NEW to this device" } else { "" };
                println!("{:<20} SHA256 {}  ({trust}{new})", member.user_id, member.fingerprint);
            }
            println!("current metadata signed by {}", report.signed_by);
            match report.trail_status {
                TrailStatus::Verified(entries) => println!("audit trail: {entries} entries, verified"),
                TrailStatus::Restarted(entries) => println!(
                    "audit trail: {entries} entries, verified; RESTARTED after a client that does not keep it \
                     rewrote the folder (its first entry links to the last one this device saw)"
                ),
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
            // File drops are not in the trail (they are not signed by their sender): listed from the folder.
            let entries = runtime.block_on(vault.list(&path)).with_context(|| format!("ls {path}"))?;
            for entry in entries {
                match entry.origin {
                    crate::vault::Origin::Dropped => {
                        println!("file drop taken in: {} (sender not authenticated)", entry.name.as_str())
                    }
                    crate::vault::Origin::PendingDrop => {
                        println!("file drop PENDING, not taken in: {}", entry.name.as_str())
                    }
                    crate::vault::Origin::Member => {}
                }
            }
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
