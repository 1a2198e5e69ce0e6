//! The command-line interface. One file per subcommand; `anyhow` is used only here, at the edge.

pub mod common;
pub mod credentials;
pub mod cryptomator;
pub mod demo;
pub mod files;
pub mod forget;
pub mod keys;
pub mod login;
pub mod mount;
pub mod progress;
pub mod recovery;
pub mod serve;
pub mod sharing;
pub mod ssh;

use clap::{Parser, Subcommand};

/// cloakfs: Nextcloud end-to-end encrypted folders as a local drive, with plaintext only in RAM.
#[derive(Debug, Parser)]
#[command(name = "cloakfs", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole format end to end on a local, throw-away "server" directory: keys, mnemonic,
    /// certificate, encrypted files and signed metadata; then read everything back and show what the
    /// server sees next to what you see.
    Demo(demo::DemoArgs),
    /// Run the embedded server (same API as Nextcloud's end-to-end encryption), or manage its users.
    Serve(serve::ServeArgs),
    /// Log in with Nextcloud's Login Flow v2 (or --app-password) and keep the app password in the OS keyring.
    Login(login::LoginArgs),
    /// Create or check this account's end-to-end encryption keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Mount an end-to-end encrypted folder as a local folder (FUSE): decrypted names, files fetched and
    /// decrypted on open into RAM, changes encrypted and uploaded on close. A Cryptomator vault is mounted
    /// with `cloakfs mount [--cryptomator] LOCATION MOUNTPOINT` (see `cloakfs mount --cryptomator --help`).
    Mount(mount::MountArgs),
    /// Upload pending changes and unmount a cloakfs mount.
    Unmount(mount::UnmountArgs),
    /// Travel lock: upload pending changes, unmount and wipe keys and caches now (one mount or --all).
    Lock(mount::LockArgs),
    /// Delete what cloakfs keeps on this device (pins, counters, keyring app passwords), for one server or all.
    Forget(forget::ForgetArgs),
    /// Show running mounts: cache use, files waiting for upload, upload errors.
    Status,
    /// Answer the question a mount waits on when it reconnects to an SSH server (a one-time code, a key's
    /// passphrase), from this terminal instead of the one that mounted.
    Unlock {
        /// The mount point (default: any mount that waits).
        mountpoint: Option<std::path::PathBuf>,
    },
    /// File commands inside end-to-end encrypted folders.
    #[command(flatten)]
    Files(files::FileCommand),
    /// Sharing, members, audit trail and file drops.
    #[command(flatten)]
    Sharing(sharing::SharingCommand),
    /// The offline recovery key.
    #[command(subcommand)]
    Recovery(recovery::RecoveryCommand),
    /// Cryptomator vaults (format 8) on any WebDAV server or in a local folder: create, info, and the file
    /// commands ls, get, put, rm, mv, mkdir.
    #[command(subcommand)]
    Vault(cryptomator::VaultCommand),
}

/// The whole `cloakfs` program with `platform_mount` as `cloakfs mount` (of a Nextcloud folder or a
/// Cryptomator vault): no core dumps, logs to stderr (level from RUST_LOG, default warnings), the command
/// line parsed and run, an error printed as the user should read it. Both binaries (src/main.rs,
/// platform/windows) are this one call.
pub fn main_with(platform_mount: impl FnOnce(mount::MountCommand) -> anyhow::Result<()>) -> std::process::ExitCode {
    crate::platform::forbid_core_dumps();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A failed write of a log line (a closed terminal or pipe) is dropped: reporting it would be an
        // `eprintln!`, which panics on that same closed stderr.
        .log_internal_errors(false)
        .init();
    let arguments: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // A Cryptomator vault has its own `cloakfs mount` arguments (a location, no Nextcloud server or mnemonic).
    let result = if mount::is_vault_mount(&arguments) {
        platform_mount(mount::MountCommand::Vault(mount::parse_vault_mount(arguments)))
    } else {
        run_with(Cli::parse_from(arguments), |args| platform_mount(mount::MountCommand::Folder(args)))
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cloakfs: error: {}", describe_error(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The program with this build's own mount adapter (FUSE on Linux and macOS; none in this library on
/// Windows, whose WinFsp adapter is the separate platform/windows binary): see [`main_with`].
pub fn main() -> std::process::ExitCode {
    main_with(mount_here)
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
fn mount_here(command: mount::MountCommand) -> anyhow::Result<()> {
    match command {
        mount::MountCommand::Folder(args) => mount::run(args),
        mount::MountCommand::Vault(args) => mount::run_vault(args),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn mount_here(_: mount::MountCommand) -> anyhow::Result<()> {
    anyhow::bail!(
        "this cloakfs build has no mount adapter for this system: on Windows, mounting needs the WinFsp build \
         (platform/windows, see the README's \"Windows\" section); the file commands (ls, get, put, ...) work here"
    )
}

/// Runs the parsed command line with `mount` as the platform's `cloakfs mount` (the Windows binary passes
/// its WinFsp mount here).
pub fn run_with(cli: Cli, platform_mount: impl FnOnce(mount::MountArgs) -> anyhow::Result<()>) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Login(args) => login::run(args),
        Command::Keys(command) => keys::run(command),
        Command::Mount(args) => platform_mount(args),
        #[cfg(any(unix, windows))]
        Command::Unmount(args) => mount::unmount(args),
        #[cfg(any(unix, windows))]
        Command::Lock(args) => mount::lock(args),
        #[cfg(any(unix, windows))]
        Command::Status => mount::status(),
        #[cfg(any(unix, windows))]
        Command::Unlock { mountpoint } => ssh::unlock(mountpoint),
        #[cfg(not(any(unix, windows)))]
        Command::Unmount(_) | Command::Lock(_) | Command::Status | Command::Unlock { .. } => {
            anyhow::bail!("no control channel to mounts on this system")
        }
        Command::Forget(args) => forget::run(args),
        Command::Files(command) => files::run(command),
        Command::Sharing(command) => sharing::run(command),
        Command::Recovery(command) => recovery::run(command),
        Command::Vault(command) => cryptomator::run(command),
    }
}

/// The error and its causes as one line, "context: cause: cause", leaving out a cause whose text the line
/// already ends with (library errors that show their source in their own message would repeat it).
pub fn describe_error(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("inner failure")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("file x: {0}")]
        struct Outer(#[source] Inner);
        let error = anyhow::Error::new(Outer(Inner)).context("get /a");
        assert_eq!(super::describe_error(&error), "get /a: file x: inner failure");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::describe_error(&plain), "outer: inner");
    }
}
