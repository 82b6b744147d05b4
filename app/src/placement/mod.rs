//! Placement: the network executes each Run once (or `GEVULOT_PLACEMENT_REDUNDANCY` times), on
//! nodes that can fit it, wherever it arrived, and carries on when such a node goes.
//!
//! Every node runs a [`Placer`] over the same inputs: the Runs it stores that have not ended, and
//! the capacity announcements of the live nodes (see `p2p::capacity`), whose holds are the
//! leases. From them [`rule::decide`] names the same node(s) everywhere; a chosen executing node
//! takes the Run (its next announcement, sent at once, lists the hold), plans it, and keeps it
//! while its announcements keep coming. When they stop (the node was killed, left, or lost the
//! network) the hold lapses after `LIVE_INTERVALS` intervals and the next node takes the Run
//! over; its tasks skip every step that already has a result, wherever it was proven.
//!
//! A Run ends for placement when its last step has its results (every node sees the Proofs and
//! Verifications), when a Cancel by its author is stored, when it failed on its holder (which
//! keeps announcing the ending for a while, so every node records it), or when no live node
//! could ever fit it. Each node records the ending (`run_endings`) and never places it again.
//!
//! A node that starts waits about two announcement intervals before it takes anything (it has to
//! hear the others' holds first), unless it has no peer to hear from. The Runs it held when it
//! stopped (its tasks that had not ended) are its holds again; if another node took one over
//! meanwhile, the one that took it first keeps it and the other lets go.

mod endings;
pub mod rule;
mod view;

pub use rule::{Decision, Holder, Needs};
use view::Shared;
pub use view::{Counters, PlacedOn, Placement, PlacementView};

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::events::{Event, Events};
use crate::model::Phase;
use crate::outage::Outage;
use crate::p2p::{Capacity, Executor, Hold, MAX_HOLDS, P2p};
use crate::pipeline::Pipeline;
use crate::store::{Store, StoreError, now_ms};
use crate::tx::{Hash, Kind, Payload};

/// How often every open Run is looked at again.
const TICK: Duration = Duration::from_millis(500);
/// How often the open Runs are read again from the database.
const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// Open Runs read at most at once.
const MAX_OPEN: u32 = 10_000;
/// How long a Run that ended here stays in this node's announcements.
const ENDED_ANNOUNCED: Duration = Duration::from_secs(600);

/// An open Run as the placer keeps it.
#[derive(Debug, Default)]
struct Open {
    /// Its place in the order the Runs arrived (Runs are taken oldest first).
    arrival: u64,
    /// What its largest step needs, once all its programs are known.
    needs: Option<Needs>,
    /// Every node seen holding it (to say whom a node took it over from).
    seen: BTreeSet<String>,
    /// Whether it was checked for an end this node already knows of (its results, a task of
    /// this node that failed: a Run stored before endings were recorded).
    checked: bool,
}

/// A hold of this node.
#[derive(Debug)]
struct Mine {
    hold: Hold,
    /// Whether the pipeline was handed the Run since this process started.
    started: bool,
}

impl Mine {
    /// A hold taken now (over from `from`, when its holder went).
    fn now(run: &Hash, from: Option<String>, started: bool) -> Mine {
        Mine {
            hold: Hold {
                run: run.to_hex(),
                since_ms: now_ms(),
                from,
                ended: None,
            },
            started,
        }
    }
}

/// Drives placement on one node; see the module's documentation.
#[derive(Debug)]
pub struct Placer {
    store: Store,
    events: Events,
    p2p: P2p,
    pipeline: Option<Pipeline>,
    own: watch::Receiver<Option<Capacity>>,
    me: String,
    redundancy: usize,
    settle_until: Instant,
    settled: bool,
    open: HashMap<Hash, Open>,
    arrivals: u64,
    holds: BTreeMap<Hash, Mine>,
    ended: VecDeque<(Hold, Instant)>,
    shared: Arc<Shared>,
    /// Whether reading the database fails now (logged when it starts and ends).
    outage: Outage,
}

