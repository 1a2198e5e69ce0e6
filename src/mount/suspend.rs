//! `--lock-on-suspend`: watch D-Bus for the moments the decrypted view must vanish.
//!
//! - system bus: logind's `org.freedesktop.login1.Manager.PrepareForSleep(true)` (suspend or hibernate is
//!   about to start). A *delay* inhibitor is taken at start, so logind waits (up to its `InhibitDelayMaxSec`,
//!   5 s by default) while the mount uploads and unmounts; it is released once the mount is gone.
//! - system bus: `org.freedesktop.login1.Session.Lock` for this process's session (`loginctl lock-session`,
//!   what desktops send when the screen is to be locked).
//! - session bus: `ActiveChanged(true)` of `org.freedesktop.ScreenSaver` (KDE and others) and
//!   `org.gnome.ScreenSaver` (GNOME): the screen locker came up.
//!
//! Signals are matched by interface, member and path, not by sender: any local process on the bus can
//! send them, and the worst it can do is lock the mount early, which is the safe direction.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

/// Why the mount locks itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockReason {
    /// The system is about to suspend or hibernate.
    Sleep,
    /// logind asked this session to lock.
    SessionLock,
    /// The session's screen locker came up.
    ScreenLocked,
}

impl std::fmt::Display for LockReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Sleep => "the system is about to sleep",
            Self::SessionLock => "the session is being locked",
            Self::ScreenLocked => "the screen locked",
        })
    }
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch for suspend on the system D-Bus ({0}); without it --lock-on-suspend cannot work")]
pub struct WatchError(String);

/// A running watch: lock requests arrive on [`SuspendWatch::next`].
pub struct SuspendWatch {
    receiver: mpsc::Receiver<LockReason>,
    inhibitor: Arc<Mutex<Option<zbus::zvariant::OwnedFd>>>,
    /// Kept so the subscriptions live as long as the watch.
    _connections: Vec<Connection>,
}

impl SuspendWatch {
    /// The next lock request (pending forever once all watchers ended).
    pub async fn next(&mut self) -> LockReason {
        match self.receiver.recv().await {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// Lets the system go to sleep (drops logind's delay inhibitor), once the mount is gone.
    pub fn release_inhibitor(&self) {
        self.inhibitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }
}

fn rule(interface: &str, member: &str, path: Option<&str>) -> zbus::Result<MatchRule<'static>> {
    let mut builder =
        MatchRule::builder().msg_type(Type::Signal).interface(interface.to_owned())?.member(member.to_owned())?;
    if let Some(path) = path {
        builder = builder.path(path.to_owned())?;
    }
    Ok(builder.build())
}

/// Forwards signals matching `rule` whose boolean argument is `true` (or that carry none, when `no_argument`).
async fn forward(
    connection: &Connection,
    rule: MatchRule<'static>,
    no_argument: bool,
    reason: LockReason,
    sender: mpsc::Sender<LockReason>,
) -> zbus::Result<()> {
    let mut stream = MessageStream::for_match_rule(rule, connection, Some(16)).await?;
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let fire = no_argument || message.body().deserialize::<bool>().unwrap_or(false);
            if fire {
                tracing::debug!(?reason, "lock signal received");
                if sender.send(reason).await.is_err() {
                    break;
                }
            } else {
                tracing::debug!(?reason, "signal is not a lock request (resume, unlock); ignored");
            }
        }
    });
    Ok(())
}

/// Subscribes to the signals above. Fails only when the system bus (sleep signal) is unusable; the session
/// and screen-locker watches are best effort (logged when missing).
pub async fn watch() -> Result<SuspendWatch, WatchError> {
    let (sender, receiver) = mpsc::channel(4);
    let system = Connection::system().await.map_err(|error| WatchError(error.to_string()))?;
    let sleep_rule = rule("org.freedesktop.login1.Manager", "PrepareForSleep", Some("/org/freedesktop/login1"))
        .map_err(|error| WatchError(error.to_string()))?;
    forward(&system, sleep_rule, false, LockReason::Sleep, sender.clone())
        .await
        .map_err(|error| WatchError(error.to_string()))?;

    let inhibitor = Arc::new(Mutex::new(None));
    match system
        .call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "Inhibit",
            &("sleep", "cloakfs", "upload and unmount the encrypted folder", "delay"),
        )
        .await
        .and_then(|reply| reply.body().deserialize::<zbus::zvariant::OwnedFd>())
    {
        Ok(fd) => *inhibitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fd),
        Err(error) => tracing::info!(%error, "no logind sleep inhibitor: sleep will not wait for the upload"),
    }

    let session_path = system
        .call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "GetSessionByPID",
            &(std::process::id()),
        )
        .await
        .and_then(|reply| reply.body().deserialize::<zbus::zvariant::OwnedObjectPath>());
    match session_path {
        Ok(path) => {
            let subscribed = match rule("org.freedesktop.login1.Session", "Lock", Some(path.as_str())) {
                Ok(lock_rule) => forward(&system, lock_rule, true, LockReason::SessionLock, sender.clone()).await,
                Err(error) => Err(error),
            };
            if let Err(error) = subscribed {
                tracing::info!(%error, "not watching logind session locks");
            }
        }
        Err(error) => tracing::info!(%error, "no logind session for this process: not watching session locks"),
    }

    let mut connections = vec![system];
    match Connection::session().await {
        Ok(session) => {
            for interface in ["org.freedesktop.ScreenSaver", "org.gnome.ScreenSaver"] {
                let subscribed = match rule(interface, "ActiveChanged", None) {
                    Ok(screen_rule) => {
                        forward(&session, screen_rule, false, LockReason::ScreenLocked, sender.clone()).await
                    }
                    Err(error) => Err(error),
                };
                if let Err(error) = subscribed {
                    tracing::info!(%error, interface, "not watching the screen locker");
                }
            }
            connections.push(session);
        }
        Err(error) => tracing::info!(%error, "no session D-Bus: not watching the screen locker"),
    }
    Ok(SuspendWatch { receiver, inhibitor, _connections: connections })
}
