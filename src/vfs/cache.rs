//! The plaintext cache: decrypted file contents and the read windows of closed files, in RAM only, bounded
//! by an exact byte budget (`--cache-size`), least recently used first out. Entries are keyed by the stored
//! content's id, which changes with every store, so a cached plaintext can never stand for newer content.
//! Contents are `Arc<Content>` and readers `Arc`s too: the bytes are wiped when the last holder (the cache
//! or an open file) lets go. Spilled contents (on disk, encrypted) are never cached.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::content::Content;

/// A decrypted file content, wiped when the last reference drops.
pub type Plaintext = Arc<Content>;

/// The cache key of file `ino`'s stored content `id`. The inode number is part of it: a format whose ids are
/// storage versions (a size and a time, over SFTP) may give two files' contents one id.
pub fn key(ino: u64, id: &str) -> String {
    format!("{ino}/{id}")
}

/// What the cache holds of one stored content.
pub enum Cached<R> {
    /// The whole clear text.
    Whole(Plaintext),
    /// A reader of it (its window is authenticated clear text), kept after the file's last close.
    Reader(Arc<tokio::sync::Mutex<R>>),
}

/// A byte-bounded LRU cache of plaintexts and readers.
pub struct PlaintextCache<R> {
    capacity_bytes: u64,
    used_bytes: u64,
    tick: u64,
    /// By content id: what is held, its bytes, its age.
    entries: HashMap<String, (Cached<R>, u64, u64)>,
    by_age: BTreeMap<u64, String>,
}

impl<R> PlaintextCache<R> {
    /// An empty cache holding at most `capacity_bytes` of plaintext.
    pub fn new(capacity_bytes: u64) -> Self {
        Self { capacity_bytes, used_bytes: 0, tick: 0, entries: HashMap::new(), by_age: BTreeMap::new() }
    }

    /// The whole plaintext of content `id`, marking it recently used.
    pub fn get(&mut self, id: &str) -> Option<Plaintext> {
        self.tick += 1;
        let tick = self.tick;
        let (Cached::Whole(plaintext), _, age) = self.entries.get_mut(id)? else { return None };
        let old_age = std::mem::replace(age, tick);
        let plaintext = plaintext.clone();
        if let Some(name) = self.by_age.remove(&old_age) {
            self.by_age.insert(tick, name);
        }
        Some(plaintext)
    }

    /// Takes the reader kept for content `id`, if one is.
    pub fn take_reader(&mut self, id: &str) -> Option<Arc<tokio::sync::Mutex<R>>> {
        if !matches!(self.entries.get(id), Some((Cached::Reader(_), _, _))) {
            return None;
        }
        let (cached, bytes, age) = self.entries.remove(id)?;
        self.by_age.remove(&age);
        self.used_bytes -= bytes;
        match cached {
            Cached::Reader(reader) => Some(reader),
            Cached::Whole(_) => None,
        }
    }

    /// Inserts the plaintext of content `id`, evicting the least recently used entries to stay within the
    /// budget. A plaintext larger than the whole budget is not cached.
    pub fn insert(&mut self, id: &str, plaintext: Plaintext) {
        if plaintext.is_spilled() {
            self.remove(id);
            return;
        }
        let size = plaintext.len();
        self.hold(id, Cached::Whole(plaintext), size);
    }

    /// Keeps `reader` of content `id` holding `bytes` of clear text (after its file's last close).
    pub fn keep_reader(&mut self, id: &str, reader: Arc<tokio::sync::Mutex<R>>, bytes: u64) {
        self.hold(id, Cached::Reader(reader), bytes);
    }

    fn hold(&mut self, id: &str, cached: Cached<R>, size: u64) {
        self.remove(id);
        if size > self.capacity_bytes {
            return;
        }
        while self.used_bytes + size > self.capacity_bytes {
            let Some((_, oldest)) = self.by_age.pop_first() else { break };
            if let Some((_, evicted, _)) = self.entries.remove(&oldest) {
                self.used_bytes -= evicted;
            }
        }
        self.tick += 1;
        self.by_age.insert(self.tick, id.to_owned());
        self.entries.insert(id.to_owned(), (cached, size, self.tick));
        self.used_bytes += size;
    }

    /// Drops the entry of content `id` (its bytes are wiped once no open file holds them).
    pub fn remove(&mut self, id: &str) {
        if let Some((_, bytes, age)) = self.entries.remove(id) {
            self.by_age.remove(&age);
            self.used_bytes -= bytes;
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_age.clear();
        self.used_bytes = 0;
    }

    /// Bytes of plaintext held.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The byte budget.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plaintext(len: usize, byte: u8) -> Plaintext {
        Arc::new(Content::from_buffer(crate::content::PlainBuffer::from_slice(&vec![byte; len])))
    }

    #[test]
    fn evicts_least_recently_used_to_stay_within_the_byte_budget() {
        let mut cache = PlaintextCache::<()>::new(100);
        cache.insert("a", plaintext(40, 1));
        cache.insert("b", plaintext(40, 2));
        assert!(cache.get("a").is_some()); // a is now newer than b
        cache.insert("c", plaintext(40, 3));
        assert_eq!(cache.used_bytes(), 80);
        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert_eq!(cache.get("a").unwrap().read_at(0, 1).unwrap()[0], 1);
        assert_eq!(cache.get("c").unwrap().read_at(0, 1).unwrap()[0], 3);
    }

    #[test]
    fn too_large_entries_are_not_cached_and_replacing_keeps_accounting_exact() {
        let mut cache = PlaintextCache::<()>::new(100);
        cache.insert("big", plaintext(101, 1));
        assert!(cache.is_empty());
        cache.insert("a", plaintext(60, 1));
        cache.insert("a", plaintext(30, 2));
        assert_eq!(cache.used_bytes(), 30);
        assert_eq!(cache.len(), 1);
        cache.remove("a");
        assert_eq!(cache.used_bytes(), 0);
    }

    #[test]
    fn eviction_releases_the_cache_reference() {
        let mut cache = PlaintextCache::<()>::new(10);
        let held = plaintext(10, 7);
        cache.insert("a", held.clone());
        assert_eq!(Arc::strong_count(&held), 2);
        cache.insert("b", plaintext(10, 8));
        assert_eq!(Arc::strong_count(&held), 1, "evicted entry still referenced by the cache");
    }
}
