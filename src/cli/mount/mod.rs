//! `cloakfs mount`, `cloakfs unmount` and `cloakfs status`.

use std::path::PathBuf;
use std::time::Duration;

use super::common::{ConnectionArgs, MnemonicArgs};

#[cfg(any(unix, windows))]
mod commands;
mod engine;
#[cfg(any(target_os = "linux", target_os = "macos"))]
mod unix;
mod vault;
#[cfg(any(unix, windows))]
pub use commands::{lock, status, unmount};
pub use engine::{open_engine, NextcloudEngine};
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub use unix::run;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub use vault::run as run_vault;
pub use vault::{is_vault_mount, open_vault_engine, parse_vault_mount, CryptomatorEngine, VaultMountArgs};

/// What `cloakfs mount` was asked to mount: a Nextcloud end-to-end encrypted folder, or a Cryptomator vault
/// (a URL, an sftp:// location or a local folder). Each platform mounts both.
#[derive(Debug)]
pub enum MountCommand {
    /// A Nextcloud folder (`cloakfs mount /Vault MOUNTPOINT --server ...`).
    Folder(MountArgs),
    /// A Cryptomator vault (`cloakfs mount LOCATION MOUNTPOINT`).
    Vault(VaultMountArgs),
}

/// Options of `cloakfs mount`.
#[derive(Debug, Clone, clap::Args)]
pub struct MountArgs {
    /// The encrypted folder on the server, e.g. /Vault (or a folder inside one).
    pub remote: String,
    /// Where to mount it (an existing, empty directory).
    pub mountpoint: PathBuf,
    /// The server and user.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The mnemonic.
    #[command(flatten)]
    pub mnemonic: MnemonicArgs,
    /// Caches, spill, device name and travel mode.
    #[command(flatten)]
    pub options: MountOptions,
    /// Milliseconds of quiet after the last change before the batch is committed to the server.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub commit_delay: u64,
}

/// The options every kind of mount has (a Nextcloud folder, a Cryptomator vault): caches, the encrypted
/// spill, this device's name, travel mode.
#[derive(Debug, Clone, clap::Args)]
pub struct MountOptions {
    /// Files up to this size are queued at close and uploaded in the background (Nextcloud: by the next
    /// commit, so a file removed or replaced before it never reaches the server; Cryptomator: at once, 16
    /// at a time), so close returns at once (fast `tar x`, `cp -r`, `git`); larger files, and all files
    /// after a failed upload, are uploaded before close returns so close reports errors. 0: close always
    /// waits. fsync always waits for the server.
    #[arg(long, default_value = "128K", value_parser = parse_size, value_name = "SIZE")]
    pub write_behind: u64,
    /// Seconds a folder listing is trusted before it is checked with the server again (changes by other clients
    /// appear after at most this long).
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub dir_cache_time: f64,
    /// RAM for decrypted file contents, e.g. 512M or 2G (open and unsaved files come on top).
    #[arg(long, default_value = "512M", value_parser = parse_size, value_name = "SIZE")]
    pub cache_size: u64,
    /// Files larger than this are kept, encrypted under a random key that exists only in RAM, in an
    /// anonymous temporary file instead of RAM (default: the cache size).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub spill_above: Option<u64>,
    /// Directory for those anonymous files (default: $TMPDIR, else /var/tmp). Only ciphertext is written, and
    /// the files have no name (O_TMPFILE) and vanish with the process.
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// This device's name in conflicted copies, "NAME (conflicted copy DEVICE DATE)", made when another
    /// device changed a file this mount also changed (default: the host name). Stored encrypted.
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// Unmount, wipe and exit after this long without file activity (reads, writes, listings, changes; an
    /// idle open file does not count), e.g. 15m, 90s, 1h.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Option<Duration>,
    /// Travel profile: secrets come from the environment or a prompt only, never from the OS keyring or a
    /// file (a Nextcloud mount refuses --mnemonic-file), and --idle-timeout defaults to 15m.
    #[arg(long)]
    pub travel: bool,
    /// Lock (upload, unmount, wipe) when the system is about to sleep or the screen locks (logind and
    /// screen-saver signals over D-Bus). Refuses to mount if the system D-Bus cannot be watched.
    #[arg(long)]
    pub lock_on_suspend: bool,
    /// Run in the background once mounted: every question (password, mnemonic, passphrase, one-time code)
    /// is asked here first; then the mount leaves this terminal, and its messages go to the system log
    /// (`journalctl -t cloakfs`), or without one to a file in $XDG_RUNTIME_DIR/cloakfs. Without it the
    /// mount stays in the foreground and ends (uploading first) when its terminal closes.
    #[arg(long)]
    pub daemon: bool,
    /// Internal: started by --daemon; detaches once mounted and reports readiness on stdout.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
}

