//! `cloakfs mount` on Linux and macOS (FUSE), for every vault format: in the foreground, or with `--daemon`
//! in the background. The background mount is the same command started again with `--daemon-child`: it asks
//! every question on this terminal itself, mounts, tells this process it is ready, and only then leaves the
//! terminal ([`crate::mount::output::detach`]); no secret passes between the two processes.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::engine::open_engine;
use super::{MountArgs, MountOptions};
use crate::mount;
use crate::mount::output::say;

/// Runs `cloakfs mount` of a Nextcloud folder.
pub fn run(args: MountArgs) -> anyhow::Result<()> {
    if args.options.travel && args.mnemonic.mnemonic_file.is_some() {
        bail!(
            "--travel does not read the mnemonic from a file (a file on this laptop would outlive the mount); \
             type it when asked"
        );
    }
    if args.options.daemon && !args.options.daemon_child {
        return spawn_daemon(&args.mountpoint);
    }
    let password = args.connection.password_from(!args.options.travel)?;
    let mnemonic_text = args.mnemonic.read_text()?;
    let (runtime, core, info) = open_engine(&args, password, &mnemonic_text, default_spill_dir())?;
    drop(mnemonic_text);
    mount::run(&runtime, core, info, |mountpoint| announce(&args.options, &args.remote, mountpoint))?;
    Ok(())
}

/// Says that `what` is mounted at `mountpoint` (the line scripts and tests wait for) and, for a background
/// mount, detaches and tells the waiting parent.
pub(super) fn announce(options: &MountOptions, what: &str, mountpoint: &Path) {
    let shown = mountpoint.display();
    say!("cloakfs: {what} mounted at {shown} (Ctrl-C or `cloakfs unmount {shown}` to upload and unmount)");
    if !options.daemon_child {
        return;
    }
    let log_file = match mount::control::runtime_dir() {
        Ok(directory) => directory.join(format!("{}.log", std::process::id())),
        Err(error) => {
            println!("error: cannot detach: {error}");
            return;
        }
    };
    let detached = mount::output::detach(&log_file, |destination| {
        println!("ready\t{destination}");
        let _ = std::io::stdout().flush();
    });
    if let Err(error) = detached {
        // Still on the terminal: the parent reports the failure, and the closed pipe to it ends this mount.
        println!("error: cannot detach: {error}");
        let _ = std::io::stdout().flush();
    }
}

/// $TMPDIR if set, else /var/tmp (on disk, unlike a tmpfs /tmp, so files larger than RAM fit).
pub(super) fn default_spill_dir() -> PathBuf {
    std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

/// `--daemon`: starts this command again as `--daemon-child` on the same terminal (it asks its own
/// questions), and returns once it reports the mount ready, or fails with its exit status if it ends first
/// (its error is already on the terminal).
pub(super) fn spawn_daemon(mountpoint: &Path) -> anyhow::Result<()> {
    let executable = std::env::current_exe().context("finding the cloakfs executable")?;
    let mut arguments: Vec<std::ffi::OsString> =
        std::env::args_os().skip(1).filter(|argument| argument != "--daemon").collect();
    // Right after `mount`: anything after a `--` is positional.
    arguments.insert(1.min(arguments.len()), "--daemon-child".into());
    let mut child = std::process::Command::new(executable)
        .args(arguments)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the background mount")?;
    let stdout = child.stdout.take().context("no pipe from the background mount")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).context("waiting for the background mount")?;
    match line.trim_end().split_once('\t') {
        Some(("ready", destination)) => {
            println!(
                "cloakfs: mounted in the background (pid {}); messages go to {destination}; `cloakfs unmount {}` \
                 uploads and stops it",
                child.id(),
                mountpoint.display()
            );
            Ok(())
        }
        _ if line.starts_with("error: ") => bail!("{}", line.trim_end().trim_start_matches("error: ")),
        _ => {
            let status = child.wait().context("waiting for the background mount")?;
            bail!("the background mount did not start ({status}); its message is above")
        }
    }
}
