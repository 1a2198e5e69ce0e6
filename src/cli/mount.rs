//! `cloakfs mount`, `cloakfs unmount` and `cloakfs status`.

#[cfg(target_os = "linux")]
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
#[cfg(target_os = "linux")]
use std::sync::Arc;
use std::time::Duration;

#[cfg(target_os = "linux")]
use anyhow::{bail, Context};
#[cfg(target_os = "linux")]
use zeroize::Zeroizing;

#[cfg(target_os = "linux")]
use super::common::{parse_mnemonic, runtime};
use super::common::{ConnectionArgs, MnemonicArgs};
#[cfg(target_os = "linux")]
use crate::mount::control::{self, Request};
#[cfg(target_os = "linux")]
use crate::mount::core::{Core, CoreOptions};
#[cfg(target_os = "linux")]
use crate::mount::{self, MountInfo};
#[cfg(target_os = "linux")]
use crate::session::unlock;
#[cfg(target_os = "linux")]
use crate::vault::{Vault, VaultError};

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
    /// Seconds a folder listing is trusted before its ETag is checked again (changes by other clients
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
    /// Files up to this size are queued at close and uploaded by the next commit, so close returns at once
    /// (fast `tar x`, `cp -r`, `git`) and a file removed or replaced before the commit never reaches the
    /// server; larger files, and all files after a failed upload, are uploaded before close returns so close
    /// reports errors. 0: close always waits. fsync always waits for the server.
    #[arg(long, default_value = "128K", value_parser = parse_size, value_name = "SIZE")]
    pub write_behind: u64,
    /// Milliseconds of quiet after the last change before the batch is committed to the server.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub commit_delay: u64,
    /// Unmount, wipe and exit after this long without file activity (reads, writes, listings, changes; an
    /// idle open file does not count), e.g. 15m, 90s, 1h.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Option<Duration>,
    /// Travel profile: the app password is never taken from the OS keyring (CLOAKFS_PASSWORD or a prompt),
    /// the mnemonic is asked at each mount (no --mnemonic-file), and --idle-timeout defaults to 15m.
    #[arg(long)]
    pub travel: bool,
    /// Lock (upload, unmount, wipe) when the system is about to sleep or the screen locks (logind and
    /// screen-saver signals over D-Bus). Refuses to mount if the system D-Bus cannot be watched.
    #[arg(long)]
    pub lock_on_suspend: bool,
    /// Detach and run in the background (logs are discarded; see `cloakfs status`).
    #[arg(long)]
    pub daemon: bool,
    /// Internal: read the password and mnemonic from stdin and report readiness on stdout (used by --daemon).
    #[arg(long, hide = true)]
    pub daemon_child: bool,
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

#[cfg(target_os = "linux")]
/// Runs `cloakfs mount`.
pub fn run(args: MountArgs) -> anyhow::Result<()> {
    if args.travel && args.mnemonic.mnemonic_file.is_some() {
        bail!(
            "--travel does not read the mnemonic from a file (a file on this laptop would outlive the mount); \
             type it when asked"
        );
    }
    if args.daemon && !args.daemon_child {
        return spawn_daemon(&args);
    }
    let (password, mnemonic_text) = if args.daemon_child {
        // The parent passes the secrets through a pipe: never through argv or the environment.
        let stdin = std::io::stdin();
        let mut lines = stdin.lock();
        let mut password = Zeroizing::new(String::new());
        lines.read_line(&mut password).context("reading the password from the parent")?;
        let mut mnemonic = Zeroizing::new(String::new());
        lines.read_line(&mut mnemonic).context("reading the mnemonic from the parent")?;
        (Zeroizing::new(password.trim_end_matches('\n').to_owned()), mnemonic)
    } else {
        (args.connection.password_from(!args.travel)?, args.mnemonic.read_text()?)
    };
    let result = mount_with(&args, password, &mnemonic_text);
    if args.daemon_child {
        if let Err(error) = &result {
            // Tell the waiting parent what went wrong.
            println!("error: {error:#}");
        }
    }
    result
}

