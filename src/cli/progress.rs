//! A one-line transfer progress display on stderr, shown only when stderr is a terminal.

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::storage::Progress;

const MIB: f64 = 1024.0 * 1024.0;

struct State {
    started: Instant,
    last_drawn: Option<Instant>,
    drawn: bool,
}

/// A progress line for one transfer of `total` bytes (if known), labelled `label`.
#[derive(Clone)]
pub struct ProgressLine {
    label: &'static str,
    total: Option<u64>,
    state: Arc<Mutex<State>>,
}

impl ProgressLine {
    /// A progress line; `None` when stderr is not a terminal (scripts get no control characters).
    pub fn new(label: &'static str, total: Option<u64>) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Self {
            label,
            total,
            state: Arc::new(Mutex::new(State { started: Instant::now(), last_drawn: None, drawn: false })),
        })
    }

    /// The callback to hand to a transfer.
    pub fn callback(&self) -> Progress {
        let line = self.clone();
        Arc::new(move |done| line.draw(done, false))
    }

    fn draw(&self, done: u64, force: bool) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if !force && state.last_drawn.is_some_and(|last| now - last < Duration::from_millis(100)) {
            return;
        }
        state.last_drawn = Some(now);
        state.drawn = true;
        let seconds = (now - state.started).as_secs_f64().max(0.001);
        let rate = done as f64 / MIB / seconds;
        let text = match self.total {
            Some(total) if total > 0 => format!(
                "{}: {:.1} / {:.1} MiB ({:>3}%)  {:.1} MiB/s",
                self.label,
                done as f64 / MIB,
                total as f64 / MIB,
                done.saturating_mul(100) / total,
                rate
            ),
            _ => format!("{}: {:.1} MiB  {:.1} MiB/s", self.label, done as f64 / MIB, rate),
        };
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r{text}\x1b[K");
        let _ = stderr.flush();
    }

    /// Ends the line.
    pub fn finish(&self) {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.drawn {
            let _ = writeln!(std::io::stderr());
        }
    }
}
