//! Transactions: submit, read, list, trees, execution status, cancel.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::download::Progress;
use crate::model::{Page, PhaseChange, Source, StoredTransaction, Task, TxFilter};
use crate::tx::rpc::{RpcTransaction, TransactionTree};
use crate::tx::{Hash, Kind, Payload, Transaction};

use super::{Node, NodeError, SubmitError, Submitted};

/// A transaction's execution: its tasks, each with what the pipeline knows now.
#[derive(Clone, Debug)]
pub struct TxStatus {
    pub hash: Hash,
    pub kind: Kind,
    pub tasks: Vec<TaskView>,
    /// The files it names and where each stands on this node (a Deploy's images, a Run's
    /// inputs); empty on a node that does not execute.
    pub files: Vec<FileFetch>,
    /// Where a Run is placed in the network (`None` for other kinds, or without a network).
    pub placement: Option<crate::placement::Placement>,
}

/// A file a transaction names, and where it stands here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFetch {
    /// The image's file name, or the input's path in the VM.
    pub name: String,
    pub checksum: Hash,
    pub state: crate::download::FetchState,
}

/// A task as stored, its timeline, and its live state on this node.
#[derive(Clone, Debug)]
pub struct TaskView {
    pub task: Task,
    /// Every phase it entered, oldest first.
    pub timeline: Vec<PhaseChange>,
    /// The download under way, if any.
    pub progress: Option<Progress>,
    /// The end of its VM's console, once it booted.
    pub log_tail: Option<String>,
}

/// How much of a VM's console a status shows.
const LOG_TAIL_BYTES: usize = 2048;

impl Node {
    /// Validates and stores `tx` durably before returning (see [`super::Intake::submit`]), and
    /// tells the observer how it went.
    pub async fn submit(&self, tx: &Transaction, source: Source) -> Result<Submitted, NodeError> {
        let result = self.parts().intake.submit(tx, source).await;
        let outcome = match &result {
            Ok(s) => outcome(s),
            Err(SubmitError::Invalid(e)) => e.code(),
            Err(SubmitError::Store(_)) => "database_unavailable",
        };
        self.observe(tx, outcome);
        Ok(result?)
    }

    fn observe(&self, tx: &Transaction, outcome: &str) {
        if let Some(observer) = &self.parts().observer {
            observer.submitted(tx.kind().as_str(), outcome);
        }
    }

    /// Validates and stores `txs` in one database commit (all or none: the first invalid one
    /// refuses the batch); see [`super::Intake::submit_batch`].
    pub async fn submit_batch(
        &self,
        txs: &[Transaction],
        source: Source,
    ) -> Result<Vec<Submitted>, NodeError> {
        let result = self.parts().intake.submit_batch(txs, source).await;
        if let Ok(outcomes) = &result {
            for (tx, s) in txs.iter().zip(outcomes) {
                self.observe(tx, outcome(s));
            }
        }
        Ok(result?)
    }

    /// Signs `payload` with the node key and submits it. The nonce is the clock in
    /// milliseconds, so the same request twice in one millisecond is one transaction (a
    /// replay), not two.
    pub async fn sign_and_submit(
        &self,
        payload: Payload,
        source: Source,
    ) -> Result<(Transaction, Submitted), NodeError> {
        let nonce = u64::try_from(crate::store::now_ms()).unwrap_or(0);
        let tx = Transaction::new_signed(payload, nonce, &self.parts().key);
        let submitted = self.submit(&tx, source).await?;
        Ok((tx, submitted))
    }

    /// A stored transaction, if this node has it; recently read ones from a bounded cache (a
    /// stored transaction never changes).
    pub async fn find_transaction(
        &self,
        hash: &Hash,
    ) -> Result<Option<Arc<StoredTransaction>>, NodeError> {
        if let Some(stored) = self.inner.stored.get(hash) {
            return Ok(Some(stored));
        }
        let Some(stored) = self.store().get_transaction(hash).await? else {
            return Ok(None);
        };
        let stored = Arc::new(stored);
        // Weighed by its output form, which the first getTransaction of it keeps too.
        let output = self.output_of(&stored.tx)?;
        self.inner
            .stored
            .put(*hash, stored.clone(), output.get().len());
        self.inner
            .outputs
            .put(*hash, output.clone(), output.get().len());
        Ok(Some(stored))
    }

    fn output_of(&self, tx: &Transaction) -> Result<Box<RawValue>, NodeError> {
        let output = RpcTransaction::from_transaction(tx, self.file_base_url());
        serde_json::value::to_raw_value(&output).map_err(|e| {
            NodeError::Internal(format!("cannot encode the output form of {}: {e}", tx.hash))
        })
    }

    /// `getTransaction`'s result for `hash`: the transaction's original output form as JSON,
    /// naming its files on this node's download server; serialised on the first read and then
    /// served from a bounded cache.
    pub async fn transaction_output(
        &self,
        hash: &Hash,
    ) -> Result<Option<Box<RawValue>>, NodeError> {
        if let Some(output) = self.inner.outputs.get(hash) {
            return Ok(Some(output));
        }
        let Some(stored) = self.store().get_transaction(hash).await? else {
            return Ok(None);
        };
        let output = self.output_of(&stored.tx)?;
        self.inner
            .outputs
            .put(*hash, output.clone(), output.get().len());
        Ok(Some(output))
    }

    /// A stored transaction.
    pub async fn transaction(&self, hash: &Hash) -> Result<Arc<StoredTransaction>, NodeError> {
        self.find_transaction(hash)
            .await?
            .ok_or_else(|| not_on_this_node(hash))
    }

