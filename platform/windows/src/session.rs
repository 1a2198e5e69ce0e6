//! `cloakfs mount` on Windows, for both vault formats and every location the Linux build takes (a Nextcloud
//! folder with `--server`; a Cryptomator vault at https://…, sftp://… or a local path): the engine opened
//! as on Linux (`cloakfs::cli::mount::open_engine` / `open_vault_engine`), mounted through WinFsp as a drive
//! letter or a directory, served until Ctrl-C or Ctrl-Break, the console closing, a log-off or shutdown,
//! `cloakfs unmount` or `cloakfs lock` (over the named pipe),
//! the idle timeout or a suspend (`--lock-on-suspend`); the way out is the one every platform shares
//! (`cloakfs::mount::lifecycle`): everything uploaded, the drive removed, late writes uploaded, the keys and
//! caches wiped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use cloakfs::cli::mount::MountCommand;
use cloakfs::mount::control::{pipe, MountStatus, Request};
use cloakfs::mount::lifecycle::{self, Stop};
use cloakfs::mount::output::say_line;
use cloakfs::mount::winfs::info::to_filetime;
use cloakfs::mount::winfs::WinFs;
use cloakfs::mount::MountInfo;
use cloakfs::vfs::Engine;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::windows::named_pipe::NamedPipeServer;
use winfsp::host::{FileSystemHost, FineGuard, VolumeParams};

use crate::adapter::CloakFs;

/// Runs `cloakfs mount` on Windows.
pub fn mount(command: MountCommand) -> anyhow::Result<()> {
    // Spill files: %TEMP%, opened delete-on-close and encrypted under a key that exists only in RAM.
    match command {
        MountCommand::Folder(args) => {
            if args.options.daemon || args.options.daemon_child {
                bail!(
                    "--daemon is not available on Windows yet: start the mount in its own window (`start cloakfs \
                     mount ...`) and stop it with `cloakfs unmount`"
                );
            }
            if args.options.travel && args.mnemonic.mnemonic_file.is_some() {
                bail!("--travel does not read the mnemonic from a file; type it when asked");
            }
            let password = args.connection.password_from(!args.options.travel)?;
            let mnemonic = args.mnemonic.read_text()?;
            let (runtime, engine, info) =
                cloakfs::cli::mount::open_engine(&args, password, &mnemonic, std::env::temp_dir())?;
            drop(mnemonic);
            serve_drive(runtime, engine, info)
        }
        MountCommand::Vault(args) => {
            if args.options.daemon || args.options.daemon_child {
                bail!(
                    "--daemon is not available on Windows yet: start the mount in its own window (`start cloakfs \
                     mount ...`) and stop it with `cloakfs unmount`"
                );
            }
            let (runtime, engine, info) = cloakfs::cli::mount::open_vault_engine(&args, std::env::temp_dir())?;
            serve_drive(runtime, engine, info)
        }
    }
}

/// Mounts `engine` through WinFsp at `info.mountpoint` and serves it until it is to stop.
fn serve_drive<E: Engine>(runtime: tokio::runtime::Runtime, engine: Arc<E>, info: MountInfo) -> anyhow::Result<()> {
    let watch =
        if info.lock_on_suspend { Some(crate::power::watch().map_err(|reason| anyhow!(reason))?) } else { None };
    let _winfsp = winfsp::winfsp_init().map_err(|error| {
        anyhow!("WinFsp cannot be loaded ({error:?}): install it from https://winfsp.dev/rel/ and try again")
    })?;
    let security = crate::security::for_current_user().context("making the drive's security descriptor")?;
    let mut params = VolumeParams::new();
    params
        .filesystem_name("cloakfs")
        .sector_size(4096)
        .sectors_per_allocation_unit(1)
        .max_component_length(255)
        .volume_creation_time(to_filetime(std::time::SystemTime::now()))
        .volume_serial_number(engine.log_id() as u32)
        // Names are compared ignoring case and shown as stored (cloakfs::mount::winfs::names).
        .case_sensitive_search(false)
        .case_preserved_names(true)
        .unicode_on_disk(true)
        .persistent_acls(true)
        .named_streams(false)
        .reparse_points(false)
        // Windows' cache may hold file data for a second; it is written to the engine before each Cleanup,
        // which uploads it.
        .file_info_timeout(1000)
        .flush_and_purge_on_cleanup(true)
        .post_cleanup_when_modified_only(true);
    let file_system = CloakFs {
        winfs: WinFs::new(engine.clone()),
        runtime: runtime.handle().clone(),
        security: security.clone(),
        label: "cloakfs".to_owned(),
    };
    // FineGuard: WinFsp's per-operation locking, so that reads of different files run in parallel.
    let mut host: FileSystemHost<CloakFs<E>, FineGuard> =
        FileSystemHost::new(params, file_system).map_err(|error| anyhow!("WinFsp: {error:?}"))?;
    let mountpoint = info.mountpoint.clone();
    host.mount(mountpoint.as_os_str()).map_err(|error| {
        anyhow!(
            "mounting at {} failed: {error:?} (a free drive letter like X: or a path that does not exist yet)",
            mountpoint.display()
        )
    })?;
    host.start().map_err(|error| anyhow!("starting WinFsp's dispatcher: {error:?}"))?;
    say_line(format_args!(
        "cloakfs: {} ({}) mounted at {} (Ctrl-C or `cloakfs unmount {}` to upload and unmount)",
        info.remote,
        info.server,
        mountpoint.display(),
        mountpoint.display()
    ));
    let result = runtime.block_on(serve(engine.clone(), &info, watch, security, &mut host));
    engine.wipe();
    result
}