#[cfg(target_os = "linux")]
fn mount_with(args: &MountArgs, password: Zeroizing<String>, mnemonic_text: &str) -> anyhow::Result<()> {
    let mnemonic = parse_mnemonic(mnemonic_text)?;
    let spill_directory = args.spill_dir.clone().unwrap_or_else(default_spill_dir);
    crate::mount::content::Spill::new(spill_directory.clone(), 0).check().with_context(|| {
        format!("cannot create temporary files in {} (give another --spill-dir)", spill_directory.display())
    })?;
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
    let options = CoreOptions {
        dir_cache_time: Duration::from_secs_f64(args.dir_cache_time.max(0.0)),
        cache_size: args.cache_size,
        commit_delay: Duration::from_millis(args.commit_delay),
        spill_above: args.spill_above.unwrap_or(args.cache_size),
        spill_directory,
        device: args.device.clone().unwrap_or_else(crate::mount::core::default_device_name),
        write_behind: args.write_behind,
        ..CoreOptions::default()
    };
    let core = Arc::new(Core::new(vault, tree, root, options));
    let info = MountInfo {
        mountpoint: args.mountpoint.clone(),
        server,
        user: args.connection.user.clone(),
        remote: args.remote.clone(),
        idle_timeout: args.idle_timeout.or(args.travel.then_some(TRAVEL_IDLE_TIMEOUT)),
        lock_on_suspend: args.lock_on_suspend,
    };
    let daemon_child = args.daemon_child;
    mount::run(&runtime, core, info, |mountpoint| {
        if daemon_child {
            println!("ready");
            let _ = std::io::stdout().flush();
        } else {
            eprintln!(
                "cloakfs: {} mounted at {} (Ctrl-C or `cloakfs unmount {}` to upload and unmount)",
                args.remote,
                mountpoint.display(),
                mountpoint.display()
            );
        }
    })?;
    Ok(())
}

#[cfg(target_os = "linux")]
/// $TMPDIR if set, else /var/tmp (on disk, unlike a tmpfs /tmp, so files larger than RAM fit).
fn default_spill_dir() -> PathBuf {
    std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

#[cfg(target_os = "linux")]
/// Starts this command again as a detached child, hands it the secrets through a pipe, and returns once it
/// reports the mount ready (or its error).
fn spawn_daemon(args: &MountArgs) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let password = args.connection.password_from(!args.travel)?;
    let mnemonic = args.mnemonic.read_text()?;
    parse_mnemonic(&mnemonic)?;
    let executable = std::env::current_exe().context("finding the cloakfs executable")?;
    let mut arguments: Vec<std::ffi::OsString> =
        std::env::args_os().skip(1).filter(|argument| argument != "--daemon").collect();
    arguments.push("--daemon-child".into());
    let mut command = std::process::Command::new(executable);
    command
        .args(arguments)
        .env_remove("CLOAKFS_PASSWORD")
        .env_remove("CLOAKFS_MNEMONIC")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe; the child leaves the terminal's session (Ctrl-C there does not
    // reach it).
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the background mount")?;
    {
        let mut stdin = child.stdin.take().context("no pipe to the child")?;
        let mut secrets = Zeroizing::new(format!("{}\n{}\n", password.as_str(), mnemonic.trim()));
        stdin.write_all(secrets.as_bytes()).context("passing the secrets to the child")?;
        zeroize::Zeroize::zeroize(&mut *secrets);
    }
    let stdout = child.stdout.take().context("no pipe from the child")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).context("waiting for the background mount")?;
    match line.trim() {
        "ready" => {
            println!(
                "cloakfs: mounted in the background (pid {}); `cloakfs unmount {}` to stop",
                child.id(),
                args.mountpoint.display()
            );
            Ok(())
        }
        "" => bail!("the background mount exited without mounting (run without --daemon to see its log)"),
        message => bail!("{}", message.trim_start_matches("error: ")),
    }
}

#[cfg(target_os = "linux")]
/// Runs `cloakfs unmount`.
pub fn unmount(args: UnmountArgs) -> anyhow::Result<()> {
    let target = std::path::absolute(&args.mountpoint).context("the mount point")?;
    let runtime = runtime()?;
    let mounts = runtime.block_on(control::all_mounts())?;
    if let Some((socket, _)) = mounts.iter().find(|(_, status)| status.mountpoint == target) {
        eprintln!("cloakfs: uploading pending changes, then unmounting {}", target.display());
        let reply = runtime.block_on(control::send(socket, &Request::Unmount))?;
        if let Some(error) = reply.error {
            // The names go to this terminal only (the mount itself never logs them).
            let dirty = reply.status.as_ref().and_then(|status| status.core.get("dirty")).and_then(|v| v.as_array());
            for file in dirty.into_iter().flatten() {
                let path = file.get("path").and_then(serde_json::Value::as_str).unwrap_or("?");
                let size = file.get("size").and_then(serde_json::Value::as_u64).unwrap_or(0);
                let reason = file.get("error").and_then(serde_json::Value::as_str).unwrap_or("waiting for upload");
                eprintln!("  not uploaded: {path} ({size} bytes): {reason}");
            }
            bail!("{error}");
        }
        println!("unmounted {}", target.display());
        return Ok(());
    }
    if mount::is_mounted(&target) {
        // No process serves it: a stale mount. Detach it.
        mount::detach(&target).with_context(|| format!("detaching the stale mount at {}", target.display()))?;
        println!("removed a stale mount at {}", target.display());
        return Ok(());
    }
    bail!("nothing of cloakfs is mounted at {}", target.display())
}

