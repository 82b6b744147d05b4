//! Downloads of program images and input files: HTTP(S), the BLAKE3 checked while streaming,
//! written under a temporary name and renamed into the content store only when the checksum
//! matches. Content is stored once per checksum (`<data>/content/<blake3>`), however many
//! transactions name it; [`Downloader::place`] links it where the file server serves it.
//!
//! Failures are classified: network errors and server errors (5xx) are retried with exponential
//! backoff, resuming with `Range` from what was already received; a checksum mismatch, a client
//! error (4xx) or a file over the size limit is final. Every download has an overall deadline, and
//! at most `concurrency` run at once. Progress is visible while a download runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use crate::tx::Hash;

/// Set by a node fetching a file from a peer's download server: the peer answers from what it
/// holds and does not fetch the file in turn (two nodes missing a file never ask each other in a
/// loop).
pub const PEER_FETCH_HEADER: &str = "x-gevulot-peer-fetch";

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_bytes: u64,
    /// For the whole download, retries included.
    pub deadline: Duration,
    pub attempts: u32,
    /// The first retry waits this long; each next one twice as long.
    pub backoff: Duration,
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 32 << 30,
            deadline: Duration::from_secs(3600),
            attempts: 5,
            backoff: Duration::from_millis(500),
            concurrency: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "{url}: the content's BLAKE3 is {actual}, not the expected {expected}; nothing was kept"
    )]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: larger than the limit of {max} bytes")]
    TooLarge { url: String, max: u64 },
    #[error("{url}: the server answered {status}")]
    Refused { url: String, status: u16 },
    #[error("{url}: failed after {attempts} attempts: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("{url}: not finished within {0:?}", .deadline)]
    Deadline { url: String, deadline: Duration },
    #[error("{0} is not a checksum (64 hexadecimal characters)")]
    BadChecksum(String),
    #[error("cannot write the download: {0}")]
    Io(String),
    /// The data directory's filesystem filled while writing; what was written is removed.
    #[error(
        "{url}: the data directory's filesystem is full (no space left on device); the partial file was removed"
    )]
    NoSpace {
        url: String,
        /// The file's whole size, when the server said.
        size: Option<u64>,
    },
}

/// Whether an I/O error means the filesystem is full (`ENOSPC`, or a quota: `EDQUOT`).
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || e.raw_os_error() == Some(28)
}

impl DownloadError {
    /// Whether a later attempt could succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::GaveUp { .. } | Self::Deadline { .. } | Self::Io(_) | Self::NoSpace { .. }
        )
    }
}

/// How far a running download is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub received: u64,
    /// From `Content-Length`, when the server says.
    pub total: Option<u64>,
    pub attempt: u32,
}

#[derive(Clone, Debug)]
pub struct Downloader {
    client: reqwest::Client,
    content: PathBuf,
    tmp: PathBuf,
    limits: Limits,
    permits: Arc<tokio::sync::Semaphore>,
    /// One lock per checksum, so two requests for the same content download it once.
    locks: Arc<Mutex<HashMap<Hash, Arc<tokio::sync::Mutex<()>>>>>,
    progress: Arc<Mutex<HashMap<Hash, Progress>>>,
    /// Why the last fetch of a content failed (cleared when one succeeds), bounded.
    failures: Arc<Mutex<HashMap<Hash, String>>>,
}

/// Failures remembered at most (the oldest are forgotten first when full: all at once).
const MAX_FAILURES: usize = 4096;

/// Where a content stands on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchState {
    /// Not here, and no fetch is under way or has failed.
    Absent,
    /// Being fetched (or waiting for a download slot: attempt 0).
    Fetching(Progress),
    /// Stored and checked.
    Ready,
    /// The last fetch failed, for this reason.
    Failed(String),
    /// Not here and not fetched on purpose: the program whose image it is can never run on this
    /// node (the reason says what it asks for); a task that needs it would fetch it.
    NotNeeded(String),
}

impl FetchState {
    pub fn as_str(&self) -> &'static str {
        match self {
            FetchState::Absent => "absent",
            FetchState::Fetching(_) => "fetching",
            FetchState::Ready => "ready",
            FetchState::Failed(_) => "failed",
            FetchState::NotNeeded(_) => "not_needed",
        }
    }
}

enum Attempt {
    Done,
    Retry(String),
}

/// The node's HTTP client settings: HTTPS through rustls with the ring provider and the system's
/// root certificates, a 10 s connect timeout, and the node's user agent.
pub(crate) fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("gevulot/", env!("CARGO_PKG_VERSION")))
}

impl Downloader {
    /// A downloader storing content under `content/` (temporary files in `tmp/`).
    pub fn new(data_dir: &crate::data_dir::DataDir, limits: Limits) -> Result<Self, DownloadError> {
        Self::with_client(data_dir, limits, http_client())
    }

