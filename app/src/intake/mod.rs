//! The one intake path: every transaction, from a client, a peer or the node itself, is
//! validated and stored here before anything else sees it.

mod batch;
mod commit;
mod outbox;
mod unknown;

pub use batch::CommitStats;
pub use commit::MAX_BATCH;
pub use outbox::{OUTBOX_CAPACITY, Outbox, OutboxReceiver};
pub use unknown::{UNKNOWN_CAPACITY, UnknownOutcomes};

use std::sync::{Arc, OnceLock};

use batch::{Batcher, settle};
use commit::{Announce, Committer};
use unknown::{Unresolved, outcome_unknown};

use crate::events::{Event, Events};
use crate::model::{Phase, PhaseChangeOf, Source};
use crate::store::{Inserted, Store, StoreError};
use crate::tx::{Hash, Payload, Transaction};
use crate::validate::{self, Limits, ValidationError};

/// Who may author transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclPolicy {
    /// Anyone with a valid signature.
    Open,
    /// Only keys on the whitelist in the database (what the node signs itself is always accepted).
    Whitelist,
}

impl AclPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AclPolicy::Open => "open",
            AclPolicy::Whitelist => "whitelist",
        }
    }
}

/// The outcome of a submission that was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub hash: Hash,
    /// False when the transaction was already stored (a replay changes nothing).
    pub new: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(
        "the transaction could not be stored, or its storing was not confirmed; retry later (submitting it again is safe: it is stored once)"
    )]
    Store(#[from] StoreError),
}

/// Validates and stores transactions: the one intake path.
#[derive(Clone, Debug)]
pub struct Intake {
    store: Store,
    limits: Limits,
    acl: AclPolicy,
    /// The events and gossip told of each new transaction.
    announce: Announce,
    /// The node's own key: what it signs (results, operator actions) is never held to the ACL.
    node_author: Option<crate::crypto::PublicKey>,
    /// Tells the keys of the network's other nodes (set once the network runs): a Cancel one of
    /// them signed (an operator's, through that node) counts like this node's own.
    network_nodes: Arc<OnceLock<NetworkNodes>>,
    /// The group-commit writer, started by the first submission (on its runtime) and shared by
    /// every clone.
    committer: Arc<OnceLock<Committer>>,
    /// The task phases' writer (many phase changes to a commit), started like the committer.
    phases: Arc<OnceLock<PhaseWriter>>,
    /// Transactions of failed commits that the database may hold (`unknown.rs`), shared by the
    /// committer and [`Self::submit_batch`]; made on first use.
    unresolved: Arc<OnceLock<Arc<Unresolved>>>,
}

/// Whether a key is a node of the network.
#[derive(Clone)]
pub struct NetworkNodes(pub Arc<dyn Fn(&crate::crypto::PublicKey) -> bool + Send + Sync>);

impl std::fmt::Debug for NetworkNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetworkNodes")
    }
}

/// The writer of task phase changes: one commit for whatever changes are waiting.
type PhaseWriter = Batcher<PhaseChangeOf, Result<bool, StoreError>>;

/// Writes one batch of phase changes in one database transaction (see [`settle`] for a batch
/// that fails) and returns each change's outcome and whether the batch failed.
async fn write_phases(
    store: Store,
    batch: Vec<PhaseChangeOf>,
) -> (Vec<Result<bool, StoreError>>, bool) {
    let written = store.set_task_phases(&batch).await;
    settle("task phases", batch.len(), written, |i| {
        let c = &batch[i];
        store.set_task_phase(c.task, c.phase, c.note.as_deref())
    })
    .await
}

impl Intake {
    pub fn new(store: Store, limits: Limits, acl: AclPolicy) -> Self {
        Self {
            store,
            limits,
            acl,
            announce: Announce {
                events: Events::default(),
                gossip: None,
                tree_changes: Arc::default(),
            },
            node_author: None,
            network_nodes: Arc::default(),
            committer: Arc::new(OnceLock::new()),
            phases: Arc::new(OnceLock::new()),
            unresolved: Arc::new(OnceLock::new()),
        }
    }

    /// Hands every newly stored transaction that did not come from a peer to the P2P network.
    /// (Like the other `with_` settings, before the first submission.)
    pub fn with_gossip(mut self, outbox: Outbox) -> Self {
        self.announce.gossip = Some(outbox);
        self
    }

    /// Trusts transactions signed by the node's own key (its results and operator actions).
    pub fn with_node_author(mut self, key: crate::crypto::PublicKey) -> Self {
        self.node_author = Some(key);
        self
    }

    /// Tells the intake (every clone) which keys are the network's nodes.
    pub fn set_network_nodes(&self, nodes: NetworkNodes) {
        let _ = self.network_nodes.set(nodes);
    }

    fn is_network_node(&self, key: &crate::crypto::PublicKey) -> bool {
        self.network_nodes.get().is_some_and(|n| (n.0)(key))
    }

    /// The node's event bus.
    pub fn events(&self) -> &Events {
        &self.announce.events
    }

    fn committer(&self) -> &Committer {
        self.committer
            .get_or_init(|| Committer::start(self.store.clone(), self.unresolved().clone()))
    }

    fn unresolved(&self) -> &Arc<Unresolved> {
        self.unresolved
            .get_or_init(|| Unresolved::new(self.store.clone(), self.announce.clone()))
    }