/// Serves the control pipe (created with `pipe_security`, the drive's own descriptor: the user and SYSTEM
/// only) until a stop request, Ctrl-C, the idle timeout or a lock notification; then winds down as every
/// platform does, removing the drive as its unmount step.
async fn serve<E: Engine>(
    engine: Arc<E>,
    info: &MountInfo,
    mut watch: Option<crate::power::SuspendWatch>,
    pipe_security: Vec<u8>,
    host: &mut FileSystemHost<CloakFs<E>, FineGuard>,
) -> anyhow::Result<()> {
    let ticker = engine.clone().spawn_ticker();
    let status_of = {
        let engine = engine.clone();
        let info = info.clone();
        move || MountStatus::describe(&info, &info.mountpoint, &engine.status())
    };
    let (stop_sender, mut stop_requests) = tokio::sync::mpsc::channel::<(Request, NamedPipeServer)>(4);
    let mut listener =
        pipe::PipeListener::bind(&pipe::own_pipe(), pipe_security).context("creating the control pipe")?;
    let control_task = {
        let status_of = status_of.clone();
        tokio::spawn(async move {
            while let Ok(connection) = listener.accept().await {
                let status_of = status_of.clone();
                let stop_sender = stop_sender.clone();
                tokio::spawn(async move {
                    let mut reader = BufReader::new(connection);
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.is_err() {
                        return;
                    }
                    lifecycle::handle_request(&line, reader.into_inner(), &status_of, &stop_sender).await;
                });
            }
        })
    };
    let idle_timeout = info.idle_timeout;
    // Closing the console window, logging off and shutting down give the process a few seconds (Windows
    // ends it then): start uploading at once, as Ctrl-C and Ctrl-Break do.
    use tokio::signal::windows as console;
    let (mut close, mut brk) = (console::ctrl_close()?, console::ctrl_break()?);
    let (mut logoff, mut shutdown) = (console::ctrl_logoff()?, console::ctrl_shutdown()?);
    let ending = loop {
        let stop = tokio::select! {
            _ = tokio::signal::ctrl_c() => { say_line(format_args!("cloakfs: interrupted: uploading, then unmounting")); Stop::Now }
            _ = brk.recv() => { say_line(format_args!("cloakfs: Ctrl-Break: uploading, then unmounting")); Stop::Now }
            _ = close.recv() => { say_line(format_args!("cloakfs: the console closes: uploading, then unmounting")); Stop::Now }
            _ = logoff.recv() => { say_line(format_args!("cloakfs: logging off: uploading, then unmounting")); Stop::Now }
            _ = shutdown.recv() => { say_line(format_args!("cloakfs: shutting down: uploading, then unmounting")); Stop::Now }
            Some((request, connection)) = stop_requests.recv() => match request {
                Request::Lock { discard } => Stop::Lock(connection, discard),
                _ => Stop::Unmount(connection),
            },
            Some(reason) = next_suspend(&mut watch) => {
                say_line(format_args!("cloakfs: {reason}: uploading, unmounting and wiping"));
                Stop::Suspend
            }
            _ = idle(&*engine, idle_timeout) => {
                say_line(format_args!("cloakfs: idle for {} s: uploading, unmounting and wiping", engine.idle_for().as_secs()));
                Stop::Now
            }
        };
        if let Some(ending) = lifecycle::on_stop(&*engine, stop, &status_of).await {
            break ending;
        }
    };
    let unmount = async {
        host.stop();
        host.unmount();
    };
    lifecycle::wind_down(&*engine, ending, unmount, &status_of).await;
    ticker.abort();
    control_task.abort();
    Ok(())
}

async fn next_suspend(watch: &mut Option<crate::power::SuspendWatch>) -> Option<crate::power::LockReason> {
    match watch {
        Some(watch) => watch.requests.recv().await,
        None => std::future::pending().await,
    }
}

async fn idle<E: Engine>(engine: &E, timeout: Option<Duration>) {
    match timeout {
        Some(timeout) => engine.idle_after(timeout).await,
        None => std::future::pending().await,
    }
}
