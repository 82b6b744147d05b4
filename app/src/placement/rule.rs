//! The placement rule: from the same view of the live executors every node computes the same
//! answer for a Run, so no coordinator is needed.
//!
//! - The Run's holders are the live executors whose announcement lists it (a hold lasts while
//!   its node's announcements keep coming). Beyond the redundancy, the holders that took it
//!   last let go (ties: the lower rendezvous score), so a split view heals by itself.
//! - Missing holders come from the eligible executors (executing, not draining, not full, big
//!   enough for the Run's largest step): those with the room free now first, then by rendezvous
//!   score (BLAKE3 of the Run's hash and the node's peer id), which spreads Runs evenly and moves
//!   as few as possible when nodes come and go.
//! - A Run no live executor could ever fit, however idle, is unplaceable (with the reason); while
//!   no executor is live at all it waits.

use crate::p2p::{Capacity, Executor, MAX_HOLDS};
use crate::tx::{Hash, ResourceRequest};

/// What a Run's largest step asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub cpus: u64,
    pub mem_mib: u64,
    pub gpus: u64,
}

impl Needs {
    /// The largest of each resource over the steps' programs.
    pub fn of<'a>(requests: impl IntoIterator<Item = &'a ResourceRequest>) -> Needs {
        requests.into_iter().fold(Needs::default(), |n, r| Needs {
            cpus: n.cpus.max(r.cpus),
            mem_mib: n.mem_mib.max(r.mem),
            gpus: n.gpus.max(r.gpus),
        })
    }

    /// Whether a node with these resources could ever run it.
    pub fn fit_in(&self, c: &Capacity) -> bool {
        c.cpus >= self.cpus && c.mem_mib >= self.mem_mib && c.gpus.len() as u64 >= self.gpus
    }

    /// Whether a node could start it now.
    pub fn fit_free(&self, c: &Capacity) -> bool {
        c.free_cpus >= self.cpus && c.free_mem_mib >= self.mem_mib && c.free_gpus >= self.gpus
    }
}

impl std::fmt::Display for Needs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} CPUs, {} MiB", self.cpus, self.mem_mib)?;
        if self.gpus > 0 {
            write!(f, ", {} GPUs", self.gpus)?;
        }
        Ok(())
    }
}

/// A holder of a Run, as the view shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub peer_id: String,
    pub since_ms: i64,
    /// The peer id of the node it took the Run over from.
    pub from: Option<String>,
}

/// What the view says about one Run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The holders that keep it, first taken first.
    pub holders: Vec<Holder>,
    /// Holders beyond the redundancy: they let go.
    pub losers: Vec<String>,
    /// The executors that should take it now (peer ids, best first).
    pub chosen: Vec<String>,
    /// Why it waits, when it needs holders and nobody can take it now.
    pub waiting: Option<String>,
    /// Why no node of the network can ever run it.
    pub unplaceable: Option<String>,
}

/// The rendezvous score of `peer_id` for `run` (higher wins).
pub fn score(run: &Hash, peer_id: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&run.0);
    h.update(peer_id.as_bytes());
    *h.finalize().as_bytes()
}

fn active_holds(c: &Capacity) -> usize {
    c.holds.iter().filter(|h| h.ended.is_none()).count()
}

