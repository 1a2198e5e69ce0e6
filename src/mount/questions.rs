//! The question a mount is waiting on (a one-time code or a passphrase when it reconnects to its server),
//! so that `cloakfs unlock` can answer it from another terminal as well as the terminal that mounted.
//! One question at a time per process; it holds no answer, only where to send one.

use std::sync::mpsc::Sender;
use std::sync::Mutex;

use zeroize::Zeroizing;

/// A question waiting for an answer.
struct Pending {
    id: u64,
    prompt: String,
    secret: bool,
    reply: Sender<Option<Zeroizing<String>>>,
}

static PENDING: Mutex<Option<Pending>> = Mutex::new(None);
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn pending() -> std::sync::MutexGuard<'static, Option<Pending>> {
    PENDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Posts a question whose answer goes to `reply`; returns its id (for [`withdraw`]).
pub fn post(prompt: &str, secret: bool, reply: Sender<Option<Zeroizing<String>>>) -> u64 {
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    *pending() = Some(Pending { id, prompt: prompt.to_owned(), secret, reply });
    id
}

/// Withdraws question `id` (answered elsewhere, or given up).
pub fn withdraw(id: u64) {
    let mut pending = pending();
    if pending.as_ref().is_some_and(|question| question.id == id) {
        *pending = None;
    }
}

/// The question waiting now: its id, prompt and whether the answer is a secret.
pub fn waiting() -> Option<(u64, String, bool)> {
    pending().as_ref().map(|question| (question.id, question.prompt.clone(), question.secret))
}

/// Answers question `id`; false if it is no longer waiting.
pub fn answer(id: u64, text: Zeroizing<String>) -> bool {
    match pending().take_if(|question| question.id == id) {
        Some(question) => question.reply.send(Some(text)).is_ok(),
        None => false,
    }
}
