//! `--lock-on-suspend` on macOS: not built yet, and refused rather than silently off.
//!
//! What it needs: `IORegisterForSystemPower` (kIOMessageSystemWillSleep, answered with
//! `IOAllowPowerChange` once the mount is gone) and the distributed notification
//! `com.apple.screenIsLocked`, both from a CoreFoundation run loop on a thread of its own. Until that is
//! written and run on a Mac, a mount asked to lock on suspend refuses to start (README, "macOS"); the idle
//! timeout and `cloakfs lock` work as on Linux.

/// Why the mount locks itself (no watch exists on macOS, so no value is ever made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockReason {}

impl std::fmt::Display for LockReason {
    fn fmt(&self, _formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

/// Why watching could not start: always, on macOS.
#[derive(Debug, thiserror::Error)]
#[error(
    "--lock-on-suspend is not available on macOS yet (sleep and screen-lock notifications are not built); \
     mount without it and rely on --idle-timeout and `cloakfs lock`"
)]
pub struct WatchError;

/// A running watch; none can exist on macOS.
pub enum SuspendWatch {}

impl SuspendWatch {
    /// The next lock request.
    pub async fn next(&mut self) -> LockReason {
        match *self {}
    }

    /// Lets the system go to sleep.
    pub fn release_inhibitor(&self) {
        match *self {}
    }
}

/// Refuses: see the module documentation.
pub async fn watch() -> Result<SuspendWatch, WatchError> {
    Err(WatchError)
}
