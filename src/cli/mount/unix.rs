//! `cloakfs mount` on Linux and macOS (FUSE): in the foreground, or as a daemon that gets the secrets
//! through a pipe.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::super::common::parse_mnemonic;
use super::engine::open_engine;
use super::MountArgs;
use crate::mount;

/// Runs `cloakfs mount`.
pub fn run(args: MountArgs) -> anyhow::Result<()> {
    if args.options.travel && args.mnemonic.mnemonic_file.is_some() {
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
        (args.connection.password_from(!args.options.travel)?, args.mnemonic.read_text()?)
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
    let (runtime, core, info) = open_engine(args, password, mnemonic_text, default_spill_dir())?;
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
pub(super) fn default_spill_dir() -> PathBuf {
    std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

/// Starts this command again as a detached child, hands it the secrets through a pipe, and returns once it
/// reports the mount ready (or its error).
fn spawn_daemon(args: &MountArgs) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let password = args.connection.password_from(!args.options.travel)?;
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