    /// A downloader for files fetched from peers' download servers: each request says so
    /// ([`PEER_FETCH_HEADER`]), and the peer answers from what it holds.
    pub fn for_peers(
        data_dir: &crate::data_dir::DataDir,
        limits: Limits,
    ) -> Result<Self, DownloadError> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            PEER_FETCH_HEADER,
            reqwest::header::HeaderValue::from_static("1"),
        );
        Self::with_client(data_dir, limits, http_client().default_headers(headers))
    }

    fn with_client(
        data_dir: &crate::data_dir::DataDir,
        limits: Limits,
        client: reqwest::ClientBuilder,
    ) -> Result<Self, DownloadError> {
        let client = client
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| DownloadError::Io(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            content: data_dir.content(),
            tmp: data_dir.tmp(),
            permits: Arc::new(tokio::sync::Semaphore::new(limits.concurrency.max(1))),
            limits,
            locks: Arc::default(),
            progress: Arc::default(),
            failures: Arc::default(),
        })
    }

    /// Where content with this checksum is (or will be) stored.
    pub fn content_path(&self, checksum: &Hash) -> PathBuf {
        self.content.join(checksum.to_hex())
    }

    /// Downloads in progress.
    pub fn progress(&self) -> HashMap<Hash, Progress> {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Where the content with `checksum` stands here.
    pub fn state(&self, checksum: &Hash) -> FetchState {
        if let Some(p) = self
            .progress
            .lock()
            .ok()
            .and_then(|p| p.get(checksum).cloned())
        {
            return FetchState::Fetching(p);
        }
        if self.content_path(checksum).is_file() {
            return FetchState::Ready;
        }
        match self
            .failures
            .lock()
            .ok()
            .and_then(|f| f.get(checksum).cloned())
        {
            Some(reason) => FetchState::Failed(reason),
            None => FetchState::Absent,
        }
    }

    /// The content with `checksum` (hex BLAKE3), downloaded from `url` unless already stored.
    pub async fn fetch(&self, url: &str, checksum: &str) -> Result<PathBuf, DownloadError> {
        let expected = Hash::from_hex(checksum)
            .ok_or_else(|| DownloadError::BadChecksum(checksum.to_string()))?;
        let result = self.fetch_checked(url, &expected).await;
        // The content's lock goes once nobody holds or waits for it (the map's is the last).
        if let Ok(mut locks) = self.locks.lock()
            && locks
                .get(&expected)
                .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&expected);
        }
        if let Ok(mut failures) = self.failures.lock() {
            match &result {
                Ok(_) => {
                    failures.remove(&expected);
                }
                Err(e) => {
                    if failures.len() >= MAX_FAILURES {
                        failures.clear();
                    }
                    failures.insert(expected, e.to_string());
                }
            }
        }
        result
    }

    async fn fetch_checked(&self, url: &str, expected: &Hash) -> Result<PathBuf, DownloadError> {
        let expected = *expected;
        let target = self.content_path(&expected);
        if !target.is_file()
            && let Ok(mut p) = self.progress.lock()
        {
            // Shown as fetching while it waits for the same content's fetch or a slot.
            p.entry(expected).or_default();
        }
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .map_err(|_| DownloadError::Io("lock".into()))?;
            locks.entry(expected).or_default().clone()
        };
        let _same_content = lock.lock().await;
        if target.is_file() {
            if let Ok(mut p) = self.progress.lock() {
                p.remove(&expected);
            }
            return Ok(target);
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| DownloadError::Io("closed".into()))?;
        let result =
            tokio::time::timeout(self.limits.deadline, self.download(url, &expected, &target))
                .await;
        if let Ok(mut p) = self.progress.lock() {
            p.remove(&expected);
        }
        match result {
            Ok(r) => r.map(|()| target),
            Err(_) => Err(DownloadError::Deadline {
                url: url.to_string(),
                deadline: self.limits.deadline,
            }),
        }
    }

    async fn download(
        &self,
        url: &str,
        expected: &Hash,
        target: &Path,
    ) -> Result<(), DownloadError> {
        let io = |e: std::io::Error| DownloadError::Io(e.to_string());
        tokio::fs::create_dir_all(&self.tmp).await.map_err(io)?;
        tokio::fs::create_dir_all(&self.content).await.map_err(io)?;
        // Temporary names start with a dot: the file server never serves them.
        let partial = self.tmp.join(format!(".{}.partial", expected.to_hex()));
        let mut last = String::new();
        for attempt in 1..=self.limits.attempts {
            if attempt > 1 {
                let wait = self.limits.backoff * 2u32.saturating_pow(attempt - 2);
                tokio::time::sleep(wait).await;
            }
            match self.attempt(url, expected, &partial, attempt).await? {
                Attempt::Done => {
                    tokio::fs::rename(&partial, target).await.map_err(io)?;
                    return Ok(());
                }
                Attempt::Retry(why) => last = why,
            }
        }
        Err(DownloadError::GaveUp {
            url: url.to_string(),
            attempts: self.limits.attempts,
            last,
        })
    }

    /// One request, resuming from what `partial` holds.
    async fn attempt(
        &self,
        url: &str,
        expected: &Hash,
        partial: &Path,
        attempt: u32,
    ) -> Result<Attempt, DownloadError> {
        let io = |e: std::io::Error| DownloadError::Io(e.to_string());
        // Re-hash what earlier attempts received, so the checksum covers the whole file.
        let mut hasher = blake3::Hasher::new();
        let mut have: u64 = 0;
        if let Ok(file) = std::fs::File::open(partial) {
            have = hasher.update_reader(file).map_err(io)?.count();
        }
        let mut request = self.client.get(url);
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Retry(e.to_string())),
        };
        let status = response.status();
        let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT && have > 0;
        if status.is_server_error() {
            return Ok(Attempt::Retry(format!("the server answered {status}")));
        }
        if !status.is_success() {
            let _ = tokio::fs::remove_file(partial).await;
            return Err(DownloadError::Refused {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        if !resumed {
            // The server sent the whole file: start over.
            hasher = blake3::Hasher::new();
            have = 0;
        }
        let total = response.content_length().map(|n| n + have);
        if total.is_some_and(|t| t > self.limits.max_bytes) {
            let _ = tokio::fs::remove_file(partial).await;
            return Err(DownloadError::TooLarge {
                url: url.to_string(),
                max: self.limits.max_bytes,
            });
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(partial)
            .await
            .map_err(io)?;
        let mut received = have;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    file.flush().await.map_err(io)?;
                    return Ok(Attempt::Retry(format!("the transfer broke off: {e}")));
                }
            };
            received += chunk.len() as u64;
            if received > self.limits.max_bytes {
                drop(file);
                let _ = tokio::fs::remove_file(partial).await;
                return Err(DownloadError::TooLarge {
                    url: url.to_string(),
                    max: self.limits.max_bytes,
                });
            }
            hasher.update(&chunk);
            if let Err(e) = file.write_all(&chunk).await {
                return Err(self.write_failed(url, partial, total, e, file).await);
            }
            if let Ok(mut p) = self.progress.lock() {
                p.insert(
                    *expected,
                    Progress {
                        received,
                        total,
                        attempt,
                    },
                );
            }
        }
        if let Err(e) = file.sync_all().await {
            return Err(self.write_failed(url, partial, total, e, file).await);
        }
        let actual = Hash(*hasher.finalize().as_bytes());
        if actual != *expected {
            drop(file);
            let _ = tokio::fs::remove_file(partial).await;
            return Err(DownloadError::ChecksumMismatch {
                url: url.to_string(),
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(Attempt::Done)
    }

    /// A write that failed: on a full filesystem the partial file goes (it holds the space others
    /// need; the next attempt starts over) and the error says so; otherwise the partial file is
    /// kept for the next attempt to resume.
    async fn write_failed(
        &self,
        url: &str,
        partial: &Path,
        total: Option<u64>,
        e: std::io::Error,
        file: tokio::fs::File,
    ) -> DownloadError {
        if !is_no_space(&e) {
            return DownloadError::Io(e.to_string());
        }
        drop(file);
        let _ = tokio::fs::remove_file(partial).await;
        DownloadError::NoSpace {
            url: url.to_string(),
            size: total,
        }
    }

    /// Makes stored content visible at `target` (a path the file server serves): a hard link,
    /// or a copy where links are impossible, appearing under its final name only when complete.
    pub fn place(&self, content: &Path, target: &Path) -> Result<(), DownloadError> {
        let io = |e: std::io::Error| DownloadError::Io(e.to_string());
        if target.is_file() {
            return Ok(());
        }
        let dir = target
            .parent()
            .ok_or_else(|| DownloadError::Io("the target has no directory".into()))?;
        std::fs::create_dir_all(dir).map_err(io)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = dir.join(format!(".{name}.placing"));
        let _ = std::fs::remove_file(&staging);
        if std::fs::hard_link(content, &staging).is_err() {
            std::fs::copy(content, &staging).map_err(io)?;
        }
        std::fs::rename(&staging, target).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fetch_leaves_no_lock_and_remembers_its_failure() {
        let dir = tempfile::tempdir().expect("dir");
        let data = crate::data_dir::DataDir::new(dir.path());
        let limits = Limits {
            attempts: 1,
            ..Limits::default()
        };
        let dl = Downloader::new(&data, limits).expect("downloader");
        let sum = Hash([5; 32]);
        assert_eq!(dl.state(&sum), FetchState::Absent);
        // Nothing listens on port 9 of the loopback: refused at once.
        let failed = dl.fetch("http://127.0.0.1:9/file", &sum.to_hex()).await;
        assert!(failed.is_err());
        assert!(dl.locks.lock().expect("locks").is_empty(), "no lock kept");
        assert!(matches!(dl.state(&sum), FetchState::Failed(why) if why.contains("127.0.0.1:9")));
        // Stored content is ready, whatever failed before.
        std::fs::create_dir_all(dl.content_path(&sum).parent().expect("dir")).expect("mkdir");
        std::fs::write(dl.content_path(&sum), b"x").expect("write");
        let _ = dl.failures.lock().map(|mut f| f.clear());
        assert_eq!(dl.state(&sum), FetchState::Ready);
    }
}
