//! `cloakfs mount /Vault X:` on Windows: the engine opened as on Linux (`cloakfs::cli::mount::open_engine`),
//! mounted through WinFsp as a drive letter or a directory, served until Ctrl-C, `cloakfs unmount` or
//! `cloakfs lock` (over the named pipe), the idle timeout or a suspend (`--lock-on-suspend`); on the way
//! out everything is uploaded, the drive removed and the keys and caches wiped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use cloakfs::cli::mount::MountArgs;
use cloakfs::mount::control::{self, pipe, MountStatus, Reply, Request};
use cloakfs::mount::core::Core;
use cloakfs::mount::winfs::info::to_filetime;
use cloakfs::mount::winfs::WinFs;
use cloakfs::mount::MountInfo;
use cloakfs::storage::NextcloudClient;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::windows::named_pipe::NamedPipeServer;
use winfsp::host::{FileSystemHost, FineGuard, VolumeParams};

use crate::adapter::CloakFs;

type Engine = Arc<Core<NextcloudClient>>;

/// Runs `cloakfs mount` on Windows.
pub fn mount(args: MountArgs) -> anyhow::Result<()> {
    if args.daemon || args.daemon_child {
        bail!(
            "--daemon is not available on Windows yet: start the mount in its own window (`start cloakfs mount \
             ...`) and stop it with `cloakfs unmount`"
        );
    }
    if args.options.travel && args.mnemonic.mnemonic_file.is_some() {
        bail!("--travel does not read the mnemonic from a file; type it when asked");
    }
    let password = args.connection.password_from(!args.options.travel)?;
    let mnemonic = args.mnemonic.read_text()?;
    // Spill files: %TEMP%, opened delete-on-close and encrypted under a key that exists only in RAM.
    let (runtime, core, info) = cloakfs::cli::mount::open_engine(&args, password, &mnemonic, std::env::temp_dir())?;
    drop(mnemonic);
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
        .volume_serial_number(core.root_file_id() as u32)
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
        winfs: WinFs::new(core.clone()),
        runtime: runtime.handle().clone(),
        security: security.clone(),
        label: "cloakfs".to_owned(),
    };
    // FineGuard: WinFsp's per-operation locking, so that reads of different files run in parallel.
    let mut host: FileSystemHost<CloakFs, FineGuard> =
        FileSystemHost::new(params, file_system).map_err(|error| anyhow!("WinFsp: {error:?}"))?;
    let mountpoint = info.mountpoint.clone();
    host.mount(mountpoint.as_os_str()).map_err(|error| {
        anyhow!(
            "mounting at {} failed: {error:?} (a free drive letter like X: or a path that does not exist yet)",
            mountpoint.display()
        )
    })?;
    host.start().map_err(|error| anyhow!("starting WinFsp's dispatcher: {error:?}"))?;
    eprintln!(
        "cloakfs: {} mounted at {} (Ctrl-C or `cloakfs unmount {}` to upload and unmount)",
        info.remote,
        mountpoint.display(),
        mountpoint.display()
    );
    let result = runtime.block_on(serve(core.clone(), &info, watch, security));
    host.stop();
    host.unmount();
    core.wipe();
    result
}

/// Why the mount stops.
enum Stop {
    Now,
    Suspend(crate::power::LockReason),
    Unmount(NamedPipeServer),
    Lock(NamedPipeServer, bool),
}

/// Serves the control pipe (created with `pipe_security`, the drive's own descriptor: the user and SYSTEM
/// only) until a stop request, Ctrl-C, the idle timeout or a lock notification.
async fn serve(
    core: Engine,
    info: &MountInfo,
    mut watch: Option<crate::power::SuspendWatch>,
    pipe_security: Vec<u8>,
) -> anyhow::Result<()> {
    let ticker = core.spawn_ticker();
    let status_of = {
        let core = core.clone();
        let info = info.clone();
        move || MountStatus::describe(&info, &info.mountpoint, &core.status())
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
                    let mut connection = reader.into_inner();
                    let reply = match serde_json::from_str::<Request>(&line).map(control::question_reply) {
                        Ok(Ok(reply)) => reply,
                        Ok(Err(Request::Status)) => Reply { status: Some(status_of()), error: None, question: None },
                        Ok(Err(request)) => {
                            let _ = stop_sender.send((request, connection)).await;
                            return;
                        }
                        Err(error) => {
                            Reply { status: None, error: Some(format!("bad request: {error}")), question: None }
                        }
                    };
                    write_reply(&mut connection, &reply).await;
                });
            }
        })
    };
    let idle_timeout = info.idle_timeout;
    let mut requester = None;
    let mut discarded = false;
    loop {
        let stop = tokio::select! {
            _ = tokio::signal::ctrl_c() => { eprintln!("cloakfs: interrupted: uploading, then unmounting"); Stop::Now }
            Some((request, connection)) = stop_requests.recv() => match request {
                Request::Lock { discard } => Stop::Lock(connection, discard),
                _ => Stop::Unmount(connection),
            },
            Some(reason) = next_suspend(&mut watch) => Stop::Suspend(reason),
            _ = idle(&core, idle_timeout) => {
                eprintln!("cloakfs: idle for {} s: uploading, unmounting and wiping", core.idle_for().as_secs());
                Stop::Now
            }
        };
        match stop {
            Stop::Now => break,
            Stop::Suspend(reason) => {
                eprintln!("cloakfs: {reason}: uploading, unmounting and wiping");
                let _ = tokio::time::timeout(Duration::from_secs(4), core.flush_all()).await;
                break;
            }
            Stop::Lock(connection, true) => {
                let dropped = core.discard_dirty().await;
                eprintln!("cloakfs: locked: {dropped} file(s) with changes not on the server were discarded");
                discarded = true;
                requester = Some(connection);
                break;
            }
            Stop::Unmount(mut connection) | Stop::Lock(mut connection, false) => {
                if core.flush_all().await || core.flush_all().await {
                    requester = Some(connection);
                    break;
                }
                let waiting = core.status().dirty.len();
                let error = format!(
                    "not unmounted: {waiting} file(s) could not be uploaded (server unreachable?) and exist only in \
                     this mount's memory; they are retried. Try again later, or `cloakfs lock --discard`"
                );
                write_reply(&mut connection, &Reply { status: Some(status_of()), error: Some(error), question: None })
                    .await;
            }
        }
    }
    let flushed = discarded || core.flush_all().await || core.flush_all().await;
    ticker.abort();
    if let Some(mut connection) = requester {
        let error = (!flushed).then(|| "some files could not be uploaded (see the status)".to_owned());
        write_reply(&mut connection, &Reply { status: Some(status_of()), error, question: None }).await;
    }
    control_task.abort();
    if !flushed {
        eprintln!("cloakfs: {} file(s) were NOT uploaded and are lost", core.status().dirty.len());
    }
    Ok(())
}

async fn next_suspend(watch: &mut Option<crate::power::SuspendWatch>) -> Option<crate::power::LockReason> {
    match watch {
        Some(watch) => watch.requests.recv().await,
        None => std::future::pending().await,
    }
}

async fn idle(core: &Engine, timeout: Option<Duration>) {
    match timeout {
        Some(timeout) => core.idle_after(timeout).await,
        None => std::future::pending().await,
    }
}

async fn write_reply(connection: &mut NamedPipeServer, reply: &Reply) {
    let mut text = serde_json::to_string(reply).unwrap_or_default();
    text.push('\n');
    let _ = connection.write_all(text.as_bytes()).await;
    let _ = connection.flush().await;
}
