//! Recently read transaction trees (`getTransactionTree`, the console's and REST's trees). A
//! tree changes when a Proof, Verification, ProofKey or Cancel joins it (or its Run arrives after
//! its children), so each entry carries the intake's count of such transactions when its read
//! began, and serves only while that count is unchanged: a read that raced a commit is never
//! served, and nothing needs to listen for events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use crate::tx::Hash;
use crate::tx::rpc::TransactionTree;

/// At most this many trees.
const MAX_TREES: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct TreeCache {
    inner: Mutex<Trees>,
}

#[derive(Debug, Default)]
struct Trees {
    by_hash: HashMap<Hash, (u64, TransactionTree)>,
    order: VecDeque<Hash>,
}

impl TreeCache {
    /// The tree read for `hash` when the count was `stamp`, if that is the count now.
    pub(super) fn get(&self, hash: &Hash, stamp: u64) -> Option<TransactionTree> {
        let t = self.lock();
        match t.by_hash.get(hash) {
            Some((at, tree)) if *at == stamp => Some(tree.clone()),
            _ => None,
        }
    }

    /// Keeps `tree`, read for `hash` in a read that began at count `stamp`.
    pub(super) fn put(&self, hash: Hash, stamp: u64, tree: TransactionTree) {
        let mut t = self.lock();
        if t.by_hash.insert(hash, (stamp, tree)).is_some() {
            return;
        }
        t.order.push_back(hash);
        while t.order.len() > MAX_TREES {
            if let Some(oldest) = t.order.pop_front() {
                t.by_hash.remove(&oldest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Trees> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
