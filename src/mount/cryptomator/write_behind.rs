//! Uploads after close (write-behind): a changed small file is queued when it is closed and uploaded in the
//! background, many at once, so that `tar x`, `cp -r` and `git clone` over a slow link cost the round trips
//! of the uploads in parallel rather than one after another. Close returns before the store has the file;
//! fsync, fsyncdir, unmount and lock wait for it. An upload that fails leaves the file changed in RAM (named
//! by `cloakfs status`), makes every following close wait for its own upload (so programs see the outage),
//! and is tried again after the retry interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use super::{CryptomatorFs, Kind};
use crate::mount::error::FsError;
use crate::storage::Store;

/// Uploads that run at once, in the background and when everything is flushed: requests in flight
/// together hide the round trip (at 50 ms per round trip and four round trips per file, 16 at a time
/// store 80 small files a second).
pub const MAX_BACKGROUND_UPLOADS: usize = 16;

/// Files queued or being uploaded in the background beyond which a close waits for its own upload: the
/// queue is bounded, so a program writing faster than the link is slowed down, not given an ever longer
/// list of files that are not in the store yet.
pub const MAX_QUEUED_UPLOADS: usize = 256;

/// How often the background worker looks for failed uploads that are due again.
const RETRY_TICK: Duration = Duration::from_millis(500);

impl<S: Store + Clone + 'static> CryptomatorFs<S> {
    /// Close (FUSE flush): a changed file up to `--write-behind` bytes is queued for a background upload and
    /// close returns at once, unless an upload failed and is not retried yet or the queue is full; then,
    /// like a larger file, it is uploaded before close returns and the error reaches the program. The
    /// content stays in RAM until the store has it.
    pub(super) async fn close(&self, ino: u64) -> Result<(), FsError> {
        let queued = {
            let mut state = self.state();
            let room = state.upload_queue.len() + self.uploads_running() < MAX_QUEUED_UPLOADS;
            let may_queue = room && state.retry_at.is_none();
            let Ok(file) = state.file(ino) else { return Ok(()) };
            if !file.dirty || file.unlinked {
                return Ok(());
            }
            let size = file.content.as_ref().map(|content| content.len()).unwrap_or(file.size);
            let queued = state.upload_queue.contains(&ino) || (may_queue && size <= self.options.write_behind);
            if queued {
                state.upload_queue.insert(ino);
            }
            queued
        };
        if queued {
            self.wake.notify_one();
            return Ok(());
        }
        self.upload(ino).await
    }

    /// The background worker (spawned with the mount): starts the queued uploads, at most
    /// [`MAX_BACKGROUND_UPLOADS`] at once, and queues again the failed ones when their retry is due.
    pub(super) async fn upload_in_background(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(RETRY_TICK) => self.queue_failed_if_due(),
            }
            for ino in self.take_queued() {
                let Ok(slot) = self.upload_slots.clone().acquire_owned().await else { return };
                let this = self.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(error) = this.upload(ino).await {
                        tracing::debug!(%error, ino, "a background upload failed; it will be retried");
                    }
                });
            }
        }
    }

    /// The queued files, taken out of the queue (a file removed meanwhile has nothing to upload).
    fn take_queued(&self) -> Vec<u64> {
        std::mem::take(&mut self.state().upload_queue).into_iter().collect()
    }

    /// Background uploads running now.
    fn uploads_running(&self) -> usize {
        MAX_BACKGROUND_UPLOADS - self.upload_slots.available_permits()
    }

    /// After a failed upload, once the retry interval has passed: queues every changed file that is not
    /// open (an open one is uploaded by its own close).
    fn queue_failed_if_due(&self) {
        let mut state = self.state();
        if state.retry_at.is_none_or(|at| Instant::now() < at) {
            return;
        }
        state.retry_at = None;
        let failed: Vec<u64> = state
            .nodes
            .iter()
            .filter(|(_, node)| {
                matches!(&node.kind, Kind::File(file) if file.dirty && !file.unlinked && file.open_handles == 0)
            })
            .map(|(ino, _)| *ino)
            .collect();
        let any = !failed.is_empty();
        state.upload_queue.extend(failed);
        drop(state);
        if any {
            self.wake.notify_one();
        }
    }

    fn dirty_files(&self) -> Vec<u64> {
        let state = self.state();
        state
            .nodes
            .iter()
            .filter(|(_, node)| matches!(&node.kind, Kind::File(file) if file.dirty && !file.unlinked))
            .map(|(ino, _)| *ino)
            .collect()
    }

    /// Uploads every changed file, [`MAX_BACKGROUND_UPLOADS`] at once, and waits for the background uploads
    /// (unmount, lock, fsyncdir). Returns whether everything is in the store.
    pub async fn flush_all(&self) -> bool {
        let failures = futures_util::stream::iter(self.dirty_files())
            .map(|ino| self.upload(ino))
            .buffer_unordered(MAX_BACKGROUND_UPLOADS)
            .filter(|result| std::future::ready(result.is_err()))
            .count()
            .await;
        failures == 0 && self.dirty_files().is_empty()
    }
}
