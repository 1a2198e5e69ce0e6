//! The mount session (Linux): mount the FUSE adapter over an [`Engine`], answer `cloakfs status`, `unmount` and
//! `lock` on the control socket, stop on a signal, an external unmount, the idle timeout (travel mode) or a
//! suspend, and on the way out upload everything, detach and wipe.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::control::{self, MountStatus, Reply, Request};
use super::engine::Engine;
use super::table::{absolute, detach, prepare_mountpoint};
use super::{fuse, suspend, MountError, MountInfo};

/// Mounts `core` at `info.mountpoint` and serves until asked to stop; then uploads everything still dirty,
/// unmounts and wipes the core's memory. `ready` is called once the file system is mounted.
pub fn run<E: Engine>(
    runtime: &tokio::runtime::Runtime,
    core: Arc<E>,
    info: MountInfo,
    ready: impl FnOnce(&Path),
) -> Result<(), MountError> {
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
                    let (read_half, mut write_half) = stream.into_split();
                    let mut line = String::new();
                    if BufReader::new(read_half).read_line(&mut line).await.is_err() {
                        return;
                    }
                    let reply = match serde_json::from_str::<Request>(&line).map(super::control::question_reply) {
                        Ok(Ok(reply)) => reply,
                        Ok(Err(Request::Status)) => Reply { status: Some(status_of()), error: None, question: None },
                        Ok(Err(request)) => {
                            let _ = stop_sender.send((request, write_half)).await;
                            return;
                        }
                        Err(error) => {
                            Reply { status: None, error: Some(format!("bad request: {error}")), question: None }
                        }
                    };
                    let mut text = serde_json::to_string(&reply).unwrap_or_default();
                    text.push('\n');
                    let _ = write_half.write_all(text.as_bytes()).await;
                });
            }
        })
    };

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|error| MountError::Mount { path: mountpoint.to_owned(), reason: error.to_string() })?;
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
    let mut requester = None;
    let mut discarded = false;
    let mut suspending = false;
    let externally_unmounted = loop {
        let stop = tokio::select! {
            _ = tokio::signal::ctrl_c() => { eprintln!("cloakfs: interrupted: uploading, then unmounting"); Stop::Now }
            _ = terminate.recv() => { eprintln!("cloakfs: terminated: uploading, then unmounting"); Stop::Now }
            Some((request, writer)) = stop_requests.recv() => match request {
                Request::Lock { discard } => Stop::Lock(writer, discard),
                _ => Stop::Unmount(writer),
            },
            _ = session_done.notified() => { tracing::info!("unmounted from outside"); Stop::External }
            reason = next_lock(&mut watch) => {
                eprintln!("cloakfs: {reason}: uploading, unmounting and wiping");
                Stop::Suspend
            }
            _ = idle(&*core, idle_timeout) => {
                eprintln!("cloakfs: idle for {} s: uploading, unmounting and wiping", core.idle_for().as_secs());
                Stop::Now
            }
        };
        match stop {
            Stop::Now => break false,
            Stop::Suspend => {
                // The system will not wait long: upload what fits in the budget, then unmount anyway; what
                // is left stays in RAM (never on disk) and is uploaded after resume, then the process exits.
                if tokio::time::timeout(SUSPEND_FLUSH_BUDGET, core.flush_all()).await != Ok(true) {
                    eprintln!(
                        "cloakfs: {} file(s) not uploaded before sleep; unmounting anyway, uploading after resume",
                        core.status().dirty.len()
                    );
                }
                suspending = true;
                break false;
            }
            Stop::External => break true,
            Stop::Unmount(writer) => {
                // Unmount only with everything on the server: otherwise say what is missing and stay
                // mounted (the data is only in RAM, and the background retries keep going).
                let refusal = "not unmounted: {waiting} file(s) could not be uploaded (server unreachable?) and \
                               exist only in this mount's memory; they are retried in the background. Run \
                               `cloakfs unmount` again later, or `cloakfs lock --discard` to drop them";
                if let Some(writer) = upload_or_refuse(&*core, writer, refusal, &status_of).await {
                    requester = Some(writer);
                    break false;
                }
            }
            Stop::Lock(writer, true) => {
                let dropped = core.discard_dirty().await;
                eprintln!("cloakfs: locked: {dropped} file(s) with changes not on the server were discarded");
                discarded = true;
                requester = Some(writer);
                break false;
            }
            Stop::Lock(writer, false) => {
                let refusal = "not locked: {waiting} file(s) could not be uploaded (server unreachable?); retry, \
                               or `cloakfs lock --discard` to drop them";
                if let Some(writer) = upload_or_refuse(&*core, writer, refusal, &status_of).await {
                    requester = Some(writer);
                    break false;
                }
            }
        }
    };

    // Upload everything while still mounted, then detach, wait for the kernel to let go, upload late writes.
    let flushed = discarded || suspending || flush_until_clean(&*core).await;
    if !externally_unmounted {
        if let Err(error) = detach(mountpoint) {
            tracing::warn!(%error, "unmount failed");
        }
    }
    if !externally_unmounted {
        // The detach is lazy: programs that still hold files open keep the connection. Give them a moment,
        // then go on: our exit closes the connection (their next call fails) and the keys are wiped.
        if tokio::time::timeout(SESSION_GRACE, session_done.notified()).await.is_err() {
            eprintln!("cloakfs: programs still had files open in the mount; their handles are closed now");
        }
    }
    if let Some(watch) = &watch {
        // The view is gone: drop clean plaintext now, and let the system sleep.
        core.clear_cache();
        watch.release_inhibitor();
    }
    if discarded {
        core.discard_dirty().await;
    }
    let flushed = flushed && flush_until_clean(&*core).await;
    ticker.abort();
    let status = status_of();
    if let Some(mut requester) = requester {
        let error = (!flushed).then(|| "some files could not be uploaded (see the status)".to_owned());
        write_reply(&mut requester, &Reply { status: Some(status), error, question: None }).await;
    }
    control_task.abort();
    if !flushed {
        // A count only: stderr may be a journal on disk, and names must not land there.
        eprintln!("cloakfs: {} file(s) were NOT uploaded and are lost", core.status().dirty.len());
    }
    Ok(())
}

