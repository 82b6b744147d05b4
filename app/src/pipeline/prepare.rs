//! What an attempt needs before its VM starts: the program's image and the step's inputs, in
//! place under the data directory.

use std::path::PathBuf;

use tracing::info;

use crate::model::{Program, Task, TaskKind};
use crate::tx::{Hash, Kind, Payload, ProgramData, Transaction, Workflow};

use super::driver::{Failure, download_failure};
use super::{Execute, Pipeline};

/// What an attempt needs in the VM.
pub(super) struct Prepared {
    pub(super) image: PathBuf,
    pub(super) inputs: Vec<(String, PathBuf)>,
    /// The transaction the program executes (the Run, or the Proof it verifies).
    pub(super) executes: Hash,
    /// The Proof a verifier step verifies.
    pub(super) verifies: Option<Hash>,
}

impl<E: Execute> Pipeline<E> {
    /// Downloads `url` for `task`, showing its progress meanwhile.
    /// The content with `checksum` from `url`; when that fails, from a peer serving it at
    /// `served` (its path on the download server), when given.
    pub(super) async fn fetch(
        &self,
        task: i64,
        url: &str,
        checksum: &str,
        served: Option<&str>,
    ) -> Result<PathBuf, Failure> {
        if let Some(hash) = Hash::from_hex(checksum) {
            self.state().downloading.insert(task, hash);
        }
        let fetched = self.fetch_anywhere(url, checksum, served).await;
        self.state().downloading.remove(&task);
        fetched.map_err(download_failure)
    }

    /// The content with `checksum` from `url`, or, when that fails, from a peer serving it at
    /// `served`; placed at `served` either way.
    pub(super) async fn fetch_anywhere(
        &self,
        url: &str,
        checksum: &str,
        served: Option<&str>,
    ) -> Result<PathBuf, crate::download::DownloadError> {
        let dl = &self.inner.downloader;
        let mut fetched = dl.fetch(url, checksum).await;
        if let (Err(e), Some(relative), Some(peers), Some(sum)) = (
            &fetched,
            served,
            self.inner.peer_files.get(),
            Hash::from_hex(checksum),
        ) {
            let sources = peers.sources(relative, &[]);
            if !sources.is_empty() {
                info!(target: "gevulot", url, error = %e, peers = sources.len(), "the file's URL failed; fetching it from peers");
                if let Ok(content) = peers.fetch(relative, &sum, &sources).await {
                    fetched = Ok(content);
                }
            }
        }
        let content = fetched?;
        if let Some(target) = served.and_then(|r| self.inner.config.data_dir.served(r)) {
            dl.place(&content, &target)?;
        }
        Ok(content)
    }

    /// An earlier step's output file that this node does not hold (the step ran elsewhere):
    /// fetched from the node that produced it, or from a peer.
    async fn fetch_output(
        &self,
        relative: &str,
        checksum: &Hash,
        producer: &str,
    ) -> Result<PathBuf, String> {
        let Some(peers) = self.inner.peer_files.get() else {
            return Err("this node does not fetch from peers".into());
        };
        let first = [format!("{}/{relative}", producer.trim_end_matches('/'))];
        let sources = peers.sources(relative, &first);
        peers.fetch(relative, checksum, &sources).await
    }

    /// Downloads the image and inputs and resolves earlier steps' outputs.
    pub(super) async fn prepare(
        &self,
        task: &Task,
        run: &Transaction,
        workflow: &Workflow,
        program: &Program,
    ) -> Result<Prepared, Failure> {
        let data = &self.inner.config.data_dir;
        // Served to peers at the original's path.
        let image_path = (!program.image_file_name.contains('/')).then(|| {
            format!(
                "images/{}/{}",
                program.hash.to_hex(),
                program.image_file_name
            )
        });
        let image = self
            .fetch(
                task.id,
                &program.image_file_url,
                &program.image_file_checksum,
                image_path.as_deref(),
            )
            .await?;
        // The retention collector keeps images by when a task last used them.
        if let Ok(f) = std::fs::File::open(&image) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        let index = task.step_index as usize;
        let step = &workflow.steps[index];
        let mut inputs = Vec::with_capacity(step.inputs.len());
        for input in &step.inputs {
            match input {
                ProgramData::Input {
                    file_name,
                    file_url,
                    checksum,
                } => {
                    let served = format!(
                        "txfiles/{}/{}",
                        run.hash.to_hex(),
                        file_name.trim_start_matches('/')
                    );
                    let content = self
                        .fetch(task.id, file_url, checksum, Some(&served))
                        .await?;
                    inputs.push((file_name.clone(), content));
                }
                ProgramData::Output {
                    source_program,
                    file_name,
                } => {
                    let Some(source) = workflow.steps[..index]
                        .iter()
                        .position(|s| s.program == *source_program)
                    else {
                        return Err(Failure::Fatal(format!(
                            "no step before step {} runs program {source_program}",
                            index + 1
                        )));
                    };
                    let Some(result) = self.find_result(run, source as i64).await? else {
                        return Err(Failure::Fatal(format!(
                            "step {} has no result to take {file_name} from",
                            source + 1
                        )));
                    };
                    let files = match &result.payload {
                        Payload::Proof { files, .. } | Payload::Verification { files, .. } => {
                            files.as_slice()
                        }
                        _ => &[],
                    };
                    let Some(file) = files.iter().find(|f| f.name == *file_name) else {
                        let produced: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
                        return Err(Failure::Fatal(format!(
                            "step {} produced no {file_name} (it produced: {})",
                            source + 1,
                            if produced.is_empty() {
                                "nothing".to_string()
                            } else {
                                produced.join(", ")
                            }
                        )));
                    };
                    let path = data.output_file(&result.hash, &file.checksum, file.basename());
                    if !path.is_file() {
                        let relative = format!(
                            "txfiles/{}/{}/{}",
                            result.hash.to_hex(),
                            file.checksum.to_hex(),
                            file.basename()
                        );
                        if let Err(why) = self
                            .fetch_output(&relative, &file.checksum, &file.url)
                            .await
                        {
                            return Err(Failure::Retryable {
                                reason: format!(
                                    "{file_name} of step {} is not on this node and could not be fetched: {why}",
                                    source + 1
                                ),
                                booted: false,
                            });
                        }
                    }
                    inputs.push((file_name.clone(), path));
                }
            }
        }
        let (executes, verifies) = if task.kind == TaskKind::Verification {
            // The Proof of the nearest prover step before this one.
            let mut proof = None;
            for j in (0..index).rev() {
                if let Some(r) = self.find_result(run, j as i64).await?
                    && r.kind() == Kind::Proof
                {
                    proof = Some(r.hash);
                    break;
                }
            }
            let Some(proof) = proof else {
                return Err(Failure::Fatal(format!(
                    "step {} runs a verifier, but no earlier step produced a Proof to verify",
                    index + 1
                )));
            };
            (proof, Some(proof))
        } else {
            (run.hash, None)
        };
        Ok(Prepared {
            image,
            inputs,
            executes,
            verifies,
        })
    }
}
