//! A bounded map from transaction hashes to what the node read or made for them: stored
//! transactions (REST, the console), `getTransaction`'s output form serialised once, transaction
//! trees (with the stamp that says whether they still hold, see `trees.rs`). Transactions never
//! change, so nothing is invalidated; each cache is bounded in entries and bytes (each entry
//! weighed when it is put), and the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use crate::tx::Hash;

/// A cache's bounds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub(super) entries: usize,
    pub(super) bytes: usize,
    /// Larger entries (big proofs) are not kept: reading them is not what costs most.
    pub(super) entry_bytes: usize,
}

#[derive(Debug)]
pub(super) struct Bounded<V> {
    bounds: Bounds,
    inner: Mutex<Entries<V>>,
}

#[derive(Debug)]
struct Entries<V> {
    by_hash: HashMap<Hash, (V, usize)>,
    order: VecDeque<Hash>,
    bytes: usize,
}

impl<V: Clone> Bounded<V> {
    pub(super) fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            inner: Mutex::new(Entries {
                by_hash: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
        }
    }

    /// A copy of the cached value.
    pub(super) fn get(&self, hash: &Hash) -> Option<V> {
        self.lock().by_hash.get(hash).map(|(v, _)| v.clone())
    }

    /// Keeps `value` (weighing `bytes`) for `hash`, replacing what was kept for it, and drops the
    /// oldest entries while over the bounds.
    pub(super) fn put(&self, hash: Hash, value: V, bytes: usize) {
        let Bounds {
            entries,
            bytes: max_bytes,
            entry_bytes,
        } = self.bounds;
        if bytes > entry_bytes.min(max_bytes) {
            return;
        }
        let mut e = self.lock();
        if let Some((_, old)) = e.by_hash.insert(hash, (value, bytes)) {
            e.bytes = e.bytes - old + bytes;
        } else {
            e.bytes += bytes;
            e.order.push_back(hash);
        }
        while e.order.len() > entries || e.bytes > max_bytes {
            let Some(oldest) = e.order.pop_front() else {
                break;
            };
            if let Some((_, gone)) = e.by_hash.remove(&oldest) {
                e.bytes -= gone;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_entries_and_bytes_oldest_first() {
        let cache = Bounded::new(Bounds {
            entries: 3,
            bytes: 30,
            entry_bytes: 100,
        });
        let h = |n: u8| Hash([n; 32]);
        for n in 0..5 {
            cache.put(h(n), n, 5);
        }
        assert!(cache.get(&h(0)).is_none() && cache.get(&h(1)).is_none());
        assert!((2..5).all(|n| cache.get(&h(n)) == Some(n)));
        // Bytes: a 25-byte entry in a 30-byte cache pushes out the oldest until it fits.
        cache.put(h(9), 9, 25);
        assert_eq!(cache.get(&h(9)), Some(9));
        assert!(cache.get(&h(2)).is_none() && cache.get(&h(3)).is_none());
        assert_eq!(cache.get(&h(4)), Some(4));
        assert_eq!(cache.lock().bytes, 30);
        // Too large for the cache at all: not kept, nothing pushed out.
        cache.put(h(10), 10, 31);
        assert!(cache.get(&h(10)).is_none() && cache.get(&h(9)).is_some());
        // A new value for a kept hash replaces it in place.
        cache.put(h(9), 90, 20);
        assert_eq!(cache.get(&h(9)), Some(90));
        assert_eq!(cache.lock().bytes, 25);
        assert_eq!(cache.lock().order.len(), 2);
    }
}
