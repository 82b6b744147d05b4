//! The temporary file server of `deploy` and `exec`, as the original client had: each local file
//! is served at `http://<listen address>/<SHA3-256 of its path, hex>` while the node downloads
//! it. It stops once every file was sent whole at least once, or when no download started for
//! [`IDLE`] (the node fetches files when a transaction arrives, so this is seconds).
//!
//! Plain HTTP/1.1, one request per connection, `GET` and `HEAD`, `Range: bytes=N-` for a resumed
//! download; at most [`MAX_CONNECTIONS`] at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How long the server waits for a download to start before it gives up.
pub const IDLE: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 16;
const MAX_HEAD: usize = 16 << 10;
/// How often transfers under way are reported on standard error.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// A 20-character progress bar of `done` out of `total`, and the percentage.
pub fn bar(done: u64, total: u64) -> (String, u64) {
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let bar = (0..20)
        .map(|i| if i * 5 < percent { '#' } else { '.' })
        .collect();
    (bar, percent)
}

/// One line on standard error per file whose transfer moved since the last report.
fn report(state: &Mutex<State>) {
    let mut st = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for f in st.files.values_mut() {
        if f.sent == f.reported {
            continue;
        }
        f.reported = f.sent;
        let name = f.path.file_name().unwrap_or_default().to_string_lossy();
        let (bar, percent) = bar(f.sent, f.len);
        eprintln!(
            "{name} [{bar}] {:.1}/{:.1} MiB {percent}%{}",
            mib(f.sent),
            mib(f.len),
            if f.delivered { " delivered" } else { "" }
        );
    }
}

#[derive(Debug)]
struct Served {
    path: PathBuf,
    len: u64,
    /// Whether it was sent whole at least once.
    delivered: bool,
    /// Bytes sent by the transfer under way (or the last one), and what was last reported.
    sent: u64,
    reported: u64,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<String, Served>,
    /// When the last download started (or serving began).
    last_start: Option<Instant>,
}

/// Local files being served. The address is bound when the first file is added (a command
/// with no local file binds nothing).
#[derive(Debug)]
pub struct FileServer {
    listen: SocketAddr,
    bound: Option<(std::net::TcpListener, String)>,
    state: Arc<Mutex<State>>,
}

impl FileServer {
    /// A server for `listen` (port 0: any free port).
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            bound: None,
            state: Arc::default(),
        }
    }

    /// Adds `path`; returns the URL the node downloads it from.
    pub fn add(&mut self, path: &Path) -> anyhow::Result<String> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        if self.bound.is_none() {
            let listen = self.listen;
            let listener = std::net::TcpListener::bind(listen).with_context(|| {
                format!("cannot serve local files on {listen}; choose another address with -l")
            })?;
            listener.set_nonblocking(true)?;
            let base = format!("http://{}", listener.local_addr()?);
            self.bound = Some((listener, base));
        }
        let base = self
            .bound
            .as_ref()
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        let token = app::hash::Hash::sha3(path.to_string_lossy().as_bytes()).to_hex();
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.files.insert(
            token.clone(),
            Served {
                path: path.to_path_buf(),
                len,
                delivered: false,
                sent: 0,
                reported: 0,
            },
        );
        Ok(format!("{base}/{token}"))
    }

    /// Serves until every file was delivered whole, or no download started for [`IDLE`];
    /// returns the paths never delivered.
    pub async fn serve(self) -> Vec<PathBuf> {
        let Some((listener, _)) = self.bound else {
            return Vec::new();
        };
        let Ok(listener) = TcpListener::from_std(listener) else {
            return Vec::new();
        };
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last_start = Some(Instant::now());
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut last_report = Instant::now();
        loop {
            if last_report.elapsed() >= PROGRESS_EVERY {
                report(&self.state);
                last_report = Instant::now();
            }
            let (done, idle_for) = {
                let st = self
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let done = st.files.values().all(|f| f.delivered);
                let idle = st.last_start.map_or(Duration::ZERO, |t| t.elapsed());
                (done, idle)
            };
            if done || idle_for >= IDLE {
                break;
            }
            let wait = (IDLE - idle_for).min(Duration::from_millis(200));
            let accepted = tokio::time::timeout(wait, listener.accept()).await;
            let Ok(Ok((stream, _))) = accepted else {
                continue;
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                continue; // over the limit: the connection is dropped, the node retries
            };
            let state = self.state.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _ = answer(stream, &state).await;
            });
        }
        // Let transfers under way finish (bounded by the idle period).
        let _ = tokio::time::timeout(IDLE, permits.acquire_many(MAX_CONNECTIONS as u32)).await;
        report(&self.state);
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.files
            .values()
            .filter(|f| !f.delivered)
            .map(|f| f.path.clone())
            .collect()
    }
}

