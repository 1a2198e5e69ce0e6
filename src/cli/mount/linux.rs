//! The mount commands on Linux: mount (in the foreground or as a daemon), unmount, lock and status over
//! the control sockets.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::super::common::{parse_mnemonic, runtime};
use super::{LockArgs, MountArgs, UnmountArgs, TRAVEL_IDLE_TIMEOUT};
use crate::mount::control::{self, Request};
use crate::mount::core::{Core, CoreOptions};
use crate::mount::{self, MountInfo};
use crate::session::unlock;
use crate::vault::{Vault, VaultError};

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

/// $TMPDIR if set, else /var/tmp (on disk, unlike a tmpfs /tmp, so files larger than RAM fit).
fn default_spill_dir() -> PathBuf {
    std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

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
