//! `cloakfs unmount`, `cloakfs lock` and `cloakfs status`: requests to running mounts over their control
//! channels (Unix sockets; named pipes on Windows), the same on every platform.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::super::common::runtime;
use super::{LockArgs, UnmountArgs};
use crate::mount::control::{self, Request};

/// Whether a mount reported at `mounted` is the one the user named as `named`: the same absolute path; on
/// Windows also ignoring case and a trailing separator, and a drive letter given as `X:` or `X:\`.
fn same_mountpoint(mounted: &Path, named: &Path) -> bool {
    same_mountpoint_on(cfg!(windows), mounted, named)
}

fn same_mountpoint_on(windows: bool, mounted: &Path, named: &Path) -> bool {
    let key = |path: &Path| -> PathBuf {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        if windows {
            path.to_string_lossy().to_uppercase().trim_end_matches(['\\', '/']).into()
        } else {
            path
        }
    };
    let drive = |path: &Path| {
        let text = path.to_string_lossy();
        let is_drive =
            matches!(text.as_bytes(), [letter, b':'] | [letter, b':', b'\\' | b'/'] if letter.is_ascii_alphabetic());
        (windows && is_drive).then(|| text[..2].to_uppercase())
    };
    match (drive(mounted), drive(named)) {
        (Some(mounted), Some(named)) => mounted == named,
        (None, None) => key(mounted) == key(named),
        _ => false,
    }
}

/// Runs `cloakfs unmount`.
pub fn unmount(args: UnmountArgs) -> anyhow::Result<()> {
    let target = std::path::absolute(&args.mountpoint).context("the mount point")?;
    let runtime = runtime()?;
    let mounts = runtime.block_on(control::all_mounts())?;
    if let Some((socket, _)) = mounts.iter().find(|(_, status)| same_mountpoint(&status.mountpoint, &args.mountpoint)) {
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
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    if crate::mount::is_mounted(&target) {
        // No process serves it: a stale mount. Detach it.
        crate::mount::detach(&target).with_context(|| format!("detaching the stale mount at {}", target.display()))?;
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
            let found: Vec<_> =
                mounts.into_iter().filter(|(_, status)| same_mountpoint(&status.mountpoint, mountpoint)).collect();
            if found.is_empty() {
                bail!("nothing of cloakfs is mounted at {}", mountpoint.display());
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
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    let broken = crate::mount::stale_mounts();
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    let broken: Vec<PathBuf> = Vec::new();
    if mounts.is_empty() && broken.is_empty() {
        writeln!(out, "no cloakfs mounts")?;
        return Ok(());
    }
    for path in &broken {
        writeln!(
            out,
            "{}  BROKEN: the process that served it is gone (killed or crashed; what it had not uploaded is lost)\n  \
             clean it with `cloakfs unmount {}` (or `fusermount3 -u {}`), or mount there again",
            path.display(),
            path.display(),
            path.display()
        )?;
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
        let suspend = match (status.lock_on_suspend, cfg!(windows)) {
            (false, _) => "",
            (true, false) => "; locks on sleep and screen lock",
            (true, true) => "; locks on sleep and session lock",
        };
        writeln!(out, "  travel: {idle}{suspend}")?;
        writeln!(
            out,
            "  spill files: {} (encrypted, unnamed); key memory: {}",
            number("spill_files"),
            if core.get("keys_locked").and_then(serde_json::Value::as_bool) == Some(false) {
                "NOT locked (over the system's limit, RLIMIT_MEMLOCK on Unix: keys may reach swap)"
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
    use super::*;

    #[test]
    fn mountpoints_match_the_way_each_system_names_them() {
        let same = |windows, a: &str, b: &str| same_mountpoint_on(windows, Path::new(a), Path::new(b));
        assert!(same(false, "/home/alice/Vault", "/home/alice/Vault/"));
        assert!(!same(false, "/home/alice/Vault", "/home/alice/vault"));
        assert!(same(true, "X:", "x:\\"));
        assert!(same(true, "X:\\", "x:"));
        assert!(!same(true, "X:", "Y:"));
        assert!(!same(true, "X:", "X:\\Vault"));
        assert!(same(true, "C:\\Users\\me\\Vault", "c:\\users\\ME\\vault\\"));
        assert!(!same(true, "C:\\Users\\me\\Vault", "C:\\Users\\me\\Vault2"));
    }
}
