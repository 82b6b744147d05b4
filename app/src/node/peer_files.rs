//! Files the network knows but this node does not hold yet: an output named by a stored Proof or
//! Verification, the image of a deployed program, an input of a stored Run, found from the
//! transaction that names them and fetched through [`crate::peer_files::PeerFiles`].

use std::path::PathBuf;
use std::sync::Arc;

use crate::peer_files::PeerFiles;
use crate::tx::{Hash, Payload};

use super::{Node, NodeError};

/// A file this node knows of: its checksum, where to fetch it, and where it is served here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownFile {
    pub checksum: Hash,
    /// Full URLs, in the order they are tried.
    pub sources: Vec<String>,
    /// The path relative to the download server (`images/…`, `txfiles/…`).
    pub relative: String,
}

impl Node {
    /// Files fetched from producers and peers since start, and fetches that failed everywhere.
    pub fn peer_fetches(&self) -> (u64, u64) {
        self.inner.peer_files.get().map_or((0, 0), |f| f.counts())
    }

    /// What the download server path `segments` (already checked: `images/<hash>/<name>` or
    /// `txfiles/<hash>/…`) names, when a stored transaction names it; `None` otherwise.
    pub async fn known_file(&self, segments: &[String]) -> Result<Option<KnownFile>, NodeError> {
        let relative = segments.join("/");
        let (first, Some(hash)) = (
            segments.first().map(String::as_str),
            segments.get(1).and_then(|h| Hash::from_hex(h)),
        ) else {
            return Ok(None);
        };
        let mut own = Vec::new();
        let checksum = match (first, segments.len()) {
            (Some("images"), 3) => {
                let Some(program) = self.store().get_program(&hash).await? else {
                    return Ok(None);
                };
                if program.image_file_name != segments[2] {
                    return Ok(None);
                }
                own.push(program.image_file_url.clone());
                let Some(sum) = Hash::from_hex(&program.image_file_checksum) else {
                    return Ok(None);
                };
                sum
            }
            (Some("txfiles"), n) if n >= 3 => {
                let Some(stored) = self.store().get_transaction(&hash).await? else {
                    return Ok(None);
                };
                match &stored.tx.payload {
                    Payload::Proof { files, .. } | Payload::Verification { files, .. } => {
                        let Some(sum) = segments.get(2).and_then(|s| Hash::from_hex(s)) else {
                            return Ok(None);
                        };
                        let Some(file) = files
                            .iter()
                            .find(|f| f.checksum == sum && n == 4 && f.basename() == segments[3])
                        else {
                            return Ok(None);
                        };
                        own.push(format!("{}/{relative}", file.url.trim_end_matches('/')));
                        sum
                    }
                    Payload::Run { .. } => {
                        let Some(input) = crate::pipeline::named_files(&hash, &stored.tx.payload)
                            .into_iter()
                            .find(|f| f.served.as_deref() == Some(relative.as_str()))
                        else {
                            return Ok(None);
                        };
                        let Some(sum) = Hash::from_hex(&input.checksum) else {
                            return Ok(None);
                        };
                        own.push(input.url);
                        sum
                    }
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        let sources = self.peer_files()?.sources(&relative, &own);
        Ok(Some(KnownFile {
            checksum,
            sources,
            relative,
        }))
    }

    /// Makes the file at the download server path `segments` available here when the network
    /// knows it: `Ok(None)` when no stored transaction names it, its path here once fetched and
    /// checked, [`NodeError::Unavailable`] when no source had it.
    pub async fn fetch_known_file(
        &self,
        segments: &[String],
    ) -> Result<Option<PathBuf>, NodeError> {
        let Some(known) = self.known_file(segments).await? else {
            return Ok(None);
        };
        let data = &self.parts().data;
        let Some(target) = data.served(&known.relative) else {
            return Ok(None);
        };
        if target.is_file() {
            return Ok(Some(target));
        }
        if let Some(why) = data.below_floor(self.resources().min_free_bytes) {
            return Err(NodeError::Unavailable(format!(
                "cannot fetch {}: {why}",
                known.relative
            )));
        }
        self.peer_files()?
            .fetch(&known.relative, &known.checksum, &known.sources)
            .await
            .map_err(|why| {
                NodeError::Unavailable(format!(
                    "{} is not on this node and no source had it: {why}",
                    known.relative
                ))
            })?;
        Ok(Some(target))
    }

    /// The fetcher of files from producers and peers, shared with the pipeline.
    pub(super) fn peer_files(&self) -> Result<&Arc<PeerFiles>, NodeError> {
        if let Some(f) = self.inner.peer_files.get() {
            return Ok(f);
        }
        let parts = self.parts();
        let built = PeerFiles::new(&parts.data, parts.p2p.clone(), &parts.file_base_url)
            .map_err(|e| NodeError::Unavailable(e.to_string()))?;
        Ok(self.inner.peer_files.get_or_init(|| Arc::new(built)))
    }
}
