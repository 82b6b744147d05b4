//! What placement shows: where each open Run stands as this node sees it, and what this node did.
//! The placer writes it; the status API, the console and the metrics read it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::p2p::Executor;
use crate::tx::Hash;

use super::{Decision, Holder, Placer};

/// Where a Run stands in the network, as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// `waiting` (no node holds it yet), `placed`, or `ended`.
    pub state: &'static str,
    pub nodes: Vec<PlacedOn>,
    /// How it ended (`done`, `failed`, `cancelled`, `unplaceable`), once it did.
    pub outcome: Option<String>,
    /// Why it waits, or why it ended.
    pub reason: Option<String>,
    /// The peer id of the node it ended on, when it failed there.
    pub ended_on: Option<String>,
}

/// A node holding a Run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedOn {
    pub peer_id: String,
    /// Its node key (hex), which signs its results.
    pub public_key: Option<String>,
    /// When it took the Run (ms since the Unix epoch).
    pub since_ms: i64,
    /// The node it took the Run over from.
    pub taken_over_from: Option<String>,
    /// Whether it is this node.
    pub local: bool,
}

/// What placement did on this node since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Runs this node took when first placed.
    pub placed: u64,
    /// Runs this node took over from a node that went or drains.
    pub taken_over: u64,
    /// Runs this node let go: another node held them first, or this node drains.
    pub released: u64,
    /// Steps this node stopped because another node proved them first.
    pub duplicates_stopped: u64,
    /// Runs no node could fit.
    pub unplaceable: u64,
}

#[derive(Debug, Default)]
pub(super) struct AtomicCounters {
    pub(super) placed: AtomicU64,
    pub(super) taken_over: AtomicU64,
    pub(super) released: AtomicU64,
    pub(super) duplicates_stopped: AtomicU64,
    pub(super) unplaceable: AtomicU64,
}

#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) views: RwLock<HashMap<Hash, Placement>>,
    pub(super) counters: AtomicCounters,
}

/// A read-only view of placement, for the APIs and metrics (cheap to clone).
#[derive(Clone, Debug)]
pub struct PlacementView {
    pub(super) shared: Arc<Shared>,
    pub(super) redundancy: usize,
}

impl PlacementView {
    /// Where `run` stands, while it is open (ended Runs are in the store's `run_endings`).
    pub fn get(&self, run: &Hash) -> Option<Placement> {
        self.shared.views.read().ok()?.get(run).cloned()
    }

    /// Up to `n` open Runs with where each stands, placed ones first, then by hash.
    pub fn open_runs(&self, n: usize) -> Vec<(Hash, Placement)> {
        let mut runs: Vec<(Hash, Placement)> = self
            .shared
            .views
            .read()
            .map(|v| v.iter().map(|(h, p)| (*h, p.clone())).collect())
            .unwrap_or_default();
        runs.sort_by(|(ha, a), (hb, b)| {
            (a.state != "placed", ha.0).cmp(&(b.state != "placed", hb.0))
        });
        runs.truncate(n);
        runs
    }

    /// The open Runs, by state.
    pub fn open_counts(&self) -> (usize, usize) {
        self.shared.views.read().map_or((0, 0), |v| {
            let placed = v.values().filter(|p| p.state == "placed").count();
            (v.len() - placed, placed)
        })
    }

    pub fn redundancy(&self) -> usize {
        self.redundancy
    }

    pub fn counters(&self) -> Counters {
        let c = &self.shared.counters;
        Counters {
            placed: c.placed.load(Ordering::Relaxed),
            taken_over: c.taken_over.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
            duplicates_stopped: c.duplicates_stopped.load(Ordering::Relaxed),
            unplaceable: c.unplaceable.load(Ordering::Relaxed),
        }
    }
}

impl Placer {
    pub(super) fn view_of(&self, run: &Hash, decision: &Decision, live: &[Executor]) -> Placement {
        let mut holders = decision.holders.clone();
        if let Some(mine) = self.holds.get(run)
            && !holders.iter().any(|h| h.peer_id == self.me)
        {
            holders.push(Holder {
                peer_id: self.me.clone(),
                since_ms: mine.hold.since_ms,
                from: mine.hold.from.clone(),
            });
        }
        let nodes: Vec<PlacedOn> = holders
            .into_iter()
            .map(|h| PlacedOn {
                public_key: live
                    .iter()
                    .find(|e| e.peer_id == h.peer_id)
                    .and_then(|e| e.public_key.clone()),
                local: h.peer_id == self.me,
                peer_id: h.peer_id,
                since_ms: h.since_ms,
                taken_over_from: h.from,
            })
            .collect();
        let reason = if nodes.is_empty() {
            decision
                .waiting
                .clone()
                .or_else(|| {
                    (!self.settled).then(|| "this node is still learning who holds what".into())
                })
                .or_else(|| {
                    (!decision.chosen.is_empty())
                        .then(|| format!("to be taken by {}", decision.chosen.join(" and ")))
                })
        } else {
            None
        };
        Placement {
            state: if nodes.is_empty() {
                "waiting"
            } else {
                "placed"
            },
            nodes,
            outcome: None,
            reason,
            ended_on: None,
        }
    }

    pub(super) fn show(&self, run: Hash, view: Placement) {
        if let Ok(mut views) = self.shared.views.write() {
            views.insert(run, view);
        }
    }
}
