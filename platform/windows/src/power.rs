//! `--lock-on-suspend` on Windows: the power notification that the system is about to sleep
//! (PBT_APMSUSPEND through PowerRegisterSuspendResumeNotification, no window needed). Screen-lock
//! notifications (WTS_SESSION_LOCK) need a window and a message loop and are not watched yet: the README
//! and THREAT-MODEL say so, and `cloakfs mount --lock-on-suspend` prints it.

use std::ffi::c_void;

use windows::Win32::Foundation::HANDLE;
use windows::Win32::System::Power::{
    PowerRegisterSuspendResumeNotification, PowerUnregisterSuspendResumeNotification,
    DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS, HPOWERNOTIFY,
};
use windows::Win32::UI::WindowsAndMessaging::{DEVICE_NOTIFY_CALLBACK, PBT_APMSUSPEND};

/// A registration: suspends arrive on the receiver until it is dropped.
pub struct SuspendWatch {
    handle: HPOWERNOTIFY,
    /// Kept alive for the callback (its context pointer points into it).
    _parameters: Box<DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS>,
    _sender: Box<tokio::sync::mpsc::UnboundedSender<()>>,
    /// One message per suspend.
    pub suspends: tokio::sync::mpsc::UnboundedReceiver<()>,
}

unsafe extern "system" fn on_power(context: *const c_void, kind: u32, _setting: *const c_void) -> u32 {
    if kind == PBT_APMSUSPEND {
        // SAFETY: `context` is the sender boxed in `watch`, alive until the registration is removed.
        let sender = unsafe { &*context.cast::<tokio::sync::mpsc::UnboundedSender<()>>() };
        let _ = sender.send(());
    }
    0
}

/// Registers for suspend notifications.
pub fn watch() -> Result<SuspendWatch, String> {
    let (sender, suspends) = tokio::sync::mpsc::unbounded_channel();
    let sender = Box::new(sender);
    let mut parameters = Box::new(DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS {
        Callback: Some(on_power),
        Context: (&*sender as *const tokio::sync::mpsc::UnboundedSender<()>).cast_mut().cast(),
    });
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: the parameters and the sender they point to live in the returned watch, which unregisters
    // before they are dropped.
    let error = unsafe {
        PowerRegisterSuspendResumeNotification(
            DEVICE_NOTIFY_CALLBACK,
            HANDLE((&mut *parameters as *mut DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS).cast()),
            &mut handle,
        )
    };
    if error.is_err() {
        return Err(format!("cannot watch for suspend (PowerRegisterSuspendResumeNotification: {error:?})"));
    }
    Ok(SuspendWatch { handle: HPOWERNOTIFY(handle as isize), _parameters: parameters, _sender: sender, suspends })
}

impl Drop for SuspendWatch {
    fn drop(&mut self) {
        // SAFETY: the registration made in `watch`.
        let _ = unsafe { PowerUnregisterSuspendResumeNotification(self.handle) };
    }
}
