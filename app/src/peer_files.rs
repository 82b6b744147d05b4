//! Fetching a file the network knows from wherever it is: the URLs its transaction names (its
//! producer), then every peer's download server at the same path (peers are known from their
//! capacity announcements). The content is BLAKE3-checked against the checksum the transaction
//! names, stored, and placed where this node serves it. The download server uses it for a file
//! it is asked for but does not hold (`Node::fetch_known_file`); the pipeline for an image or
//! input whose URL fails.
//!
//! A fetch from a peer carries [`PEER_FETCH_HEADER`]; a download server asked with it answers
//! from what it holds and never fetches in turn, so two nodes missing a file cannot ask each
//! other in a loop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use crate::data_dir::DataDir;
use crate::download::{DownloadError, Downloader, Limits};
use crate::p2p::P2p;
use crate::tx::Hash;

pub use crate::download::PEER_FETCH_HEADER;

/// Fetches files from their producers and from peers.
#[derive(Debug)]
pub struct PeerFiles {
    downloader: Downloader,
    data: DataDir,
    p2p: Option<P2p>,
    /// This node's download base, never asked.
    own_base: String,
    fetched: AtomicU64,
    failed: AtomicU64,
}

/// One attempt per source (the next source is the retry), a deadline per source, a few at once.
fn limits() -> Limits {
    Limits {
        attempts: 1,
        deadline: Duration::from_secs(600),
        concurrency: 4,
        ..Limits::default()
    }
}

impl PeerFiles {
    pub fn new(data: &DataDir, p2p: Option<P2p>, own_base: &str) -> Result<Self, DownloadError> {
        Ok(Self {
            downloader: Downloader::for_peers(data, limits())?,
            data: data.clone(),
            p2p,
            own_base: own_base.trim_end_matches('/').to_string(),
            fetched: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// Files fetched since start, and fetches no source could serve.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.fetched.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// `first` (http and https URLs only, this node's own left out), then the file at
    /// `relative` on every peer's download server.
    pub fn sources(&self, relative: &str, first: &[String]) -> Vec<String> {
        let mine = format!("{}/", self.own_base);
        let mut sources: Vec<String> = first
            .iter()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .filter(|u| !u.starts_with(&mine))
            .cloned()
            .collect();
        let peers = self.p2p.as_ref().map(P2p::executors).unwrap_or_default();
        for peer in peers.iter().filter(|p| !p.local) {
            let base = peer.capacity.download_url.trim_end_matches('/');
            let url = format!("{base}/{relative}");
            if base != self.own_base && !sources.contains(&url) {
                sources.push(url);
            }
        }
        sources
    }

    /// The content with `checksum` from the first of `sources` that has it, placed at
    /// `relative` (a path the download server serves). Returns the stored content's path, or why
    /// no source had it.
    pub async fn fetch(
        &self,
        relative: &str,
        checksum: &Hash,
        sources: &[String],
    ) -> Result<PathBuf, String> {
        let Some(target) = self.data.served(relative) else {
            return Err(format!("{relative} is not a path this node serves"));
        };
        let mut tried = Vec::new();
        for url in sources {
            match self.downloader.fetch(url, &checksum.to_hex()).await {
                Ok(content) => {
                    self.downloader
                        .place(&content, &target)
                        .map_err(|e| format!("cannot place {relative}: {e}"))?;
                    self.fetched.fetch_add(1, Ordering::Relaxed);
                    info!(target: "gevulot", file = %relative, from = %url, "fetched a file this node did not hold");
                    return Ok(content);
                }
                Err(e) => tried.push(describe(url, &e)),
            }
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        let why = if tried.is_empty() {
            "no producer URL and no peer to ask".to_string()
        } else {
            tried.join("; ")
        };
        warn!(target: "gevulot", file = %relative, reason = %why, "cannot fetch a file the network knows");
        Err(why)
    }
}

/// One source's failure in a line: the errors that name their URL say it once.
fn describe(url: &str, e: &DownloadError) -> String {
    match e {
        DownloadError::ChecksumMismatch { .. } => format!("{url} sent other content"),
        DownloadError::BadChecksum(_) | DownloadError::Io(_) => format!("{url}: {e}"),
        named => named.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_named_once_in_its_failure() {
        let url = "http://peer:9995/images/x/prover.img";
        let refused = DownloadError::Refused {
            url: url.into(),
            status: 404,
        };
        assert_eq!(
            describe(url, &refused),
            format!("{url}: the server answered 404")
        );
        let io = DownloadError::Io("disk gone".into());
        assert_eq!(
            describe(url, &io),
            format!("{url}: cannot write the download: disk gone")
        );
        let other = DownloadError::ChecksumMismatch {
            url: url.into(),
            expected: "a".into(),
            actual: "b".into(),
        };
        assert_eq!(describe(url, &other), format!("{url} sent other content"));
    }
}
