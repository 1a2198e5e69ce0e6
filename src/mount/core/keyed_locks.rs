//! Per-key async locks: one download per blob and one upload per file at a time, without a lock per
//! key kept forever (a key's entry is dropped when nobody holds or waits for it).

use super::*;

/// Per-key async mutexes (one download per blob, one upload per file at a time).
pub(super) struct KeyedLocks<K>(Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>);

impl<K: std::hash::Hash + Eq + Clone> KeyedLocks<K> {
    pub(super) fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    pub(super) async fn lock(&self, key: &K) -> KeyedGuard<'_, K> {
        let mutex = lock(&self.0).entry(key.clone()).or_default().clone();
        let guard = mutex.clone().lock_owned().await;
        KeyedGuard { locks: self, key: key.clone(), _guard: guard, mutex }
    }

    /// The lock of `key` if nobody holds it.
    pub(super) fn try_lock(&self, key: &K) -> Option<KeyedGuard<'_, K>> {
        let mutex = lock(&self.0).entry(key.clone()).or_default().clone();
        let guard = mutex.clone().try_lock_owned().ok()?;
        Some(KeyedGuard { locks: self, key: key.clone(), _guard: guard, mutex })
    }
}

pub(super) struct KeyedGuard<'a, K: std::hash::Hash + Eq + Clone> {
    locks: &'a KeyedLocks<K>,
    key: K,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    mutex: Arc<tokio::sync::Mutex<()>>,
}

impl<K: std::hash::Hash + Eq + Clone> Drop for KeyedGuard<'_, K> {
    fn drop(&mut self) {
        let mut map = lock(&self.locks.0);
        // The map, this guard and our `mutex` field hold it: nobody else waits, so forget the key.
        if Arc::strong_count(&self.mutex) <= 3 {
            map.remove(&self.key);
        }
    }
}
