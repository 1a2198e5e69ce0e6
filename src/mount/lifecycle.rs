//! How a mount ends, written once for every platform (the Linux and macOS session in src/mount/session.rs,
//! the Windows session in platform/windows): the platform turns its events (signals, `cloakfs unmount` and
//! `lock` on its control channel, the idle timeout, sleep or a screen lock, an unmount from outside) into
//! [`Stop`]s; [`on_stop`] decides, uploading everything first and refusing to unmount while that
//! fails; [`wind_down`] unmounts (the platform's own step), uploads what programs wrote until the unmount,
//! answers the requester and says plainly what, if anything, is lost.

use std::future::Future;
use std::time::Duration;

use super::control::{MountStatus, Reply, Request};
use super::output::say;
use crate::vfs::Engine;

/// How long a suspend lock waits for uploads before it unmounts anyway (logind's default delay is 5 s).
pub const SUSPEND_FLUSH_BUDGET: Duration = Duration::from_secs(4);

/// Why the mount stops, with the connection of a request to answer once it is done.
pub enum Stop<W> {
    /// A signal or the idle timeout: upload, unmount.
    Now,
    /// Unmounted from outside (`fusermount -u`): nothing to unmount any more.
    External,
    /// `cloakfs unmount`.
    Unmount(W),
    /// `cloakfs lock [--discard]`.
    Lock(W, bool),
    /// Sleep or a screen lock (`--lock-on-suspend`): upload within a budget, unmount regardless.
    Suspend,
}

/// A request's connection (a Unix socket, a named pipe), answered with one reply.
pub trait Requester: Send {
    /// Writes `reply` and ends the connection (errors are ignored: the requester may be gone).
    fn answer(&mut self, reply: &Reply) -> impl Future<Output = ()> + Send;
}

#[cfg(unix)]
impl Requester for tokio::net::unix::OwnedWriteHalf {
    async fn answer(&mut self, reply: &Reply) {
        use tokio::io::AsyncWriteExt as _;
        let _ = self.write_all(&reply_line(reply)).await;
        let _ = self.shutdown().await;
    }
}

#[cfg(windows)]
impl Requester for tokio::net::windows::named_pipe::NamedPipeServer {
    async fn answer(&mut self, reply: &Reply) {
        use tokio::io::AsyncWriteExt as _;
        let _ = self.write_all(&reply_line(reply)).await;
        let _ = self.flush().await;
    }
}

/// Answers one control request, read as `line` from `connection`: a status, a question or an answer at once;
/// an unmount or a lock is handed to the session through `stops` (it answers once it is done).
pub async fn handle_request<W: Requester>(
    line: &str,
    mut connection: W,
    status_of: &impl Fn() -> MountStatus,
    stops: &tokio::sync::mpsc::Sender<(Request, W)>,
) {
    let reply = match serde_json::from_str::<Request>(line).map(super::control::question_reply) {
        Ok(Ok(reply)) => reply,
        Ok(Err(Request::Status)) => Reply { status: Some(status_of()), error: None, question: None },
        Ok(Err(request)) => {
            let _ = stops.send((request, connection)).await;
            return;
        }
        Err(error) => Reply { status: None, error: Some(format!("bad request: {error}")), question: None },
    };
    connection.answer(&reply).await;
}

/// A reply as the control channel carries it: one line of JSON.
fn reply_line(reply: &Reply) -> Vec<u8> {
    let mut text = serde_json::to_string(reply).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}

/// What was decided before the unmount.
pub struct Ending<W> {
    /// The request to answer at the end.
    requester: Option<W>,
    /// Everything was in storage before the unmount.
    flushed: bool,
    /// Changes were dropped (`cloakfs lock --discard`).
    discarded: bool,
    /// The mount is gone already (unmounted from outside).
    pub external: bool,
}