/// Places `run` over `live` (every live node, this one included) for `redundancy` holders.
pub fn decide(run: &Hash, needs: &Needs, live: &[Executor], redundancy: usize) -> Decision {
    let redundancy = redundancy.max(1);
    let hex = run.to_hex();
    let mut holders: Vec<(Holder, [u8; 32])> = live
        .iter()
        .filter_map(|e| {
            let hold = e
                .capacity
                .holds
                .iter()
                .find(|h| h.run == hex && h.ended.is_none())?;
            Some((
                Holder {
                    peer_id: e.peer_id.clone(),
                    since_ms: hold.since_ms,
                    from: hold.from.clone(),
                },
                score(run, &e.peer_id),
            ))
        })
        .collect();
    // First taken first; at the same moment, the higher score.
    holders.sort_by(|(a, sa), (b, sb)| a.since_ms.cmp(&b.since_ms).then(sb.cmp(sa)));
    let losers = holders
        .iter()
        .skip(redundancy)
        .map(|(h, _)| h.peer_id.clone())
        .collect();
    holders.truncate(redundancy);
    let mut decision = Decision {
        holders: holders.into_iter().map(|(h, _)| h).collect(),
        losers,
        ..Decision::default()
    };
    let missing = redundancy - decision.holders.len();
    if missing == 0 {
        return decision;
    }
    let executing: Vec<&Executor> = live.iter().filter(|e| e.capacity.execution).collect();
    if executing.is_empty() {
        decision.waiting = Some("no executing node is live".into());
        return decision;
    }
    if !executing.iter().any(|e| needs.fit_in(&e.capacity)) {
        let largest = executing
            .iter()
            .map(|e| {
                format!(
                    "{} CPUs, {} MiB, {} GPUs",
                    e.capacity.cpus,
                    e.capacity.mem_mib,
                    e.capacity.gpus.len()
                )
            })
            .max()
            .unwrap_or_default();
        decision.unplaceable = Some(format!(
            "no node of the network can run it: its largest step needs {needs}, and the \
             {} executing node(s) offer at most {largest}",
            executing.len()
        ));
        return decision;
    }
    let mut eligible: Vec<(&Executor, bool, [u8; 32])> = executing
        .into_iter()
        .filter(|e| {
            !e.capacity.draining
                && active_holds(&e.capacity) < MAX_HOLDS
                && needs.fit_in(&e.capacity)
                && !decision.holders.iter().any(|h| h.peer_id == e.peer_id)
        })
        .map(|e| (e, needs.fit_free(&e.capacity), score(run, &e.peer_id)))
        .collect();
    eligible.sort_by(|(_, fa, sa), (_, fb, sb)| fb.cmp(fa).then(sb.cmp(sa)));
    decision.chosen = eligible
        .iter()
        .take(missing)
        .map(|(e, _, _)| e.peer_id.clone())
        .collect();
    if decision.chosen.is_empty() {
        decision.waiting = Some(format!(
            "every node that can run it ({needs}) drains or holds {MAX_HOLDS} Runs"
        ));
    }
    decision
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::p2p::{Ended, Hold};

    fn node(id: &str, cpus: u64, gpus: usize, free: bool) -> Executor {
        Executor {
            peer_id: id.into(),
            public_key: None,
            local: false,
            capacity: Capacity {
                execution: true,
                cpus,
                mem_mib: 8192,
                gpus: vec!["GPU".into(); gpus],
                free_cpus: if free { cpus } else { 0 },
                free_mem_mib: if free { 8192 } else { 0 },
                free_gpus: if free { gpus as u64 } else { 0 },
                ..Capacity::default()
            },
            announced_at: SystemTime::now(),
        }
    }

    fn holding(mut e: Executor, run: &Hash, since_ms: i64) -> Executor {
        e.capacity.holds.push(Hold {
            run: run.to_hex(),
            since_ms,
            from: None,
            ended: None,
        });
        e
    }

    const SMALL: Needs = Needs {
        cpus: 1,
        mem_mib: 64,
        gpus: 0,
    };

    #[test]
    fn every_view_order_gives_the_same_choice() {
        let nodes = vec![
            node("a", 4, 0, true),
            node("b", 4, 0, true),
            node("c", 4, 0, true),
        ];
        for i in 0..50u8 {
            let run = Hash([i; 32]);
            let first = decide(&run, &SMALL, &nodes, 1);
            let mut reversed = nodes.clone();
            reversed.reverse();
            assert_eq!(first, decide(&run, &SMALL, &reversed, 1));
            assert_eq!(first.chosen.len(), 1);
        }
    }

    #[test]
    fn runs_spread_over_the_nodes() {
        let nodes = vec![
            node("a", 4, 0, true),
            node("b", 4, 0, true),
            node("c", 4, 0, true),
        ];
        let mut count = std::collections::HashMap::new();
        for i in 0..300u16 {
            let run = Hash::sha3(&i.to_le_bytes());
            *count
                .entry(decide(&run, &SMALL, &nodes, 1).chosen[0].clone())
                .or_insert(0) += 1;
        }
        assert_eq!(count.len(), 3, "{count:?}");
        assert!(count.values().all(|n| *n > 60), "{count:?}");
    }

    #[test]
    fn a_gpu_run_goes_where_a_gpu_is_and_free_room_comes_first() {
        let gpu = Needs { gpus: 1, ..SMALL };
        let nodes = vec![
            node("a", 4, 0, true),
            node("b", 4, 1, false),
            node("c", 4, 0, true),
        ];
        for i in 0..20u8 {
            let run = Hash([i; 32]);
            assert_eq!(decide(&run, &gpu, &nodes, 1).chosen, vec!["b".to_string()]);
            // Without a GPU, the busy node comes last.
            let chosen = decide(&run, &SMALL, &nodes, 2).chosen;
            assert!(!chosen.contains(&"b".to_string()), "{chosen:?}");
        }
    }

    #[test]
    fn a_holder_keeps_its_run_and_a_gone_one_is_replaced() {
        let run = Hash([7; 32]);
        let plain = vec![
            node("a", 4, 0, true),
            node("b", 4, 0, true),
            node("c", 4, 0, true),
        ];
        let first = decide(&run, &SMALL, &plain, 1).chosen[0].clone();
        // Whoever holds it keeps it, even when it is not the first choice.
        let other = ["a", "b", "c"]
            .into_iter()
            .find(|p| *p != first)
            .expect("another node");
        let held: Vec<Executor> = plain
            .iter()
            .cloned()
            .map(|e| {
                if e.peer_id == other {
                    holding(e, &run, 10)
                } else {
                    e
                }
            })
            .collect();
        let d = decide(&run, &SMALL, &held, 1);
        assert_eq!(d.holders[0].peer_id, other);
        assert!(d.chosen.is_empty() && d.losers.is_empty());
        // The holder leaves the view (its announcements stopped): someone else takes it.
        let gone: Vec<Executor> = plain.into_iter().filter(|e| e.peer_id != other).collect();
        let d = decide(&run, &SMALL, &gone, 1);
        assert!(d.holders.is_empty());
        assert_eq!(d.chosen.len(), 1);
        assert_ne!(d.chosen[0], other);
    }

    #[test]
    fn of_two_holders_the_later_lets_go() {
        let run = Hash([9; 32]);
        let nodes = vec![
            holding(node("a", 4, 0, true), &run, 20),
            holding(node("b", 4, 0, true), &run, 10),
        ];
        let d = decide(&run, &SMALL, &nodes, 1);
        assert_eq!(d.holders[0].peer_id, "b");
        assert_eq!(d.losers, vec!["a".to_string()]);
        // With two wanted, both keep it.
        let d = decide(&run, &SMALL, &nodes, 2);
        assert_eq!(d.holders.len(), 2);
        assert!(d.losers.is_empty() && d.chosen.is_empty());
    }

    #[test]
    fn redundancy_picks_distinct_nodes() {
        let nodes = vec![
            node("a", 4, 0, true),
            node("b", 4, 0, true),
            node("c", 4, 0, true),
        ];
        let run = Hash([3; 32]);
        let d = decide(&run, &SMALL, &nodes, 2);
        assert_eq!(d.chosen.len(), 2);
        assert_ne!(d.chosen[0], d.chosen[1]);
        // One already holds it: one more is chosen, not the holder.
        let held: Vec<Executor> = nodes
            .into_iter()
            .map(|e| {
                if e.peer_id == "a" {
                    holding(e, &run, 1)
                } else {
                    e
                }
            })
            .collect();
        let d = decide(&run, &SMALL, &held, 2);
        assert_eq!(d.chosen.len(), 1);
        assert_ne!(d.chosen[0], "a");
    }

    #[test]
    fn what_nothing_can_fit_is_unplaceable_and_nothing_live_waits() {
        let run = Hash([1; 32]);
        let huge = Needs { gpus: 2, ..SMALL };
        let nodes = vec![node("a", 4, 1, true), node("b", 4, 0, true)];
        let d = decide(&run, &huge, &nodes, 1);
        let why = d.unplaceable.expect("unplaceable");
        assert!(why.contains("2 GPUs") && why.contains("1 GPUs"), "{why}");
        let mut relay = node("r", 4, 0, true);
        relay.capacity.execution = false;
        let d = decide(&run, &SMALL, &[relay], 1);
        assert!(d.unplaceable.is_none());
        assert_eq!(d.waiting.as_deref(), Some("no executing node is live"));
        // Draining nodes are not chosen, but they could run it later: it waits.
        let mut draining = node("d", 4, 0, true);
        draining.capacity.draining = true;
        let d = decide(&run, &SMALL, &[draining], 1);
        assert!(d.unplaceable.is_none() && d.chosen.is_empty() && d.waiting.is_some());
    }

    #[test]
    fn an_ended_hold_is_no_hold() {
        let run = Hash([5; 32]);
        let mut a = holding(node("a", 4, 0, true), &run, 1);
        a.capacity.holds[0].ended = Some(Ended {
            outcome: "failed".into(),
            reason: "boom".into(),
        });
        let d = decide(&run, &SMALL, &[a], 1);
        assert!(d.holders.is_empty());
    }
}