impl Placer {
    /// A placer for a node whose network is `p2p`, whose own capacity is `own`, and that
    /// executes through `pipeline` (none on a node that never executes).
    pub fn new(
        store: Store,
        events: Events,
        p2p: P2p,
        pipeline: Option<Pipeline>,
        own: watch::Receiver<Option<Capacity>>,
        redundancy: usize,
    ) -> (Placer, PlacementView) {
        let redundancy = redundancy.max(1);
        if let Some(p) = &pipeline {
            p.set_placed(redundancy);
        }
        let shared = Arc::new(Shared::default());
        let settle_until = Instant::now() + p2p.announce_every() * 2;
        let placer = Placer {
            store,
            events,
            me: p2p.peer_id(),
            p2p,
            pipeline,
            own,
            redundancy,
            settle_until,
            settled: false,
            open: HashMap::new(),
            arrivals: 0,
            holds: BTreeMap::new(),
            ended: VecDeque::new(),
            shared: shared.clone(),
            outage: Outage::default(),
        };
        (placer, PlacementView { shared, redundancy })
    }

    /// Runs until the event bus closes.
    pub async fn run(mut self) {
        let mut events = self.events.subscribe();
        self.restore().await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reload = tokio::time::interval(RELOAD_EVERY);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => self.on_event(event).await,
                    Err(RecvError::Lagged(_)) => self.reload().await,
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => self.evaluate(None).await,
                _ = reload.tick() => self.reload().await,
            }
        }
    }

    /// The Runs this node held when it stopped become its holds again.
    async fn restore(&mut self) {
        match self.store.runs_with_open_tasks().await {
            Ok(runs) => {
                for run in runs {
                    self.holds.insert(run, Mine::now(&run, None, false));
                }
            }
            Err(e) => {
                warn!(target: "gevulot", error = %e, "cannot read the Runs this node held; they are placed anew")
            }
        }
        self.publish_holds();
    }

    /// Reads the open Runs again (at start, when events were missed, and now and then).
    async fn reload(&mut self) {
        let runs = match self.store.unended_runs(MAX_OPEN).await {
            Ok(runs) => runs,
            Err(e) => {
                self.outage.failed("read the open Runs", &e);
                return;
            }
        };
        // Only a complete answer tells which Runs ended while events were missed.
        let complete = runs.len() < MAX_OPEN as usize;
        let now: BTreeSet<Hash> = runs.iter().copied().collect();
        for run in runs {
            self.arrived(run);
        }
        let gone: Vec<Hash> = self
            .open
            .keys()
            .filter(|r| complete && !now.contains(r))
            .copied()
            .collect();
        for run in gone {
            self.forget(&run);
        }
        let held: Vec<Hash> = self.holds.keys().copied().collect();
        for run in held {
            if complete && !now.contains(&run) {
                self.forget(&run);
            } else if let Err(e) = self.check_done(run).await {
                warn!(target: "gevulot", run = %run, error = %e, "cannot read the Run's results");
            }
        }
        self.publish_holds();
    }

    async fn on_event(&mut self, event: Event) {
        let result = match event {
            Event::TransactionStored {
                hash,
                kind: Kind::Run,
                ..
            } => {
                self.arrived(hash);
                self.evaluate(Some(hash)).await;
                Ok(())
            }
            Event::TransactionStored {
                kind: Kind::Cancel,
                parent: Some(run),
                ..
            } => self.cancelled(run).await,
            Event::TransactionStored {
                hash,
                kind: Kind::Proof | Kind::Verification,
                source,
                ..
            } => self.result_stored(hash, source).await,
            Event::TaskChanged {
                tx,
                phase: Phase::Failed | Phase::TimedOut,
                ..
            } => self.failed_here(tx).await,
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.outage.failed(
                "follow what was stored for placement (it looks again later)",
                &e,
            );
        }
    }

    /// Keeps `run` open, after every Run that arrived before it. Beyond `MAX_OPEN` open Runs a
    /// new one waits for a reload (which reads the oldest first).
    fn arrived(&mut self, run: Hash) {
        if !self.open.contains_key(&run) && self.open.len() < MAX_OPEN as usize {
            self.arrivals += 1;
            let arrival = self.arrivals;
            self.open.insert(
                run,
                Open {
                    arrival,
                    ..Open::default()
                },
            );
        }
    }

    /// Drops `run` from what this node places and holds.
    fn forget(&mut self, run: &Hash) {
        self.open.remove(run);
        self.holds.remove(run);
        if let Ok(mut views) = self.shared.views.write() {
            views.remove(run);
        }
    }

    /// What this node announces: its holds, then the Runs that ended here lately.
    fn publish_holds(&mut self) {
        while self
            .ended
            .front()
            .is_some_and(|(_, at)| at.elapsed() > ENDED_ANNOUNCED)
            || self.ended.len() > MAX_HOLDS / 4
        {
            self.ended.pop_front();
        }
        let holds: Vec<Hold> = self
            .holds
            .values()
            .map(|m| m.hold.clone())
            .chain(self.ended.iter().map(|(h, _)| h.clone()))
            .collect();
        self.p2p.set_holds(holds);
    }

    /// The live nodes, this one with its current holds.
    fn live(&self) -> Vec<Executor> {
        let mut live: Vec<Executor> = self
            .p2p
            .executors()
            .into_iter()
            .filter(|e| e.peer_id != self.me)
            .collect();
        if let Some(mut capacity) = self.own.borrow().clone() {
            capacity.holds = self.holds.values().map(|m| m.hold.clone()).collect();
            // Known here at once (the announced value follows within an interval).
            if let Some(p) = &self.pipeline {
                capacity.draining = p.draining();
            }
            live.push(Executor {
                peer_id: self.me.clone(),
                public_key: crate::p2p::peer_key(&self.p2p.local_peer_id()).map(|k| k.to_hex()),
                local: true,
                capacity,
                announced_at: std::time::SystemTime::now(),
            });
        }
        live
    }

    /// What a Run's largest step needs, and whether every program of it is deployed here (a
    /// program not deployed yet counts as needing nothing: the node that takes the Run waits
    /// for it, for as long as `GEVULOT_PROGRAM_WAIT` allows, and fails it with the reason).
    async fn needs(&self, run: &Hash) -> Result<Option<(Needs, bool)>, StoreError> {
        let Some(stored) = self.store.get_transaction(run).await? else {
            return Ok(None);
        };
        let Payload::Run { workflow } = &stored.tx.payload else {
            return Ok(None);
        };
        let mut requests = Vec::with_capacity(workflow.steps.len());
        let mut complete = true;
        for step in &workflow.steps {
            match self.store.get_program(&step.program).await? {
                Some(p) => requests.push(p.resource_requirements.unwrap_or_default()),
                None => complete = false,
            }
        }
        Ok(Some((Needs::of(&requests), complete)))
    }

    /// Looks at every open Run (or only `only`) and takes, keeps or lets go of each.
    async fn evaluate(&mut self, only: Option<Hash>) {
        if !self.settled {
            self.settled = Instant::now() >= self.settle_until
                || (self.p2p.bootstrap().is_empty() && self.p2p.peer_count() == 0);
        }
        let mut changed = self.hand_over_if_draining().await;
        let live = self.live();
        changed |= self.learn_endings(&live).await;
        let runs: Vec<Hash> = match only {
            Some(run) => vec![run],
            None => {
                let mut runs: Vec<(u64, Hash)> =
                    self.open.iter().map(|(h, o)| (o.arrival, *h)).collect();
                runs.sort_unstable();
                runs.into_iter().map(|(_, h)| h).collect()
            }
        };
        let mut failed = 0;
        for run in runs {
            match self.place(run, &live).await {
                Ok(c) => changed |= c,
                Err(e) => {
                    failed += 1;
                    self.outage.failed(&format!("place the Run {run} yet"), &e);
                }
            }
        }
        if failed == 0 {
            self.outage.over("placement");
        }
        if changed {
            self.publish_holds();
        }
    }

    /// While this node drains, the Runs it holds whose step is not on a VM go to other nodes
    /// (they would only wait here). Returns whether any went.
    async fn hand_over_if_draining(&mut self) -> bool {
        let Some(pipeline) = self.pipeline.clone() else {
            return false;
        };
        if !pipeline.draining() || self.holds.is_empty() {
            return false;
        }
        let mut changed = false;
        let held: Vec<Hash> = self.holds.keys().copied().collect();
        for run in held {
            let on_vm = match self.store.tasks_for_tx(&run).await {
                Ok(tasks) => tasks.iter().any(|t| {
                    matches!(t.phase, Phase::Booting | Phase::Running | Phase::Submitting)
                }),
                Err(e) => {
                    warn!(target: "gevulot", run = %run, error = %e, "cannot read the Run's tasks; it stays here for now");
                    true
                }
            };
            if !on_vm {
                info!(target: "gevulot", run = %run, "this node drains; handing the Run to another node");
                self.release(run, "the next node that can run it").await;
                changed = true;
            }
        }
        changed
    }

    /// Places one Run; returns whether this node's holds changed.
    async fn place(&mut self, run: Hash, live: &[Executor]) -> Result<bool, StoreError> {
        if let Some(open) = self.open.get_mut(&run)
            && !open.checked
        {
            open.checked = true;
            self.check_done(run).await?;
            self.failed_here(run).await?;
        }
        let Some(open) = self.open.get(&run) else {
            return Ok(true);
        };
        let needs = match open.needs {
            Some(n) => n,
            None => match self.needs(&run).await? {
                Some((n, complete)) => {
                    if complete && let Some(o) = self.open.get_mut(&run) {
                        o.needs = Some(n);
                    }
                    n
                }
                None => return Ok(false),
            },
        };
        let decision = rule::decide(&run, &needs, live, self.redundancy);
        let mut changed = false;
        if let Some(o) = self.open.get_mut(&run) {
            o.seen
                .extend(decision.holders.iter().map(|h| h.peer_id.clone()));
        }
        if decision.losers.contains(&self.me) {
            let keeper = decision
                .holders
                .first()
                .map_or_else(String::new, |h| h.peer_id.clone());
            self.release(run, &keeper).await;
            changed = true;
        } else if let Some(mine) = self.holds.get_mut(&run)
            && !mine.started
            && self.settled
        {
            // Held before this process started: carry on.
            if let Some(pipeline) = &self.pipeline {
                pipeline.take(run).await?;
            }
            mine.started = true;
        }
        if self.settled
            && decision.chosen.contains(&self.me)
            && !self.holds.contains_key(&run)
            && let Some(pipeline) = self.pipeline.clone()
        {
            let from = self.open.get(&run).and_then(|o| {
                o.seen
                    .iter()
                    .find(|p| **p != self.me && !decision.holders.iter().any(|h| h.peer_id == **p))
                    .cloned()
            });
            self.holds.insert(run, Mine::now(&run, from.clone(), true));
            // Announced before the tasks start, so a slower node sees the hold first.
            self.publish_holds();
            if let Err(e) = pipeline.take(run).await {
                self.holds.remove(&run);
                return Err(e);
            }
            let counters = &self.shared.counters;
            match &from {
                Some(from) => {
                    info!(target: "gevulot", run = %run, from = %from, "took the Run over from a node that went or drains");
                    counters.taken_over.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    info!(target: "gevulot", run = %run, "the Run is placed on this node");
                    counters.placed.fetch_add(1, Ordering::Relaxed);
                }
            }
            changed = true;
        }
        if let (Some(reason), true) = (&decision.unplaceable, self.settled) {
            info!(target: "gevulot", run = %run, reason = %reason, "no node can run the Run");
            self.store
                .end_run(&run, "unplaceable", Some(reason), None)
                .await?;
            self.shared
                .counters
                .unplaceable
                .fetch_add(1, Ordering::Relaxed);
            self.forget(&run);
            return Ok(changed);
        }
        let view = self.view_of(&run, &decision, live);
        self.show(run, view);
        Ok(changed)
    }

    /// Lets go of `run`: `keeper` holds it.
    async fn release(&mut self, run: Hash, keeper: &str) {
        self.holds.remove(&run);
        self.shared
            .counters
            .released
            .fetch_add(1, Ordering::Relaxed);
        info!(target: "gevulot", run = %run, keeper = %keeper, "another node holds the Run; letting it go");
        if let Some(pipeline) = &self.pipeline
            && let Err(e) = pipeline.release(run).await
        {
            warn!(target: "gevulot", run = %run, error = %e, "cannot forget the Run's tasks here");
        }
    }
}