    /// Newest first; `before` is the previous page's `next`.
    pub async fn transactions(
        &self,
        filter: &TxFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredTransaction>, NodeError> {
        Ok(self
            .store()
            .list_transactions(filter, before, limit)
            .await?)
    }

    pub async fn count_transactions(&self) -> Result<i64, NodeError> {
        Ok(self.store().count_transactions().await?)
    }

    /// The Run → Proof → Verification tree containing `hash`, if it is part of one here.
    /// Served from a cache while no transaction that could change it was stored since.
    pub async fn tree(&self, hash: &Hash) -> Result<Option<TransactionTree>, NodeError> {
        let stamp = self.parts().intake.tree_changes();
        if let Some(tree) = self.inner.trees.get(hash, stamp) {
            return Ok(Some(tree));
        }
        let tree = self.store().transaction_tree(hash).await?;
        if let Some(tree) = &tree {
            self.inner.trees.put(*hash, stamp, tree.clone());
        }
        Ok(tree)
    }

    /// The tasks of a transaction with their timelines, download progress and VM console.
    pub async fn status(&self, hash: &Hash) -> Result<TxStatus, NodeError> {
        let store = self.store();
        let Some(kind) = store.transaction_kind(hash).await? else {
            return Err(not_on_this_node(hash));
        };
        let tasks = store.tasks_for_tx(hash).await?;
        let timelines = store.task_timelines(hash).await?;
        let pipeline = self.parts().pipeline.as_ref();
        let files = match (pipeline, kind) {
            (Some(p), Kind::Run | Kind::Deploy) => match store.get_transaction(hash).await? {
                Some(stored) => crate::pipeline::named_files(hash, &stored.tx.payload)
                    .into_iter()
                    .filter_map(|f| {
                        Some(FileFetch {
                            state: p.file_state(&f.checksum, f.needs.as_ref())?,
                            checksum: Hash::from_hex(&f.checksum)?,
                            name: f.name,
                        })
                    })
                    .collect(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        let placement = match (kind, self.placement()) {
            (Kind::Run, Some(view)) => match view.get(hash) {
                Some(open) => Some(open),
                None => store
                    .run_ending(hash)
                    .await?
                    .map(|ending| crate::placement::Placement {
                        state: "ended",
                        nodes: Vec::new(),
                        outcome: Some(ending.outcome),
                        reason: ending.reason,
                        ended_on: ending.node,
                    }),
            },
            _ => None,
        };
        Ok(TxStatus {
            hash: *hash,
            kind,
            files,
            placement,
            tasks: tasks
                .into_iter()
                .map(|task| TaskView {
                    timeline: timelines
                        .iter()
                        .filter(|c| c.task_id == task.id)
                        .cloned()
                        .collect(),
                    progress: pipeline.and_then(|p| p.download_progress(task.id)),
                    log_tail: pipeline
                        .filter(|_| task.attempt > 0)
                        .and_then(|p| p.log_tail(task.id, LOG_TAIL_BYTES)),
                    task,
                })
                .collect(),
        })
    }

    /// Where `program`'s image stands here (`not_needed` when this node can never run the
    /// program); `None` on a node that does not execute, or for a malformed checksum.
    pub fn image_state(
        &self,
        program: &crate::model::Program,
    ) -> Option<crate::download::FetchState> {
        let needs = program.resource_requirements.unwrap_or_default();
        self.parts()
            .pipeline
            .as_ref()?
            .file_state(&program.image_file_checksum, Some(&needs))
    }

    /// Cancels a Run: the node signs a `Cancel` naming it. (A Run's author can instead sign and
    /// submit a Cancel through the public paths.)
    pub async fn cancel(
        &self,
        run: &Hash,
        source: Source,
        by: &crate::model::Actor,
    ) -> Result<Submitted, NodeError> {
        let result = self.sign_cancel(run, source).await;
        let detail = match &result {
            Ok(s) => format!("Cancel {}", s.hash.to_hex()),
            Err(e) => e.to_string(),
        };
        self.record(
            by,
            crate::model::AuditAction::Cancel,
            Some(&run.to_hex()),
            Some(&detail),
            result.is_ok(),
        )
        .await;
        result
    }

    async fn sign_cancel(&self, run: &Hash, source: Source) -> Result<Submitted, NodeError> {
        match self.store().transaction_kind(run).await? {
            None => return Err(not_on_this_node(run)),
            Some(Kind::Run) => {}
            Some(other) => {
                return Err(NodeError::WrongKind(format!(
                    "only a Run can be cancelled; {} is a {other}",
                    run.to_hex()
                )));
            }
        }
        let (_, submitted) = self
            .sign_and_submit(Payload::Cancel { parent: *run }, source)
            .await?;
        Ok(submitted)
    }

    /// Tasks by phase (phases without tasks are absent).
    pub async fn task_counts(&self) -> Result<Vec<(crate::model::Phase, i64)>, NodeError> {
        Ok(self.store().count_tasks_by_phase().await?)
    }

    /// The most recently ended tasks that failed or timed out, newest first.
    pub async fn recent_failures(&self, limit: u32) -> Result<Vec<Task>, NodeError> {
        Ok(self.store().recent_failures(limit).await?)
    }
}

/// How a stored submission is counted: new, or a replay.
fn outcome(s: &Submitted) -> &'static str {
    if s.new { "accepted" } else { "duplicate" }
}

fn not_on_this_node(hash: &Hash) -> NodeError {
    NodeError::NotFound(format!("no transaction {} on this node", hash.to_hex()))
}
