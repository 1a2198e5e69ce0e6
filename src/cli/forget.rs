//! `cloakfs forget`: deletes the non-secret state cloakfs keeps on this device (the pin file: server URLs,
//! user ids, key fingerprints, metadata counters) and the app passwords `cloakfs login` put in the OS
//! keyring, for one server or all of them.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::common::pin_path;
#[cfg(unix)]
use crate::mount::control;
use crate::trust::TrustStore;

/// Options of `cloakfs forget`.
#[derive(Debug, Clone, clap::Args)]
pub struct ForgetArgs {
    /// Forget only this server (its URL as used with --server); default: every server.
    #[arg(long)]
    pub server: Option<String>,
    /// Also remove the keyring entry of this user on --server (users with pinned certificates are removed
    /// anyway).
    #[arg(long, requires = "server")]
    pub user: Option<String>,
    /// The pin file (default: $XDG_CONFIG_HOME/cloakfs/pins.json).
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// Runs `cloakfs forget`.
pub fn run(args: ForgetArgs) -> anyhow::Result<()> {
    // Elsewhere there are no mounts (the mount is Linux-only in this version).
    #[cfg(unix)]
    let mounts = super::common::runtime()?.block_on(control::all_mounts())?;
    #[cfg(not(unix))]
    let mounts: Vec<()> = Vec::new();
    if !mounts.is_empty() {
        bail!(
            "{} cloakfs mount(s) running; they record counters in the pin file. Run `cloakfs lock --all` first",
            mounts.len()
        );
    }
    let path = pin_path(args.pin_file.as_deref())?;
    let mut store = TrustStore::load(&path)?;
    let server = args.server.as_deref().map(|server| server.trim_end_matches('/').to_owned());
    let mut targets: Vec<(String, Vec<String>)> = store
        .servers()
        .filter(|(name, _)| server.as_deref().is_none_or(|wanted| wanted == *name))
        .map(|(name, pins)| (name.to_owned(), pins.certificates.keys().cloned().collect()))
        .collect();
    if let (Some(server), Some(user)) = (&server, &args.user) {
        match targets.iter_mut().find(|(name, _)| name == server) {
            Some((_, users)) => users.push(user.clone()),
            None => targets.push((server.clone(), vec![user.clone()])),
        }
    }
    if targets.is_empty() {
        println!("nothing to forget ({} holds no matching pins)", path.display());
        return Ok(());
    }
    if !args.yes {
        eprint!(
            "forget {} server(s) ({}): pins, counters and stored app passwords? A later mount will trust the \
             server's keys on first use again. [y/N] ",
            targets.len(),
            path.display()
        );
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).context("reading the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("nothing forgotten");
        }
    }
    let mut passwords = 0;
    let mut keyring_errors = Vec::new();
    for (name, users) in &targets {
        for user in users {
            match super::credentials::forget(name, user) {
                Ok(()) => passwords += 1,
                Err(error) => keyring_errors.push(format!("{user} on {name}: {error}")),
            }
        }
    }
    if server.is_some() {
        for (name, _) in &targets {
            store.forget_server(name)?;
        }
    } else {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("removing {}", path.display())),
        }
        // The directory cloakfs created for it, if now empty.
        if let Some(parent) = path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    println!(
        "forgot {} server(s): pins and counters removed from {}; app passwords removed from the OS keyring (where present): {passwords}",
        targets.len(),
        path.display()
    );
    // An unreachable keyring cannot hold what `cloakfs login` stored through that same keyring.
    for error in keyring_errors {
        eprintln!("cloakfs: OS keyring not reachable for {error}: nothing removed there");
    }
    Ok(())
}
