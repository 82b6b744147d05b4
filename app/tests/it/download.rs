//! Downloads against a local HTTP server that misbehaves on purpose: a transfer broken off
//! midway (resumed with Range), a server error (retried), a wrong checksum and a 404 (final),
//! a size limit, and one download for many requests of the same content.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use app::data_dir::DataDir;
use app::download::{DownloadError, Downloader, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `content` at every path; `/flaky` breaks off the first transfer halfway, `/busy`
/// answers 500 to the first request, `/missing` answers 404. Counts requests.
async fn server(content: Arc<Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let content = content.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let len = stream.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..len]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let from: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("range: bytes=")
                            .map(str::to_string)
                    })
                    .and_then(|r| r.trim_end_matches('-').trim().parse().ok())
                    .unwrap_or(0);
                let reply = |status: &str, body: &[u8], extra: &str| {
                    format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n", body.len())
                        .into_bytes()
                        .into_iter()
                        .chain(body.iter().copied())
                        .collect::<Vec<u8>>()
                };
                let out = match path.as_str() {
                    "/missing" => reply("404 Not Found", b"", ""),
                    "/busy" if n == 0 => reply("500 Internal Server Error", b"", ""),
                    _ if from > 0 => reply(
                        "206 Partial Content",
                        &content[from..],
                        &format!(
                            "Content-Range: bytes {from}-{}/{}\r\n",
                            content.len() - 1,
                            content.len()
                        ),
                    ),
                    "/flaky" if n == 0 => {
                        // Promise the whole file, send half, hang up.
                        let mut head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                            content.len()
                        )
                        .into_bytes();
                        head.extend_from_slice(&content[..content.len() / 2]);
                        head
                    }
                    _ => reply("200 OK", &content, ""),
                };
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, requests)
}

fn quick() -> Limits {
    Limits {
        max_bytes: 1 << 20,
        deadline: Duration::from_secs(30),
        attempts: 4,
        backoff: Duration::from_millis(20),
        concurrency: 2,
    }
}

#[tokio::test]
async fn resumes_retries_and_refuses() {
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let sum = blake3::hash(&content).to_hex().to_string();
    let (base, requests) = server(Arc::new(content.clone())).await;
    let dir = testkit::tempdir();
    let d = Downloader::new(&DataDir::new(dir.path()), quick()).expect("downloader");

    // Broken off halfway, resumed with Range: the result is whole and checked.
    let path = d
        .fetch(&format!("{base}/flaky"), &sum)
        .await
        .expect("resumed");
    assert_eq!(std::fs::read(&path).expect("read"), content);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "one broken transfer, one resumed"
    );
    // Stored once per checksum: asking again (by any URL) downloads nothing.
    let again = d
        .fetch(&format!("{base}/missing"), &sum)
        .await
        .expect("already stored");
    assert_eq!(again, path);
    assert_eq!(requests.load(Ordering::SeqCst), 2);

    // Served where the file server looks, appearing only complete.
    let served = dir.path().join("images/ab/prover.img");
    d.place(&path, &served).expect("placed");
    assert_eq!(std::fs::read(&served).expect("read"), content);

    let dir2 = testkit::tempdir();
    let d2 = Downloader::new(&DataDir::new(dir2.path()), quick()).expect("downloader");
    // A server error is retried.
    d2.fetch(&format!("{base}/busy"), &sum)
        .await
        .expect("retried");
    // A 404 is final, and a wrong checksum keeps nothing.
    let other = blake3::hash(b"other").to_hex().to_string();
    assert!(matches!(
        d2.fetch(&format!("{base}/missing"), &other).await,
        Err(DownloadError::Refused { status: 404, .. })
    ));
    let mismatch = d2
        .fetch(&format!("{base}/ok"), &other)
        .await
        .expect_err("mismatch");
    assert!(
        matches!(mismatch, DownloadError::ChecksumMismatch { .. }),
        "{mismatch}"
    );
    assert!(!mismatch.retryable());
    let leftovers: Vec<_> = std::fs::read_dir(dir2.path().join("tmp"))
        .expect("tmp")
        .collect();
    assert!(leftovers.is_empty(), "nothing half-written is kept");
    assert!(
        !d2.content_path(&app::tx::Hash::from_hex(&other).expect("hex"))
            .exists()
    );

    // Over the size limit.
    let small_dir = testkit::tempdir();
    let small = Downloader::new(
        &DataDir::new(small_dir.path()),
        Limits {
            max_bytes: 1000,
            ..quick()
        },
    )
    .expect("downloader");
    assert!(matches!(
        small.fetch(&format!("{base}/ok"), &sum).await,
        Err(DownloadError::TooLarge { .. })
    ));
    assert!(matches!(
        d2.fetch("http://127.0.0.1:1/x", "zz").await,
        Err(DownloadError::BadChecksum(_))
    ));
}

#[tokio::test]
async fn the_same_content_is_downloaded_once() {
    let content = vec![7u8; 50_000];
    let sum = blake3::hash(&content).to_hex().to_string();
    let (base, requests) = server(Arc::new(content)).await;
    let dir = testkit::tempdir();
    let d = Downloader::new(&DataDir::new(dir.path()), quick()).expect("downloader");
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (d, url, sum) = (d.clone(), format!("{base}/file{i}"), sum.clone());
        tasks.push(tokio::spawn(async move { d.fetch(&url, &sum).await }));
    }
    for t in tasks {
        t.await.expect("task").expect("fetched");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}
