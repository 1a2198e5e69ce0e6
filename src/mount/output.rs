//! What a mount says to a person, and what happens when nobody is left to hear it.
//!
//! A mount is a long-lived process that people end carelessly: its terminal closes, the pipe it writes to
//! (`cloakfs mount … | tee log`) closes, it is sent to the background. Nothing it writes may end it:
//! [`say!`] writes a message to stderr and ignores a failed write (a hung-up terminal answers EIO, a closed
//! pipe EPIPE; Rust ignores SIGPIPE, so the write fails instead of killing the process, and `eprintln!`
//! would panic on it). [`output_closed`] resolves when stdout or stderr was a terminal or a pipe and its
//! other end went away, which the session treats like Ctrl-C: upload, unmount, wipe. A detached mount
//! ([`detach`]) has no terminal to lose: its stdin is /dev/null and its stdout and stderr go to the system
//! log (`/dev/log`, which journald and rsyslog read), or where there is none to a file in the runtime
//! directory; a hang-up is ignored there. [`catch`] keeps a panic in one operation from ending the mount.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this process detached from its terminal ([`detach`]).
static DETACHED: AtomicBool = AtomicBool::new(false);

/// Writes one line to stderr, like `eprintln!`, but a failed write (a closed terminal or pipe) is ignored
/// instead of panicking. For every message of a running mount.
macro_rules! say {
    ($($argument:tt)*) => {
        $crate::mount::output::say_line(format_args!($($argument)*))
    };
}
pub(crate) use say;

/// Writes `line` and a newline to stderr; a failed write (a closed terminal or pipe) is ignored. What
/// [`say!`] calls; for the platform crates, which cannot use the macro.
pub fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether this process runs detached (its output goes to the system log, a hang-up is ignored).
pub fn is_detached() -> bool {
    DETACHED.load(Ordering::SeqCst)
}

/// Runs `work` and turns a panic in it into an error report: the panic hook has printed where it
/// happened; the caller goes on (a FUSE request whose reply was dropped is answered EIO by fuser).
/// Returns whether `work` finished without panicking.
pub fn catch(what: &str, work: impl FnOnce()) -> bool {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(()) => true,
        Err(_) => {
            tracing::error!(
                operation = what,
                "internal error (a bug in cloakfs): the operation failed; the mount goes on"
            );
            false
        }
    }
}

/// Installs the panic report of a mount: where it happened and what it said, one line, written as [`say!`]
/// writes (never failing), and that the rest of the mount goes on and keeps what it holds.
pub fn report_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|at| format!("{}:{}", at.file(), at.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        say!(
            "cloakfs: internal error (a bug; please report it) in thread {thread} at {location}: {message}; this \
             operation failed, the rest of the mount goes on and still uploads what it holds"
        );
    }));
}

#[cfg(unix)]
pub use unix::{detach, output_closed};

#[cfg(unix)]
mod unix {
    use std::io::{BufRead as _, Write as _};
    use std::os::fd::AsRawFd as _;
    use std::sync::atomic::Ordering;

    use super::DETACHED;

    /// Where a detached mount's lines go.
    type LineSink = Box<dyn FnMut(&str) + Send>;

