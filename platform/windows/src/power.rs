//! `--lock-on-suspend` on Windows: the moments the drive must vanish.
//!
//! - The system is about to sleep: PBT_APMSUSPEND through `PowerRegisterSuspendResumeNotification` (a
//!   callback, no window needed).
//! - The session is being locked (Win+L, the screen saver's lock, a lid close set to lock):
//!   WTS_SESSION_LOCK through `WTSRegisterSessionNotification`, which needs a window: a message-only
//!   window on a thread of its own, whose message loop ends when the watch is dropped.
//!
//! Not run on Windows by CI (type-checked only; README, "Windows").

use std::ffi::c_void;
use std::sync::Mutex;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use windows::core::w;
use windows::Win32::Foundation::{HANDLE, HWND, LPARAM, LRESULT, WPARAM};
use windows::Win32::System::LibraryLoader::GetModuleHandleW;
use windows::Win32::System::Power::{
    PowerRegisterSuspendResumeNotification, PowerUnregisterSuspendResumeNotification,
    DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS, HPOWERNOTIFY,
};
use windows::Win32::System::RemoteDesktop::{
    WTSRegisterSessionNotification, WTSUnRegisterSessionNotification, NOTIFY_FOR_THIS_SESSION,
};
use windows::Win32::System::Threading::GetCurrentThreadId;
use windows::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DestroyWindow, DispatchMessageW, GetMessageW, PostThreadMessageW, RegisterClassW,
    DEVICE_NOTIFY_CALLBACK, HWND_MESSAGE, MSG, PBT_APMSUSPEND, WINDOW_EX_STYLE, WINDOW_STYLE, WM_QUIT,
    WM_WTSSESSION_CHANGE, WNDCLASSW, WTS_SESSION_LOCK,
};

/// Why the drive locks itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockReason {
    /// The system is about to sleep or hibernate.
    Sleep,
    /// The user's session is being locked.
    SessionLock,
}

impl std::fmt::Display for LockReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Sleep => "the system is going to sleep",
            Self::SessionLock => "the session is being locked",
        })
    }
}

/// A registration: lock requests arrive on the receiver until it is dropped.
pub struct SuspendWatch {
    handle: HPOWERNOTIFY,
    /// Kept alive for the callback (its context pointer points into it).
    _parameters: Box<DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS>,
    _sender: Box<UnboundedSender<LockReason>>,
    /// The thread of the session-lock window, asked to end on drop.
    session_thread: Option<u32>,
    /// One message per sleep or session lock.
    pub requests: UnboundedReceiver<LockReason>,
}

unsafe extern "system" fn on_power(context: *const c_void, kind: u32, _setting: *const c_void) -> u32 {
    if kind == PBT_APMSUSPEND {
        // SAFETY: `context` is the sender boxed in `watch`, alive until the registration is removed.
        let sender = unsafe { &*context.cast::<UnboundedSender<LockReason>>() };
        let _ = sender.send(LockReason::Sleep);
    }
    0
}

/// Where the session-lock window's procedure sends (one mount per process).
static SESSION_SENDER: Mutex<Option<UnboundedSender<LockReason>>> = Mutex::new(None);

unsafe extern "system" fn on_window_message(window: HWND, message: u32, wparam: WPARAM, lparam: LPARAM) -> LRESULT {
    if message == WM_WTSSESSION_CHANGE && wparam.0 as u32 == WTS_SESSION_LOCK {
        if let Some(sender) = SESSION_SENDER.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            let _ = sender.send(LockReason::SessionLock);
        }
        return LRESULT(0);
    }
    // SAFETY: the default procedure for every other message of this window.
    unsafe { DefWindowProcW(window, message, wparam, lparam) }
}

/// Starts the session-lock window's thread; answers its thread id once it is registered, or why not.
fn watch_session_lock(sender: UnboundedSender<LockReason>) -> Result<u32, String> {
    *SESSION_SENDER.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sender);
    let (started, result) = std::sync::mpsc::channel::<Result<u32, String>>();
    std::thread::Builder::new()
        .name("cloakfs-session-lock".into())
        .spawn(move || {
            // SAFETY: a message-only window of a class registered here, used and destroyed on this thread;
            // the message loop ends with WM_QUIT posted by the watch's drop.
            unsafe {
                let registered = (|| -> windows::core::Result<HWND> {
                    let instance = GetModuleHandleW(None)?;
                    let class = WNDCLASSW {
                        lpfnWndProc: Some(on_window_message),
                        hInstance: instance.into(),
                        lpszClassName: w!("cloakfs-session-lock"),
                        ..Default::default()
                    };
                    RegisterClassW(&class);
                    let window = CreateWindowExW(
                        WINDOW_EX_STYLE::default(),
                        w!("cloakfs-session-lock"),
                        w!("cloakfs"),
                        WINDOW_STYLE::default(),
                        0,
                        0,
                        0,
                        0,
                        Some(HWND_MESSAGE),
                        None,
                        Some(instance.into()),
                        None,
                    )?;
                    WTSRegisterSessionNotification(window, NOTIFY_FOR_THIS_SESSION)?;
                    Ok(window)
                })();
                let window = match registered {
                    Ok(window) => {
                        let _ = started.send(Ok(GetCurrentThreadId()));
                        window
                    }
                    Err(error) => {
                        let _ = started.send(Err(format!("cannot watch for session lock: {error}")));
                        return;
                    }
                };
                let mut message = MSG::default();
                while GetMessageW(&mut message, None, 0, 0).as_bool() {
                    DispatchMessageW(&message);
                }
                let _ = WTSUnRegisterSessionNotification(window);
                let _ = DestroyWindow(window);
            }
        })
        .map_err(|error| format!("cannot start the session-lock watch: {error}"))?;
    result.recv().map_err(|_| "the session-lock watch ended before it started".to_owned())?
}

/// Registers for sleep and session-lock notifications.
pub fn watch() -> Result<SuspendWatch, String> {
    let (sender, requests) = tokio::sync::mpsc::unbounded_channel();
    let session_thread = Some(watch_session_lock(sender.clone())?);
    let sender = Box::new(sender);
    let mut parameters = Box::new(DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS {
        Callback: Some(on_power),
        Context: (&*sender as *const UnboundedSender<LockReason>).cast_mut().cast(),
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
    Ok(SuspendWatch {
        handle: HPOWERNOTIFY(handle as isize),
        _parameters: parameters,
        _sender: sender,
        session_thread,
        requests,
    })
}

impl Drop for SuspendWatch {
    fn drop(&mut self) {
        // SAFETY: the registration made in `watch`.
        let _ = unsafe { PowerUnregisterSuspendResumeNotification(self.handle) };
        if let Some(thread) = self.session_thread.take() {
            // SAFETY: asks the window thread's message loop to end; no pointers.
            let _ = unsafe { PostThreadMessageW(thread, WM_QUIT, WPARAM(0), LPARAM(0)) };
        }
        SESSION_SENDER.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }
}