    /// What became of the transactions whose commit went unanswered (see `unknown.rs`).
    pub fn unknown_outcomes(&self) -> UnknownOutcomes {
        self.unresolved
            .get()
            .map(|u| u.counts())
            .unwrap_or_default()
    }

    /// How many stored transactions could have changed a transaction tree so far (see
    /// `node::trees`); counted after their commit, before their events.
    pub fn tree_changes(&self) -> u64 {
        self.announce
            .tree_changes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How group commit has done: commits, the transactions in them, failed batches.
    pub fn commit_stats(&self) -> CommitStats {
        self.committer
            .get()
            .map(Committer::stats)
            .unwrap_or_default()
    }

    /// How the task phases' writer has done: commits, the phase changes in them, failed batches.
    pub fn phase_commit_stats(&self) -> CommitStats {
        self.phases.get().map(Batcher::stats).unwrap_or_default()
    }

    /// Moves a task to `phase` (see [`Store::set_task_phase`]) and tells subscribers. Changes
    /// made meanwhile by other tasks share one commit, so a burst of tasks (a thousand queueing
    /// for resources at once) does not queue a thousand commits in front of the next task. When
    /// the commit goes unanswered, the database is asked whether it stored the change before
    /// the caller is told it failed (see `unknown.rs`).
    pub async fn set_task_phase(
        &self,
        task: &crate::model::Task,
        phase: Phase,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let writer = self.phases.get_or_init(|| {
            let store = self.store.clone();
            Batcher::start(MAX_BATCH, move |batch| write_phases(store.clone(), batch))
        });
        let change = PhaseChangeOf {
            task: task.id,
            phase,
            note: error.map(str::to_owned),
        };
        let changed = match writer.call(change).await {
            Ok(changed) => changed,
            Err(e)
                if outcome_unknown(&e) && unknown::phase_stored(&self.store, task, phase).await =>
            {
                tracing::info!(target: "gevulot", task = task.id, phase = phase.as_str(), "a task phase change whose commit went unanswered was stored");
                true
            }
            Err(e) => return Err(e),
        };
        if changed {
            self.announce.events.publish(Event::TaskChanged {
                tx: task.tx,
                task_id: task.id,
                phase,
                failure: crate::model::FailureReason::of(phase, error),
            });
        }
        Ok(changed)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Who may author transactions (and, over P2P, connect).
    pub fn acl(&self) -> AclPolicy {
        self.acl
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validates `tx` and stores it durably before returning, in a commit shared with the
    /// submissions that arrive meanwhile (see `commit.rs`). A transaction already stored is
    /// acknowledged again without any change (idempotent; no reset of execution state).
    pub async fn submit(&self, tx: &Transaction, source: Source) -> Result<Submitted, SubmitError> {
        self.check(tx, source).await?;
        let outcome = self.committer().insert(tx, source).await?;
        Ok(Submitted {
            hash: tx.hash,
            new: matches!(outcome, Inserted::New(_)),
        })
    }

    /// Validates and stores many transactions in one database commit. Stops at the first invalid
    /// transaction without storing any of them.
    pub async fn submit_batch(
        &self,
        txs: &[Transaction],
        source: Source,
    ) -> Result<Vec<Submitted>, SubmitError> {
        for tx in txs {
            self.check(tx, source).await?;
        }
        let unresolved = self.unresolved();
        unresolved.before_write().await;
        let outcomes = match self.store.insert_transactions(txs, source).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                if outcome_unknown(&e) {
                    let unknown = txs.iter().map(|tx| (tx.clone(), source)).collect();
                    unresolved.written(&[], unknown).await;
                }
                return Err(e.into());
            }
        };
        let new: Vec<(&Transaction, Source)> = txs
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, Inserted::New(_)))
            .map(|(tx, _)| (tx, source))
            .collect();
        unresolved.written(&new, Vec::new()).await;
        Ok(txs
            .iter()
            .zip(outcomes)
            .map(|(tx, o)| Submitted {
                hash: tx.hash,
                new: matches!(o, Inserted::New(_)),
            })
            .collect())
    }

    /// Every rule, stateless and stateful, without storing.
    pub async fn check(&self, tx: &Transaction, source: Source) -> Result<(), SubmitError> {
        validate::validate(tx, &self.limits)?;
        if self.acl == AclPolicy::Whitelist
            && source != Source::Node
            && self.node_author != Some(tx.author)
            && !self.store.acl_contains(&tx.author).await?
        {
            return Err(ValidationError::AuthorNotWhitelisted(tx.author.to_hex()).into());
        }
        if let (Some(parent), Some((allowed, expected))) =
            (tx.payload.parent(), validate::expected_parent(tx.kind()))
            && let Some(found) = self.store.transaction_kind(&parent).await?
            && !allowed.contains(&found)
        {
            return Err(ValidationError::ParentWrongKind {
                kind: tx.kind(),
                parent,
                found,
                expected,
            }
            .into());
        }
        if let Payload::Cancel { parent } = &tx.payload
            && self.node_author != Some(tx.author)
            && !self.is_network_node(&tx.author)
            && let Some(run) = self.store.get_transaction(parent).await?
            && run.tx.author != tx.author
        {
            return Err(ValidationError::CancelNotAuthorized {
                run: *parent,
                author: tx.author.to_hex(),
            }
            .into());
        }
        Ok(())
    }
}
