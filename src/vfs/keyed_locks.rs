//! Per-key async locks: one download per blob and one upload per file at a time, without a lock per
//! key kept forever (a key's entry is dropped when nobody holds or waits for it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::lock;

/// Per-key async mutexes (one download per blob, one upload per file at a time).
pub(crate) struct KeyedLocks<K>(Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>);

impl<K: std::hash::Hash + Eq + Clone> KeyedLocks<K> {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    pub(crate) async fn lock(&self, key: &K) -> KeyedGuard<'_, K> {
        let mutex = lock(&self.0).entry(key.clone()).or_default().clone();
        let guard = mutex.clone().lock_owned().await;
        KeyedGuard { locks: self, key: key.clone(), _guard: guard, mutex }
    }

    /// The lock of `key` if nobody holds it.
    pub(crate) fn try_lock(&self, key: &K) -> Option<KeyedGuard<'_, K>> {
        let mutex = lock(&self.0).entry(key.clone()).or_default().clone();
        let guard = mutex.clone().try_lock_owned().ok()?;
        Some(KeyedGuard { locks: self, key: key.clone(), _guard: guard, mutex })
    }
}

pub(crate) struct KeyedGuard<'a, K: std::hash::Hash + Eq + Clone> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_others_free_and_keys_forgotten_when_unused() {
        let locks: KeyedLocks<u64> = KeyedLocks::new();
        let first = locks.lock(&1).await;
        assert!(locks.try_lock(&1).is_none(), "a held key is not handed out twice");
        let other = locks.try_lock(&2).expect("another key is free");
        drop(other);
        // A waiter gets the key once the holder lets go, not before.
        let waiter = {
            let locks = &locks;
            async move {
                let _guard = locks.lock(&1).await;
            }
        };
        let mut waiter = Box::pin(waiter);
        assert!(futures_util::poll!(waiter.as_mut()).is_pending(), "the waiter waits while the key is held");
        drop(first);
        waiter.await;
        // Nobody holds or waits: the map keeps nothing.
        assert!(lock(&locks.0).is_empty(), "unused keys are forgotten");
    }

    #[tokio::test]
    async fn a_key_still_waited_for_is_kept_when_its_holder_lets_go() {
        let locks: KeyedLocks<&str> = KeyedLocks::new();
        let held = locks.lock(&"blob").await;
        let mut waiter = Box::pin(locks.lock(&"blob"));
        assert!(futures_util::poll!(waiter.as_mut()).is_pending());
        drop(held);
        assert!(lock(&locks.0).contains_key("blob"), "the waiter's key must survive the first release");
        let second = waiter.await;
        assert!(locks.try_lock(&"blob").is_none());
        drop(second);
        assert!(lock(&locks.0).is_empty());
    }
}