#[cfg(target_os = "linux")]
/// Runs `cloakfs lock`: upload, unmount and wipe now (refusing while changes cannot be uploaded, unless
/// `--discard`).
pub fn lock(args: LockArgs) -> anyhow::Result<()> {
    if args.discard && !args.yes {
        use std::io::IsTerminal as _;
        if !std::io::stdin().is_terminal() {
            bail!("--discard drops changes that are not on the server: confirm with --yes");
        }
        eprint!("cloakfs: changes not yet on the server will be LOST. Type 'discard' to confirm: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).context("reading the confirmation")?;
        if answer.trim() != "discard" {
            bail!("not confirmed; nothing was locked");
        }
    }
    let runtime = runtime()?;
    let mounts = runtime.block_on(control::all_mounts())?;
    let targets: Vec<_> = match &args.mountpoint {
        Some(mountpoint) => {
            let target = std::path::absolute(mountpoint).context("the mount point")?;
            let found: Vec<_> = mounts.into_iter().filter(|(_, status)| status.mountpoint == target).collect();
            if found.is_empty() {
                bail!("nothing of cloakfs is mounted at {}", target.display());
            }
            found
        }
        None => mounts,
    };
    let mut refused = 0;
    for (socket, status) in targets {
        let reply = runtime.block_on(control::send(&socket, &Request::Lock { discard: args.discard }))?;
        match reply.error {
            Some(error) => {
                eprintln!("cloakfs: {}: {error}", status.mountpoint.display());
                refused += 1;
            }
            None => println!("locked {} (unmounted, keys and caches wiped)", status.mountpoint.display()),
        }
    }
    if refused > 0 {
        bail!("{refused} mount(s) not locked");
    }
    Ok(())
}

#[cfg(target_os = "linux")]
/// Runs `cloakfs status`.
pub fn status() -> anyhow::Result<()> {
    let runtime = runtime()?;
    // Written with error handling: `cloakfs status | head` must not panic on a closed pipe.
    let mut out = std::io::stdout().lock();
    let mounts = runtime.block_on(control::all_mounts())?;
    if mounts.is_empty() {
        writeln!(out, "no cloakfs mounts")?;
        return Ok(());
    }
    for (_, status) in mounts {
        let core = &status.core;
        let number = |key: &str| core.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
        writeln!(
            out,
            "{}  ({} on {} as {}, pid {})",
            status.mountpoint.display(),
            status.remote,
            status.server,
            status.user,
            status.pid
        )?;
        writeln!(
            out,
            "  cache: {} of {} MiB in {} files; {} fetching ahead; {} uploads, {} commits{}",
            number("cache_bytes") >> 20,
            number("cache_capacity") >> 20,
            number("cache_entries"),
            number("fetching_ahead"),
            number("uploads"),
            number("commits"),
            if core.get("batch_open").and_then(serde_json::Value::as_bool) == Some(true) { "; batch open" } else { "" }
        )?;
        let idle = match status.idle_timeout_seconds {
            Some(seconds) => format!("locks after {seconds} s idle"),
            None => "no idle timeout".to_owned(),
        };
        let suspend = if status.lock_on_suspend { "; locks on sleep and screen lock" } else { "" };
        writeln!(out, "  travel: {idle}{suspend}")?;
        writeln!(
            out,
            "  spill files: {} (encrypted, unnamed); key memory: {}",
            number("spill_files"),
            if core.get("keys_locked").and_then(serde_json::Value::as_bool) == Some(false) {
                "NOT locked (RLIMIT_MEMLOCK too low: keys may reach swap)"
            } else {
                "locked"
            }
        )?;
        if let Some(error) = core.get("commit_error").and_then(serde_json::Value::as_str) {
            writeln!(out, "  commit error: {error}")?;
        }
        let dirty = core.get("dirty").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
        writeln!(out, "  dirty files: {}", dirty.len())?;
        for file in dirty {
            let path = file.get("path").and_then(serde_json::Value::as_str).unwrap_or("?");
            let size = file.get("size").and_then(serde_json::Value::as_u64).unwrap_or(0);
            match file.get("error").and_then(serde_json::Value::as_str) {
                Some(error) => writeln!(out, "    {path} ({size} bytes): {error}")?,
                None => writeln!(out, "    {path} ({size} bytes): waiting for upload")?,
            }
        }
    }
    Ok(())
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