async fn answer(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(IDLE, stream.read(&mut buf))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let from: u64 = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim().eq_ignore_ascii_case("range").then(|| {
                value
                    .trim()
                    .strip_prefix("bytes=")?
                    .strip_suffix('-')?
                    .parse()
                    .ok()
            })?
        })
        .unwrap_or(0);
    let token = target
        .trim_start_matches('/')
        .split('?')
        .next()
        .unwrap_or("");
    let found = {
        let mut st = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = st.files.get(token).map(|f| (f.path.clone(), f.len));
        if found.is_some() && method == "GET" {
            st.last_start = Some(Instant::now());
        }
        found
    };
    let Some((path, len)) = found.filter(|_| matches!(method, "GET" | "HEAD")) else {
        let reply = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return stream.write_all(reply.as_bytes()).await;
    };
    let from = from.min(len);
    let status = if from > 0 {
        format!(
            "206 Partial Content\r\nContent-Range: bytes {from}-{}/{len}",
            len.saturating_sub(1)
        )
    } else {
        "200 OK".to_string()
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        len - from
    );
    stream.write_all(reply.as_bytes()).await?;
    if method == "HEAD" {
        return Ok(());
    }
    let mut file = tokio::fs::File::open(&path).await?;
    file.seek(std::io::SeekFrom::Start(from)).await?;
    let mut rest = file.take(len - from);
    let sent = tokio::io::copy(&mut rest, &mut stream).await?;
    stream.shutdown().await?;
    if from + sent == len {
        let mut st = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = st.files.get_mut(token) {
            f.delivered = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ask(addr: &str, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("send");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn serves_whole_ranged_and_refuses_the_rest_until_delivered() {
        let dir = testkit::tempdir();
        let file = dir.path().join("image.img");
        std::fs::write(&file, b"0123456789").expect("write");
        let mut server = FileServer::new("127.0.0.1:0".parse().expect("addr"));
        let url = server.add(&file).expect("add");
        let (addr, path) = url
            .strip_prefix("http://")
            .and_then(|u| u.split_once('/'))
            .map(|(a, p)| (a.to_string(), format!("/{p}")))
            .expect("url");
        let serving = tokio::spawn(server.serve());

        let head = ask(&addr, format!("HEAD {path} HTTP/1.1\r\n\r\n").as_bytes()).await;
        assert!(
            head.starts_with("HTTP/1.1 200") && head.contains("Content-Length: 10"),
            "{head}"
        );
        let missing = ask(&addr, b"GET /elsewhere HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let garbage = ask(&addr, b"\x00\xff garbage\r\n\r\n").await;
        assert!(garbage.starts_with("HTTP/1.1 404"), "{garbage}");
        let part = ask(
            &addr,
            format!("GET {path} HTTP/1.1\r\nrange: bytes=4-\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            part.starts_with("HTTP/1.1 206") && part.ends_with("456789"),
            "{part}"
        );
        assert!(part.contains("Content-Range: bytes 4-9/10"), "{part}");
        // The resumed transfer reached the end: the file is delivered and serving stops.
        let missed = tokio::time::timeout(IDLE * 2, serving)
            .await
            .expect("serving stops once delivered")
            .expect("task");
        assert!(missed.is_empty(), "{missed:?}");
    }
}