    /// Resolves when stdout or stderr is a terminal that hung up or a pipe or socket whose reader is gone
    /// (never for a file or /dev/null, and never once the process is detached: then they are its own log
    /// pipe). Polls with no requested events, for which the kernel still reports a hang-up and an error.
    pub async fn output_closed() {
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        let watcher = std::thread::Builder::new().name("output-watch".into()).spawn(move || {
            let mut watched = [
                libc::pollfd { fd: libc::STDOUT_FILENO, events: 0, revents: 0 },
                libc::pollfd { fd: libc::STDERR_FILENO, events: 0, revents: 0 },
            ];
            loop {
                // SAFETY: two valid pollfd entries; a negative timeout waits until one reports.
                let ready = unsafe { libc::poll(watched.as_mut_ptr(), watched.len() as libc::nfds_t, -1) };
                if ready < 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                if DETACHED.load(Ordering::SeqCst) {
                    // The descriptors now lead to our own log; the old ones closing is expected.
                    return;
                }
                let closed = |entry: &libc::pollfd| entry.revents & (libc::POLLHUP | libc::POLLERR) != 0;
                if watched.iter().any(closed) {
                    let _ = sender.send(());
                    return;
                }
                if watched.iter().any(|entry| entry.revents & libc::POLLNVAL != 0) {
                    // A descriptor that is not open: nothing to watch.
                    return;
                }
            }
        });
        if watcher.is_err() {
            return std::future::pending().await;
        }
        if receiver.await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Detaches this process from its terminal once the mount is ready: a new session (a hang-up or Ctrl-C
    /// of the terminal no longer reaches it), stdin from /dev/null, stdout and stderr (every message and
    /// log line) into the system log as `cloakfs[PID]` (`journalctl -t cloakfs`), or, where there is no
    /// system log (`/dev/log`), into `log_file` (created 0600). The messages carry no file names or keys
    /// (they never do at the default level), so the journal on disk learns nothing of the vault.
    /// `CLOAKFS_SYSLOG_SOCKET` names another syslog socket (tests listen there). `announce` is called with
    /// where the messages go while stdout is still the original one (to tell the waiting parent).
    pub fn detach(log_file: &std::path::Path, announce: impl FnOnce(&str)) -> std::io::Result<()> {
        let socket = std::env::var_os("CLOAKFS_SYSLOG_SOCKET").unwrap_or_else(|| "/dev/log".into());
        let syslog = std::os::unix::net::UnixDatagram::unbound().and_then(|sender| {
            sender.connect(&socket)?;
            Ok(sender)
        });
        let (destination, sink): (String, LineSink) = match syslog {
            Ok(sender) => {
                let pid = std::process::id();
                let label = format!("the system log (journalctl -t cloakfs, pid {pid})");
                (
                    label,
                    Box::new(move |line: &str| {
                        // RFC 3164 without a timestamp (journald and rsyslog add theirs): facility user (1),
                        // severity from the line: error 3, warning 4, else notice 5.
                        let severity = if line.contains("ERROR") || line.contains("error") {
                            3
                        } else if line.contains("WARN") || line.contains("NOT ") {
                            4
                        } else {
                            5
                        };
                        let _ = sender.send(format!("<{}>cloakfs[{pid}]: {line}", 8 + severity).as_bytes());
                    }),
                )
            }
            Err(_) => {
                use std::os::unix::fs::OpenOptionsExt as _;
                let mut file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(log_file)?;
                (
                    log_file.display().to_string(),
                    Box::new(move |line: &str| {
                        let _ = writeln!(file, "{line}");
                    }),
                )
            }
        };
        let (reader, writer) = std::io::pipe()?;
        let null = std::fs::OpenOptions::new().read(true).open("/dev/null")?;
        // From here on the old stdout and stderr may close (the parent exits once it read the announcement).
        DETACHED.store(true, Ordering::SeqCst);
        announce(&destination);
        // SAFETY: setsid and dup2 are plain syscalls on descriptors we own; a process started by
        // `cloakfs mount --daemon` is not a process group leader, so setsid succeeds.
        unsafe {
            libc::setsid();
            libc::dup2(null.as_raw_fd(), libc::STDIN_FILENO);
            libc::dup2(writer.as_raw_fd(), libc::STDOUT_FILENO);
            libc::dup2(writer.as_raw_fd(), libc::STDERR_FILENO);
        }
        drop(writer);
        let mut sink = sink;
        std::thread::Builder::new().name("log-forward".into()).spawn(move || {
            for line in std::io::BufReader::new(reader).lines().map_while(Result::ok) {
                sink(&super::without_colours(&line));
            }
        })?;
        say!("cloakfs: running detached; messages go to {destination}");
        Ok(())
    }
}

/// `line` without ANSI colour sequences (`ESC [ … m`: log lines coloured for the terminal the mount was
/// started on).
#[cfg_attr(not(unix), allow(dead_code))]
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('\u{1b}') {
        plain.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.strip_prefix('[').and_then(|sequence| sequence.find('m').map(|end| &sequence[end + 1..])) {
            Some(remaining) => rest = remaining,
            None => rest = after,
        }
    }
    plain.push_str(rest);
    plain
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_sequences_are_stripped_for_the_system_log() {
        let coloured = "\u{1b}[2m2026-12-07T17:32:13Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m cloakfs: a warning";
        assert_eq!(super::without_colours(coloured), "2026-12-07T17:32:13Z  WARN cloakfs: a warning");
        assert_eq!(super::without_colours("plain"), "plain");
    }

    #[test]
    fn a_panic_in_one_operation_is_caught_and_reported() {
        assert!(super::catch("fine", || {}));
        let caught = super::catch("broken", || panic!("a planted bug"));
        assert!(!caught, "the panic was not reported as a failure");
    }

    #[test]
    fn saying_something_never_fails() {
        say!("cloakfs: a message {}", 1);
    }
}