/// Acts on `stop`: an unmount or lock uploads everything first and, while that fails, answers the
/// requester why not and the mount keeps serving (`None`). Otherwise returns how the mount ends, with
/// everything that could be uploaded in storage.
pub async fn on_stop<E: Engine, W: Requester>(
    engine: &E,
    stop: Stop<W>,
    status_of: &impl Fn() -> MountStatus,
) -> Option<Ending<W>> {
    let mut ending = Ending { requester: None, flushed: false, discarded: false, external: false };
    let mut suspending = false;
    match stop {
        Stop::Now => {}
        Stop::External => ending.external = true,
        Stop::Suspend => {
            // The system will not wait long: upload what fits in the budget, then unmount anyway; what is left
            // stays in RAM (never on disk) and is uploaded after resume, then the process exits.
            if tokio::time::timeout(SUSPEND_FLUSH_BUDGET, engine.flush_all()).await != Ok(true) {
                say!(
                    "cloakfs: {} file(s) not uploaded before sleep; unmounting anyway, uploading after resume",
                    engine.status().dirty.len()
                );
            }
            suspending = true;
        }
        Stop::Lock(requester, true) => {
            let dropped = engine.discard_dirty().await;
            say!("cloakfs: locked: {dropped} file(s) with changes not on the server were discarded");
            ending.discarded = true;
            ending.requester = Some(requester);
        }
        Stop::Unmount(requester) => {
            // Unmount only with everything in storage: otherwise say what is missing and stay mounted (the data
            // is only in RAM, and the background retries keep going).
            let refusal = "not unmounted: {waiting} file(s) could not be uploaded (server unreachable?) and exist \
                           only in this mount's memory; they are retried in the background. Run `cloakfs unmount` \
                           again later, or `cloakfs lock --discard` to drop them";
            ending.requester = Some(upload_or_refuse(engine, requester, refusal, status_of).await?);
        }
        Stop::Lock(requester, false) => {
            let refusal = "not locked: {waiting} file(s) could not be uploaded (server unreachable?); retry, or \
                           `cloakfs lock --discard` to drop them";
            ending.requester = Some(upload_or_refuse(engine, requester, refusal, status_of).await?);
        }
    }
    // Everything uploaded while still mounted.
    ending.flushed = ending.discarded || suspending || flush_until_clean(engine).await;
    Some(ending)
}

/// Unmounts (`unmount`: the platform's detach, and its wait for the kernel to let go), then uploads what
/// programs wrote until then, answers the requester, and reports the files that could not be uploaded
/// (a count only: stderr may be a journal on disk, and names must not land there).
pub async fn wind_down<E: Engine, W: Requester>(
    engine: &E,
    ending: Ending<W>,
    unmount: impl Future<Output = ()>,
    status_of: &impl Fn() -> MountStatus,
) {
    unmount.await;
    if ending.discarded {
        engine.discard_dirty().await;
    }
    let flushed = ending.flushed && flush_until_clean(engine).await;
    if let Some(mut requester) = ending.requester {
        let error = (!flushed).then(|| "some files could not be uploaded (see the status)".to_owned());
        requester.answer(&Reply { status: Some(status_of()), error, question: None }).await;
    }
    if !flushed {
        say!("cloakfs: {} file(s) were NOT uploaded and are lost", engine.status().dirty.len());
    }
}

/// Uploads and commits everything (two tries) and hands `requester` back to go on stopping; otherwise answers
/// `refusal` (its `{waiting}` replaced by the count of files not uploaded) with the status, and the mount
/// stays.
async fn upload_or_refuse<E: Engine, W: Requester>(
    engine: &E,
    mut requester: W,
    refusal: &str,
    status_of: &impl Fn() -> MountStatus,
) -> Option<W> {
    if engine.flush_all().await || engine.flush_all().await {
        return Some(requester);
    }
    let waiting = engine.status().dirty.len();
    let reply = Reply {
        status: Some(status_of()),
        error: Some(refusal.replace("{waiting}", &waiting.to_string())),
        question: None,
    };
    requester.answer(&reply).await;
    None
}

/// Uploads and commits until nothing is dirty. Retries while storage fails; a second Ctrl-C gives up.
async fn flush_until_clean<E: Engine>(engine: &E) -> bool {
    let mut attempt = 0u32;
    loop {
        if engine.flush_all().await {
            return true;
        }
        attempt += 1;
        let waiting = engine.status().dirty.len();
        say!(
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
