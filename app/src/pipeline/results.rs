//! Results: a step that already has one is never run again; a new one is stored with its files
//! and submitted as a node-signed Proof or Verification.

use tracing::info;

use crate::intake::SubmitError;
use crate::model::{Program, Source};
use crate::store::{StoreError, now_ms};
use crate::tx::{Hash, Marker, Payload, Transaction, TxFile};
use crate::vm::outputs::AcceptedOutput;

use super::driver::Failure;
use super::{Execute, Pipeline};

impl<E: Execute> Pipeline<E> {
    /// The result of step `index` of `run`: a Proof (child of the Run) or a Verification (child
    /// of the Proof it verified). This node's own when each step is to be proven independently
    /// by several nodes (or placement is off); otherwise the first, whichever node signed it.
    pub(super) async fn find_result(
        &self,
        run: &Transaction,
        index: i64,
    ) -> Result<Option<Transaction>, StoreError> {
        let Payload::Run { workflow } = &run.payload else {
            return Ok(None);
        };
        let Some(step) = workflow.steps.get(index as usize) else {
            return Ok(None);
        };
        let node = self.inner.key.public_key();
        let author = (self.redundancy() != Some(1)).then_some(&node);
        let results = self.store().results_of_run(&run.hash, author).await?;
        // A prover step's Proof, or a verifier step's Verification of one of the Run's Proofs.
        Ok(results
            .into_iter()
            .map(|s| s.tx)
            .find(|t| match &t.payload {
                Payload::Proof { prover, .. } => *prover == step.program,
                Payload::Verification { verifier, .. } => *verifier == step.program,
                _ => false,
            }))
    }

    /// Stores the outputs and submits the signed Proof or Verification.
    pub(super) async fn submit_result(
        &self,
        run: &Transaction,
        program: &Program,
        verifies: Option<Hash>,
        data: Vec<u8>,
        outputs: Vec<AcceptedOutput>,
    ) -> Result<(), Failure> {
        let files: Vec<TxFile> = outputs
            .iter()
            .map(|o| TxFile {
                name: o.vm_path.clone(),
                url: self.inner.config.file_base_url.clone(),
                checksum: o.checksum,
                extention: Marker,
            })
            .collect();
        let payload = match verifies {
            None => Payload::Proof {
                parent: run.hash,
                prover: program.hash,
                proof: data,
                files,
            },
            Some(proof) => Payload::Verification {
                parent: proof,
                verifier: program.hash,
                verification: data,
                files,
            },
        };
        let nonce = u64::try_from(now_ms()).unwrap_or_default();
        let tx = Transaction::new_signed(payload, nonce, &self.inner.key);
        // The files are in place before the transaction that names them is visible.
        let inner = self.inner.clone();
        let hash = tx.hash;
        tokio::task::spawn_blocking(move || {
            inner
                .executor
                .store_outputs(&outputs, &inner.config.data_dir, &hash)
        })
        .await
        .map_err(|e| Failure::Retryable {
            reason: format!("storing the outputs failed: {e}"),
            booted: true,
        })?
        .map_err(|e| Failure::Retryable {
            reason: format!("cannot store the outputs: {e}"),
            booted: true,
        })?;
        match self.inner.intake.submit(&tx, Source::Node).await {
            Ok(_) => {
                info!(target: "gevulot", run = %run.hash, result = %tx.hash, kind = tx.kind().as_str(), "result submitted");
                Ok(())
            }
            Err(SubmitError::Invalid(e)) => Err(Failure::Fatal(format!(
                "the program's result was refused: {e}"
            ))),
            Err(SubmitError::Store(e)) => Err(Failure::Store(e)),
        }
    }
}
