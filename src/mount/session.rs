//! The mount session (Linux, macOS): mount the FUSE adapter over an [`Engine`], answer `cloakfs status`,
//! `unmount` and `lock` on the control socket, stop on a signal (SIGINT, SIGTERM, SIGQUIT, and SIGHUP unless
//! detached), a closed terminal or output pipe, an external unmount, the idle timeout (travel mode) or a
//! suspend, and on the way out upload everything, detach and wipe.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::SignalKind;

use super::control::{self, MountStatus, Request};
use super::lifecycle::{self, Stop};
use super::output::{self, say};
use super::table::{absolute, detach, prepare_mountpoint};
use super::{fuse, suspend, MountError, MountInfo};
use crate::vfs::Engine;

/// Mounts `core` at `info.mountpoint` and serves until asked to stop; then uploads everything still dirty,
/// unmounts and wipes the core's memory. `ready` is called once the file system is mounted.
pub fn run<E: Engine>(
    runtime: &tokio::runtime::Runtime,
    core: Arc<E>,
    info: MountInfo,
    ready: impl FnOnce(&Path),
) -> Result<(), MountError> {
    output::report_panics();
    let mountpoint = absolute(&info.mountpoint)?;
    prepare_mountpoint(&mountpoint)?;
    // Before mounting: a requested lock that cannot work refuses the mount rather than being silently off.
    let watch = if info.lock_on_suspend { Some(runtime.block_on(suspend::watch())?) } else { None };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("cloakfs".into()),
        fuser::MountOption::Subtype("cloakfs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    let adapter = fuse::FuseAdapter::new(core.clone(), runtime.handle().clone());
    let session = fuser::Session::new(adapter, &mountpoint, &config)
        .map_err(|error| MountError::Mount { path: mountpoint.clone(), reason: error.to_string() })?;
    let session =
        session.spawn().map_err(|error| MountError::Mount { path: mountpoint.clone(), reason: error.to_string() })?;
    tracing::info!(file_id = core.log_id(), "mounted");

    let socket_path = control::own_socket()?;
    let _ = std::fs::remove_file(&socket_path);
    let result = runtime.block_on(serve(core.clone(), &info, &mountpoint, &socket_path, session, watch, ready));
    let _ = std::fs::remove_file(&socket_path);
    core.wipe();
    result
}

async fn serve<E: Engine>(
    core: Arc<E>,
    info: &MountInfo,
    mountpoint: &Path,
    socket_path: &Path,
    session: fuser::BackgroundSession,
    mut watch: Option<suspend::SuspendWatch>,
    ready: impl FnOnce(&Path),
) -> Result<(), MountError> {
    let idle_timeout = info.idle_timeout;
    let listener = tokio::net::UnixListener::bind(socket_path)
        .map_err(|error| control::ControlError::Socket { path: socket_path.to_owned(), reason: error.to_string() })?;
    // Every signal that would end the process is handled before the mount is announced: from then on, a
    // closed terminal (SIGHUP), Ctrl-C, Ctrl-\ and SIGTERM all upload, unmount and wipe.
    let signal = |kind: SignalKind| {
        tokio::signal::unix::signal(kind)
            .map_err(|error| MountError::Mount { path: mountpoint.to_owned(), reason: error.to_string() })
    };
    let (mut interrupt, mut terminate) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    let (mut hangup, mut quit) = (signal(SignalKind::hangup())?, signal(SignalKind::quit())?);
    let output_gone = output::output_closed();
    tokio::pin!(output_gone);
    let mut output_seen = false;
    ready(mountpoint);

    let ticker = core.clone().spawn_ticker();
    // Unmount and lock requests hand over their connection: the reply is written after the unmount.
    let (stop_sender, mut stop_requests) = tokio::sync::mpsc::channel::<(Request, tokio::net::unix::OwnedWriteHalf)>(4);
    let status_of = {
        let core = core.clone();
        let info = info.clone();
        let mountpoint = mountpoint.to_owned();
        move || MountStatus::describe(&info, &mountpoint, &core.status())
    };
    let control_task = {
        let status_of = status_of.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let status_of = status_of.clone();
                let stop_sender = stop_sender.clone();
                tokio::spawn(async move {
                    let (read_half, write_half) = stream.into_split();
                    let mut line = String::new();
                    if BufReader::new(read_half).read_line(&mut line).await.is_err() {
                        return;
                    }
                    lifecycle::handle_request(&line, write_half, &status_of, &stop_sender).await;
                });
            }
        })
    };

    let session_done = Arc::new(tokio::sync::Notify::new());
    // A plain thread, not spawn_blocking: if programs keep files open after the detach, we stop waiting for
    // it, and the runtime must not wait for it either (the process exit closes the FUSE connection).
    {
        let done = session_done.clone();
        std::thread::Builder::new()
            .name("fuse-session".into())
            .spawn(move || {
                if let Err(error) = session.join() {
                    tracing::warn!(%error, "FUSE session ended with an error");
                }
                done.notify_one();
            })
            .map_err(|error| MountError::Mount { path: mountpoint.to_owned(), reason: error.to_string() })?;
    }
    let ending = loop {
        let stop = tokio::select! {
            _ = interrupt.recv() => { say!("cloakfs: interrupted: uploading, then unmounting"); Stop::Now }
            _ = terminate.recv() => { say!("cloakfs: terminated: uploading, then unmounting"); Stop::Now }
            _ = quit.recv() => { say!("cloakfs: quit: uploading, then unmounting"); Stop::Now }
            _ = hangup.recv() => {
                if output::is_detached() {
                    say!("cloakfs: hang-up ignored: running detached (`cloakfs unmount` or SIGTERM ends the mount)");
                    continue;
                }
                say!("cloakfs: the terminal hung up: uploading, then unmounting");
                Stop::Now
            }
            _ = &mut output_gone, if !output_seen => {
                output_seen = true;
                say!("cloakfs: the mount's output was closed: uploading, then unmounting");
                Stop::Now
            }
            Some((request, writer)) = stop_requests.recv() => match request {
                Request::Lock { discard } => Stop::Lock(writer, discard),
                _ => Stop::Unmount(writer),
            },
            _ = session_done.notified() => { tracing::info!("unmounted from outside"); Stop::External }
            reason = next_lock(&mut watch) => {
                say!("cloakfs: {reason}: uploading, unmounting and wiping");
                Stop::Suspend
            }
            _ = idle(&*core, idle_timeout) => {
                say!("cloakfs: idle for {} s: uploading, unmounting and wiping", core.idle_for().as_secs());
                Stop::Now
            }
        };
        if let Some(ending) = lifecycle::on_stop(&*core, stop, &status_of).await {
            break ending;
        }
    };
    let external = ending.external;
    let unmount = async {
        if !external {
            if let Err(error) = detach(mountpoint) {
                tracing::warn!(%error, "unmount failed");
            }
            // The detach is lazy: programs that still hold files open keep the connection. Give them a moment,
            // then go on: our exit closes the connection (their next call fails) and the keys are wiped.
            if tokio::time::timeout(SESSION_GRACE, session_done.notified()).await.is_err() {
                say!("cloakfs: programs still had files open in the mount; their handles are closed now");
            }
        }
        if let Some(watch) = &watch {
            // The view is gone: drop clean plaintext now, and let the system sleep.
            core.clear_cache();
            watch.release_inhibitor();
        }
    };
    lifecycle::wind_down(&*core, ending, unmount, &status_of).await;
    ticker.abort();
    control_task.abort();
    Ok(())
}

/// How long programs may keep files open after the mount was detached.
const SESSION_GRACE: Duration = Duration::from_secs(3);

/// The next lock request of the suspend watch (never without one).
async fn next_lock(watch: &mut Option<suspend::SuspendWatch>) -> suspend::LockReason {
    match watch {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}

/// Resolves once the mount has been idle for `timeout` (never without one).
async fn idle<E: Engine>(core: &E, timeout: Option<Duration>) {
    match timeout {
        Some(timeout) => core.idle_after(timeout).await,
        None => std::future::pending().await,
    }
}