/// How long programs may keep files open after the mount was detached.
const SESSION_GRACE: Duration = Duration::from_secs(3);

/// Why the mount stops.
enum Stop {
    /// A signal or the idle timeout: upload, unmount.
    Now,
    /// Unmounted from outside.
    External,
    /// `cloakfs unmount`.
    Unmount(tokio::net::unix::OwnedWriteHalf),
    /// `cloakfs lock [--discard]`.
    Lock(tokio::net::unix::OwnedWriteHalf, bool),
    /// Sleep or a screen lock (`--lock-on-suspend`): upload within a budget, unmount regardless.
    Suspend,
}

/// How long a suspend lock waits for uploads before it unmounts anyway (logind's default delay is 5 s).
const SUSPEND_FLUSH_BUDGET: Duration = Duration::from_secs(4);

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

async fn write_reply(writer: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) {
    let mut text = serde_json::to_string(reply).unwrap_or_default();
    text.push('\n');
    let _ = writer.write_all(text.as_bytes()).await;
    let _ = writer.shutdown().await;
}

/// Uploads and commits everything (two tries) and hands `writer` back to go on stopping; otherwise answers
/// `refusal` (its `{waiting}` replaced by the count of files not uploaded) with the status, and the mount
/// stays.
async fn upload_or_refuse<E: Engine>(
    core: &E,
    mut writer: tokio::net::unix::OwnedWriteHalf,
    refusal: &str,
    status_of: &impl Fn() -> MountStatus,
) -> Option<tokio::net::unix::OwnedWriteHalf> {
    if core.flush_all().await || core.flush_all().await {
        return Some(writer);
    }
    let waiting = core.status().dirty.len();
    let reply = Reply {
        status: Some(status_of()),
        error: Some(refusal.replace("{waiting}", &waiting.to_string())),
        question: None,
    };
    write_reply(&mut writer, &reply).await;
    None
}

/// Uploads and commits until nothing is dirty. Retries while the server fails; a second Ctrl-C gives up.
async fn flush_until_clean<E: Engine>(core: &E) -> bool {
    let mut attempt = 0u32;
    loop {
        if core.flush_all().await {
            return true;
        }
        attempt += 1;
        let waiting = core.status().dirty.len();
        eprintln!(
            "cloakfs: {waiting} file(s) not yet on the server (attempt {attempt}); retrying. \
             `cloakfs status` names them; Ctrl-C again gives up and loses them."
        );
        let pause = Duration::from_secs(u64::from(attempt.min(6)) * 2);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = tokio::signal::ctrl_c() => return false,
        }
    }
}
