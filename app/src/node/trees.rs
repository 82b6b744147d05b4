//! Recently read transaction trees (`getTransactionTree`, the console's and REST's trees). A
//! tree changes when a Proof, Verification, ProofKey or Cancel joins it (or its Run arrives after
//! its children), so each entry carries the intake's count of such transactions when its read
//! began, and serves only while that count is unchanged: a read that raced a commit is never
//! served, and nothing needs to listen for events.

use super::cache::{Bounded, Bounds};
use crate::tx::Hash;
use crate::tx::rpc::TransactionTree;

/// At most this many trees (each weighed as one byte: trees are small).
const MAX_TREES: usize = 4096;

#[derive(Debug)]
pub(super) struct TreeCache(Bounded<(u64, TransactionTree)>);

impl Default for TreeCache {
    fn default() -> Self {
        Self(Bounded::new(Bounds {
            entries: MAX_TREES,
            bytes: MAX_TREES,
            entry_bytes: 1,
        }))
    }
}

impl TreeCache {
    /// The tree read for `hash` when the count was `stamp`, if that is the count now.
    pub(super) fn get(&self, hash: &Hash, stamp: u64) -> Option<TransactionTree> {
        self.0
            .get(hash)
            .and_then(|(at, tree)| (at == stamp).then_some(tree))
    }

    /// Keeps `tree`, read for `hash` in a read that began at count `stamp`.
    pub(super) fn put(&self, hash: Hash, stamp: u64, tree: TransactionTree) {
        self.0.put(hash, (stamp, tree), 1);
    }
}
