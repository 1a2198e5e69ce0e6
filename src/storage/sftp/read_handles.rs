//! Handles of files read by ranges, kept open a few seconds for the next window of the same reader: a
//! window then costs one round trip (its reads) instead of two (open, then reads). Only a read that
//! continues a file (not at offset 0) uses a kept handle, and a reader always starts at offset 0 with its
//! header, so a reader's windows come from the file it opened; a file replaced meanwhile is read afresh
//! by the next reader. Handles are per connection, closed when replaced, expired or evicted.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::close_later;
use super::connect::Live;

/// Handles kept open at most.
const KEPT_HANDLES: usize = 8;
/// How long a handle is kept for the next window.
const KEPT_FOR: Duration = Duration::from_secs(5);

struct KeptHandle {
    live: Weak<Live>,
    path: String,
    handle: String,
    since: Instant,
}

/// Handles kept open for the next window of a ranged read.
#[derive(Default)]
pub(super) struct ReadHandles {
    kept: Mutex<Vec<KeptHandle>>,
}

impl ReadHandles {
    /// Takes the handle kept open on `path` over `live`, if there is one (the expired ones are closed).
    pub(super) fn take(&self, live: &Arc<Live>, path: &str) -> Option<String> {
        let mut kept = self.lock();
        Self::expire(&mut kept);
        let index = kept.iter().position(|handle| handle.path == path && handle.live.as_ptr() == Arc::as_ptr(live))?;
        Some(kept.swap_remove(index).handle)
    }

    /// Keeps `handle`, open on `path` over `live`, for the next window; one kept for the same path before
    /// is closed, and so is the oldest beyond [`KEPT_HANDLES`].
    pub(super) fn keep(&self, live: &Arc<Live>, path: String, handle: String) {
        let mut kept = self.lock();
        Self::expire(&mut kept);
        if let Some(index) = kept.iter().position(|old| old.path == path) {
            Self::close(kept.remove(index));
        }
        if kept.len() >= KEPT_HANDLES {
            Self::close(kept.remove(0));
        }
        kept.push(KeptHandle { live: Arc::downgrade(live), path, handle, since: Instant::now() });
    }

    fn expire(kept: &mut Vec<KeptHandle>) {
        let (expired, fresh): (Vec<_>, Vec<_>) =
            std::mem::take(kept).into_iter().partition(|handle| handle.since.elapsed() >= KEPT_FOR);
        *kept = fresh;
        expired.into_iter().for_each(Self::close);
    }

    fn close(handle: KeptHandle) {
        // A handle of a connection that is gone closed with it.
        if let Some(live) = handle.live.upgrade() {
            close_later(&live, handle.handle);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<KeptHandle>> {
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
