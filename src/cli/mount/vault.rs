//! `cloakfs mount [--cryptomator] LOCATION MOUNTPOINT`: a Cryptomator vault (format 8) on a WebDAV server,
//! an SFTP server or in a local folder, mounted with FUSE (Linux, macOS) or WinFsp (Windows). The format is found from the location (`vault.cryptomator`), not
//! from the flag; the flag only says so when the location alone does not show it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use super::MountOptions;
use crate::cli::cryptomator::{passphrase, LocationArgs};
use crate::cryptomator::CryptomatorVault;
use crate::format::cryptomator::CryptomatorFormat;
use crate::mount::MountInfo;
use crate::storage::AnyStore;
use crate::vfs::Vfs;

/// `cloakfs mount` of a Cryptomator vault.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "cloakfs mount",
    about = "Mount a Cryptomator vault (format 8) from a WebDAV server or a local folder: decrypted names, \
             files read by chunks as they are read, changes encrypted and uploaded at close"
)]
pub struct VaultMountArgs {
    /// The vault and how to reach it.
    #[command(flatten)]
    pub location: LocationArgs,
    /// Where to mount it (an existing, empty directory).
    pub mountpoint: PathBuf,
    /// The location is a Cryptomator vault (found from the location anyway; this only makes it explicit).
    #[arg(long)]
    pub cryptomator: bool,
    /// Caches, spill, device name and travel mode.
    #[command(flatten)]
    pub options: MountOptions,
}

/// Whether `cloakfs ARGUMENTS` is a mount of a Cryptomator vault: `mount` with `--cryptomator`, a URL
/// (Nextcloud folders are given as a path and `--server`), or a local folder holding `vault.cryptomator`.
pub fn is_vault_mount(arguments: &[OsString]) -> bool {
    if arguments.get(1).and_then(|command| command.to_str()) != Some("mount") {
        return false;
    }
    let mut previous = "";
    for argument in arguments.iter().skip(2).filter_map(|argument| argument.to_str()) {
        let option_value = matches!(
            previous,
            "--server"
                | "--user"
                | "--pin-file"
                | "--mnemonic-file"
                | "--spill-dir"
                | "-i"
                | "--identity"
                | "--ssh-config"
        );
        previous = argument;
        if argument == "--cryptomator" {
            return true;
        }
        if option_value || argument.starts_with('-') {
            continue;
        }
        if crate::storage::is_url(argument)
            || crate::storage::sftp::SftpLocation::is_sftp(argument)
            || std::path::Path::new(argument).join(crate::cryptomator::config::CONFIG_FILE).is_file()
        {
            return true;
        }
    }
    false
}

/// Parses `cloakfs mount …` as a vault mount.
pub fn parse_vault_mount(arguments: Vec<OsString>) -> VaultMountArgs {
    <VaultMountArgs as clap::Parser>::parse_from(
        std::iter::once(OsString::from("cloakfs mount")).chain(arguments.into_iter().skip(2)),
    )
}

/// The engine of a mounted Cryptomator vault.
pub type CryptomatorEngine = Vfs<CryptomatorFormat<AnyStore>>;

/// Opens the vault of `args` (the store's password or SSH login, then the vault passphrase) and builds its
/// engine, the same on every platform (spill files in `args`' spill directory, else `default_spill_dir`).
pub fn open_vault_engine(
    args: &VaultMountArgs,
    default_spill_dir: PathBuf,
) -> anyhow::Result<(tokio::runtime::Runtime, Arc<CryptomatorEngine>, MountInfo)> {
    let spill_directory = args.options.spill_directory(default_spill_dir)?;
    let runtime = crate::cli::common::runtime()?;
    let store = args.location.store(&runtime)?;
    let passphrase = passphrase("vault passphrase: ")?;
    let vault = runtime
        .block_on(CryptomatorVault::open(store, &passphrase))
        .with_context(|| format!("opening the vault at {}", args.location.location))?;
    drop(passphrase);
    let options = args.options.vfs_options(spill_directory);
    let engine = Arc::new(Vfs::new(CryptomatorFormat::new(vault, options.device.clone()), options));
    let info = MountInfo {
        mountpoint: args.mountpoint.clone(),
        server: args.location.location.clone(),
        user: args.location.user.clone().unwrap_or_default(),
        remote: "/".to_owned(),
        idle_timeout: args.options.idle_timeout(),
        lock_on_suspend: args.options.lock_on_suspend,
    };
    Ok((runtime, engine, info))
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
/// Opens the vault, mounts it with FUSE and serves until unmounted, locked or idle; then uploads what
/// changed, unmounts and wipes.
pub fn run(args: VaultMountArgs) -> anyhow::Result<()> {
    if args.options.daemon && !args.options.daemon_child {
        return super::unix::spawn_daemon(&args.mountpoint);
    }
    let (runtime, engine, info) = open_vault_engine(&args, super::unix::default_spill_dir())?;
    let what = format!("the Cryptomator vault at {}", args.location.location);
    crate::mount::run(&runtime, engine, info, |mountpoint| super::unix::announce(&args.options, &what, mountpoint))?;
    Ok(())
}