impl MountOptions {
    /// The folder for spill files (`--spill-dir`, else `default`), checked to accept an anonymous file.
    pub fn spill_directory(&self, default: PathBuf) -> anyhow::Result<PathBuf> {
        let directory = self.spill_dir.clone().unwrap_or(default);
        crate::content::Spill::new(directory.clone(), 0).check().map_err(|error| {
            anyhow::anyhow!(
                "cannot create temporary files in {} (give another --spill-dir): {error}",
                directory.display()
            )
        })?;
        Ok(directory)
    }

    /// The engine's options from these (the Nextcloud-only ones at their defaults).
    pub fn vfs_options(&self, spill_directory: PathBuf) -> crate::vfs::VfsOptions {
        crate::vfs::VfsOptions {
            dir_cache_time: Duration::from_secs_f64(self.dir_cache_time.max(0.0)),
            cache_size: self.cache_size,
            spill_above: self.spill_above.unwrap_or(self.cache_size),
            spill_directory,
            device: self.device.clone().unwrap_or_else(crate::conflict::default_device_name),
            write_behind: self.write_behind,
            ..crate::vfs::VfsOptions::default()
        }
    }

    /// The idle timeout: `--idle-timeout`, else with `--travel` [`TRAVEL_IDLE_TIMEOUT`].
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout.or(self.travel.then_some(TRAVEL_IDLE_TIMEOUT))
    }
}

/// The idle timeout of `--travel` when none is given.
pub const TRAVEL_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Options of `cloakfs unmount`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnmountArgs {
    /// The mount point.
    pub mountpoint: PathBuf,
}

/// Options of `cloakfs lock`.
#[derive(Debug, Clone, clap::Args)]
pub struct LockArgs {
    /// The mount point (or --all).
    #[arg(required_unless_present = "all")]
    pub mountpoint: Option<PathBuf>,
    /// Lock every cloakfs mount of this user.
    #[arg(long, conflicts_with = "mountpoint")]
    pub all: bool,
    /// Drop changes that cannot be uploaded instead of refusing to lock.
    #[arg(long)]
    pub discard: bool,
    /// Confirm --discard without asking (for scripts).
    #[arg(long, requires = "discard")]
    pub yes: bool,
}

/// Parses `512M`, `2G`, `64K` or a number of bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, shift) = match text.chars().last().map(|last| last.to_ascii_uppercase()) {
        Some('K') => (&text[..text.len() - 1], 10),
        Some('M') => (&text[..text.len() - 1], 20),
        Some('G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value: u64 = number.trim().parse().map_err(|_| format!("not a size: {text:?} (e.g. 512M, 2G)"))?;
    value.checked_shl(shift).filter(|bytes| bytes >> shift == value).ok_or_else(|| "size too large".to_owned())
}

/// Parses `90s`, `15m`, `1h` or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.chars().last() {
        Some('s') => (&text[..text.len() - 1], 1),
        Some('m') => (&text[..text.len() - 1], 60),
        Some('h') => (&text[..text.len() - 1], 3600),
        _ => (text, 1),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("not a duration: {text:?} (e.g. 90s, 15m, 1h)"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("not a positive duration: {text:?}"));
    }
    Ok(Duration::from_secs_f64(value * f64::from(unit)))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        use std::time::Duration;
        assert_eq!(super::parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(super::parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(super::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(super::parse_duration("0").is_err());
        assert!(super::parse_duration("soon").is_err());
    }
}
