//! Recently read transactions in their original output form (the bytes of `getTransaction`'s
//! result), serialised once. Transactions never change, so nothing is ever invalidated; the cache
//! is bounded in entries and bytes, and the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use serde_json::value::RawValue;

use crate::tx::Hash;

/// At most this many transactions…
const MAX_ENTRIES: usize = 16_384;
/// …and this many bytes of them.
const MAX_BYTES: usize = 64 << 20;
/// Larger output forms (big proofs) are not kept: serialising them is not what costs most.
const MAX_ENTRY_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
pub(super) struct OutputCache {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_hash: HashMap<Hash, Box<RawValue>>,
    order: VecDeque<Hash>,
    bytes: usize,
}

impl OutputCache {
    /// A copy of the cached output (its bytes copied; nothing is parsed or serialised again).
    pub(super) fn get(&self, hash: &Hash) -> Option<Box<RawValue>> {
        self.lock().by_hash.get(hash).cloned()
    }

    pub(super) fn put(&self, hash: Hash, output: Box<RawValue>) {
        self.put_bounded(hash, output, MAX_ENTRIES, MAX_BYTES);
    }

    fn put_bounded(&self, hash: Hash, output: Box<RawValue>, max_entries: usize, max_bytes: usize) {
        let len = output.get().len();
        if len > MAX_ENTRY_BYTES.min(max_bytes) {
            return;
        }
        let mut e = self.lock();
        if e.by_hash.contains_key(&hash) {
            return;
        }
        while e.order.len() >= max_entries || e.bytes + len > max_bytes {
            let Some(oldest) = e.order.pop_front() else {
                break;
            };
            if let Some(gone) = e.by_hash.remove(&oldest) {
                e.bytes -= gone.get().len();
            }
        }
        e.bytes += len;
        e.order.push_back(hash);
        e.by_hash.insert(hash, output);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON string of `n` bytes (quotes included).
    fn json(n: usize) -> Box<RawValue> {
        RawValue::from_string(format!("\"{}\"", "x".repeat(n - 2))).expect("json")
    }

    #[test]
    fn bounded_in_entries_and_bytes_oldest_first() {
        let cache = OutputCache::default();
        let h = |n: u8| Hash([n; 32]);
        for n in 0..5 {
            cache.put_bounded(h(n), json(10), 3, 1000);
        }
        assert!(cache.get(&h(0)).is_none() && cache.get(&h(1)).is_none());
        assert!((2..5).all(|n| cache.get(&h(n)).is_some()));
        // Bytes: a 25-byte entry in a 30-byte cache pushes out all but none of the old ones.
        cache.put_bounded(h(9), json(25), 3, 30);
        assert!(cache.get(&h(9)).is_some());
        assert!((2..5).all(|n| cache.get(&h(n)).is_none()));
        assert_eq!(cache.lock().bytes, 25);
        // Too large for the cache at all: not kept, nothing pushed out.
        cache.put_bounded(h(10), json(31), 3, 30);
        assert!(cache.get(&h(10)).is_none() && cache.get(&h(9)).is_some());
    }
}
