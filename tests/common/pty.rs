//! A real pseudo-terminal for tests: a program started as the controlling process of its own terminal
//! session, its output read from the terminal's master side, and a hang-up as when a terminal window is
//! closed (the last master descriptor closed: the kernel sends SIGHUP to the session's leader).
#![allow(dead_code)]

use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A program running in a terminal of its own.
pub struct Terminal {
    /// The program.
    pub child: Child,
    /// Everything it wrote to the terminal.
    output: Arc<Mutex<String>>,
    /// Set to close the master side (hang up).
    hang_up: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// A second descriptor of the master side, to type into the terminal (closed on hang-up).
    keyboard: Mutex<Option<std::fs::File>>,
}

impl Terminal {
    /// Starts `command` with a new pseudo-terminal as its stdin, stdout, stderr and controlling terminal.
    pub fn spawn(mut command: Command) -> Self {
        // Both ends close-on-exec from the start (tests run in parallel threads that start processes: an
        // inherited master would keep the terminal from ever hanging up).
        // SAFETY: posix_openpt opens a new master; grantpt, unlockpt and ptsname_r act on it; the slave is
        // opened by the name they give.
        let (master, slave) = unsafe {
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(master >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let master = OwnedFd::from_raw_fd(master);
            assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
            assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()), 0);
            let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(slave >= 0, "opening the terminal: {}", std::io::Error::last_os_error());
            (master, OwnedFd::from_raw_fd(slave))
        };
        command
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: setsid and ioctl are async-signal-safe: the child leads a new session whose controlling
        // terminal is the pseudo-terminal on its stdin.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop(slave);
        let keyboard = Mutex::new(Some(std::fs::File::from(master.try_clone().unwrap())));
        let output = Arc::new(Mutex::new(String::new()));
        let hang_up = Arc::new(AtomicBool::new(false));
        let reader = {
            let (output, hang_up) = (output.clone(), hang_up.clone());
            std::thread::spawn(move || {
                let mut file = std::fs::File::from(master);
                let mut buffer = [0u8; 4096];
                while !hang_up.load(Ordering::SeqCst) {
                    let mut watched = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                    // SAFETY: one valid pollfd.
                    if unsafe { libc::poll(&mut watched, 1, 100) } <= 0 {
                        continue;
                    }
                    match file.read(&mut buffer) {
                        Ok(0) | Err(_) => std::thread::sleep(Duration::from_millis(50)),
                        Ok(read) => {
                            let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
                            eprint!("[terminal] {text}");
                            output.lock().unwrap().push_str(&text);
                        }
                    }
                }
                // Dropping the only master descriptor hangs the terminal up.
            })
        };
        Self { child, output, hang_up, reader: Some(reader), keyboard }
    }

    /// What the program wrote so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits up to `limit` for `text` in the output.
    pub fn wait_for(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.output().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Types `line` and Enter into the terminal.
    pub fn type_line(&self, line: &str) {
        use std::io::Write as _;
        let mut keyboard = self.keyboard.lock().unwrap();
        let keyboard = keyboard.as_mut().expect("the terminal was hung up");
        keyboard.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Closes the terminal, as closing its window does.
    pub fn hang_up(&mut self) {
        self.keyboard.lock().unwrap().take();
        self.hang_up.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }

    /// Waits up to `limit` for the program to exit; its status.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.hang_up();
    }
}
