//! Files fetched on arrival: when a Deploy is stored, both images start downloading (except the
//! image of a program that can never run on this node); when a Run this node executes is stored,
//! its input files do. A client that serves a file only briefly (the original CLI serves a local
//! file until the node has fetched it) is done with at once, however long the Run then waits for
//! resources. Fetches share the downloader's limits and its
//! per-checksum lock, so a task that needs a file still being fetched waits for that fetch.

use std::sync::Arc;

use tracing::{debug, info, warn};

use crate::download::FetchState;
use crate::tx::{Hash, Payload, ProgramData, ResourceRequest};

use super::{Execute, Pipeline};

/// Fetches started on arrival and not yet done, at most; beyond it a file is fetched when its
/// task needs it.
pub(super) const MAX_PREFETCHING: usize = 256;

/// Tries of a fetch on arrival, and the wait before the second (then twice, three times as long).
const PREFETCH_ATTEMPTS: u32 = 4;
const PREFETCH_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// A file a transaction names: a Deploy's image or a Run's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedFile {
    /// The image's file name, or the input's path in the VM.
    pub name: String,
    pub url: String,
    /// Hex BLAKE3, as the transaction names it.
    pub checksum: String,
    /// Where the download server serves it (`None` for an image name with a `/`).
    pub served: Option<String>,
    /// What the program whose image this is asks for (`None` for a Run's input).
    pub needs: Option<ResourceRequest>,
}

/// The files a Deploy (its two images) or a Run (`hash`: its inputs) names.
pub fn named_files(hash: &Hash, payload: &Payload) -> Vec<NamedFile> {
    match payload {
        Payload::Deploy {
            prover, verifier, ..
        } => [prover, verifier]
            .into_iter()
            .map(|p| NamedFile {
                name: p.image_file_name.clone(),
                url: p.image_file_url.clone(),
                checksum: p.image_file_checksum.clone(),
                served: (!p.image_file_name.contains('/'))
                    .then(|| format!("images/{}/{}", p.hash.to_hex(), p.image_file_name)),
                needs: Some(p.resource_requirements.unwrap_or_default()),
            })
            .collect(),
        Payload::Run { workflow } => workflow
            .steps
            .iter()
            .flat_map(|s| &s.inputs)
            .filter_map(|i| match i {
                ProgramData::Input {
                    file_name,
                    file_url,
                    checksum,
                } => Some(NamedFile {
                    name: file_name.clone(),
                    url: file_url.clone(),
                    checksum: checksum.clone(),
                    served: Some(format!(
                        "txfiles/{}/{}",
                        hash.to_hex(),
                        file_name.trim_start_matches('/')
                    )),
                    needs: None,
                }),
                ProgramData::Output { .. } => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl<E: Execute> Pipeline<E> {
    /// [`Pipeline::prefetch`] beside the event loop, unless as many fetches run as allowed.
    pub(super) fn prefetch_soon(&self, hash: Hash) {
        if self.inner.prefetching.available_permits() == 0 {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.prefetch(hash).await });
    }

    /// Starts fetching what the stored transaction `hash` names: a Deploy's two images, or a
    /// Run's input files.
    async fn prefetch(&self, hash: Hash) {
        let stored = match self.store().get_transaction(&hash).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(e) => {
                debug!(target: "gevulot", tx = %hash, error = %e, "cannot read a transaction to fetch its files early; they are fetched when a task needs them");
                return;
            }
        };
        let wanted = named_files(&hash, &stored.tx.payload);
        for file in wanted {
            if let Some(why) = self.never_needed(file.needs.as_ref()) {
                info!(target: "gevulot", tx = %hash, file = %file.name, "not fetching an image on arrival: {why}");
                continue;
            }
            let Ok(permit) = self.inner.prefetching.clone().try_acquire_owned() else {
                debug!(target: "gevulot", url = %file.url, "not fetching early: as many files are being fetched as allowed");
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                this.fetch_early(file).await;
            });
        }
    }

    /// Fetches `file` from its URL or from peers, and serves it (to peers, where they look). A
    /// failed fetch is tried again a few times: a node that just joined learns its peers'
    /// download servers from their first announcements, seconds after the catch-up brought it
    /// the transaction.
    async fn fetch_early(&self, file: NamedFile) {
        for attempt in 1..=PREFETCH_ATTEMPTS {
            match self
                .fetch_anywhere(&file.url, &file.checksum, file.served.as_deref())
                .await
            {
                Ok(_) => return,
                Err(e) if attempt == PREFETCH_ATTEMPTS => {
                    warn!(target: "gevulot", url = %file.url, error = %e, "a file fetched on arrival failed; a task that needs it tries again");
                }
                Err(e) => {
                    debug!(target: "gevulot", url = %file.url, error = %e, attempt, "a file fetched on arrival failed; trying again soon");
                    tokio::time::sleep(PREFETCH_RETRY * attempt).await;
                }
            }
        }
    }

    /// Where the content with `checksum` stands on this node.
    pub fn fetch_state(&self, checksum: &Hash) -> FetchState {
        self.inner.downloader.state(checksum)
    }

    /// Where a file with `checksum` (hex) stands on this node: as [`Pipeline::fetch_state`],
    /// except that the image of a program asking for `needs` that this node does not hold and
    /// never fetches (see [`Pipeline::never_needed`]) is [`FetchState::NotNeeded`]. `None` for a
    /// malformed checksum.
    pub fn file_state(
        &self,
        checksum: &str,
        needs: Option<&ResourceRequest>,
    ) -> Option<FetchState> {
        Some(match self.fetch_state(&Hash::from_hex(checksum)?) {
            FetchState::Absent => self
                .never_needed(needs)
                .map_or(FetchState::Absent, FetchState::NotNeeded),
            state => state,
        })
    }

    /// Why an image is not fetched on arrival, if it is not: its program asks for `needs` (`None`
    /// for a file that is no image), more CPUs, memory or GPUs than this node has, so fetching it
    /// would only spend bandwidth and disk. A task that needs it still fetches it.
    pub fn never_needed(&self, needs: Option<&ResourceRequest>) -> Option<String> {
        let refusal = self.never_fits(needs?)?;
        Some(format!(
            "this node can never run the program whose image it is: {refusal}"
        ))
    }
}

/// The bound on fetches started on arrival.
pub(super) fn prefetch_permits() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(MAX_PREFETCHING))
}
