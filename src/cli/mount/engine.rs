//! Opening the engine of a mount, the same on every platform: keys unlocked, the encrypted folder opened
//! and verified, the engine built from the mount options. The platform's adapter takes it from there.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::super::common::{parse_mnemonic, runtime};
use super::MountArgs;
use crate::format::nextcloud::NextcloudFormat;
use crate::mount::MountInfo;
use crate::session::unlock;
use crate::storage::NextcloudClient;
use crate::vault::{Vault, VaultError};
use crate::vfs::{Vfs, VfsOptions};

/// The engine of a mounted Nextcloud folder.
pub type NextcloudEngine = Vfs<NextcloudFormat<NextcloudClient>>;

/// Everything of a mount before the platform's adapter: the keys unlocked, the folder opened and verified,
/// the engine built with the options of `args` (spill files in `args.spill_dir`, else `default_spill_dir`).
pub fn open_engine(
    args: &MountArgs,
    password: Zeroizing<String>,
    mnemonic_text: &str,
    default_spill_dir: PathBuf,
) -> anyhow::Result<(tokio::runtime::Runtime, Arc<NextcloudEngine>, MountInfo)> {
    let mnemonic = parse_mnemonic(mnemonic_text)?;
    let spill_directory = args.options.spill_directory(default_spill_dir)?;
    let client = args.connection.client_with(password)?;
    let mut trust = args.connection.trust_store()?;
    let runtime = runtime()?;
    let session = runtime.block_on(unlock(client, &mut trust, &mnemonic)).context("unlocking the keys")?;
    drop(mnemonic);
    let (client, parts) = session.into_parts();
    let server = args.connection.server.trim_end_matches('/').to_owned();
    let vault = Vault::new(client, server.clone(), parts, trust);
    let (tree, root) = match runtime.block_on(vault.open_folder(&args.remote)) {
        Ok(found) => found,
        Err(VaultError::NotEncrypted) => bail!(
            "{} is not an end-to-end encrypted folder: cloakfs mounts only encrypted folders \
             (create one with `cloakfs mkdir --encrypted {}`)",
            args.remote,
            args.remote
        ),
        Err(error) => return Err(error).with_context(|| format!("opening {}", args.remote)),
    };
    let options = VfsOptions {
        commit_delay: Duration::from_millis(args.commit_delay),
        ..args.options.vfs_options(spill_directory)
    };
    let core = Arc::new(Vfs::new(NextcloudFormat::new(vault, tree, &root), options));
    let info = MountInfo {
        mountpoint: args.mountpoint.clone(),
        server,
        user: args.connection.user.clone(),
        remote: args.remote.clone(),
        idle_timeout: args.options.idle_timeout(),
        lock_on_suspend: args.options.lock_on_suspend,
    };
    Ok((runtime, core, info))
}
