//! Files over the node's HTTP: `--upload` sends local files through the REST upload (an
//! operator's token) instead of serving them; `download` fetches every output file of a Run's
//! tree with resume, a BLAKE3 check and progress.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::node::{Connection, Unreachable};

fn http() -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("gevulot-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

fn unreachable(url: &str, e: reqwest::Error) -> anyhow::Error {
    anyhow::Error::new(Unreachable(format!("cannot reach {url}: {e}")))
}

/// What the node answered an upload.
#[derive(Debug, serde::Deserialize)]
struct Uploaded {
    checksum: String,
    url: String,
}

/// Uploads `path` to the node; returns (checksum, the URL the node serves it at).
pub async fn upload(c: &Connection, path: &Path) -> anyhow::Result<(String, String)> {
    let Some(token) = &c.token else {
        bail!("--upload needs an operator's API token: --token or GEVULOT_CLI_TOKEN");
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the path names no file")?;
    let local = crate::blake3_file(path)?;
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().await?.len();
    let url = url::Url::parse_with_params(
        &format!("{}/api/v1/uploads", c.base()),
        [("name", name.as_str())],
    )
    .with_context(|| format!("{} is not a URL", c.base()))?
    .to_string();
    eprintln!(
        "uploading {name} ({:.1} MiB)",
        size as f64 / f64::from(1u32 << 20)
    );
    let body = reqwest::Body::from(file);
    let response = http()?
        .post(&url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(body)
        .send()
        .await
        .map_err(|e| unreachable(&url, e))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "the node refused the upload of {name} ({status}): {}",
            problem(&text)
        );
    }
    let up: Uploaded = serde_json::from_str(&text)
        .with_context(|| format!("the node's answer to the upload is not understood: {text}"))?;
    if !up.checksum.eq_ignore_ascii_case(&local) {
        bail!(
            "the node stored {name} with BLAKE3 {} but the file here has {local}; upload again",
            up.checksum
        );
    }
    Ok((local, up.url))
}

/// The `detail` of a problem document, or the text itself.
fn problem(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            let detail = v["detail"].as_str()?;
            Some(match v["code"].as_str() {
                Some(code) => format!("{detail} ({code})"),
                None => detail.to_string(),
            })
        })
        .unwrap_or_else(|| text.chars().take(300).collect())
}

/// One output file written by `download`.
#[derive(Debug, Clone, Serialize)]
pub struct Downloaded {
    /// The Proof or Verification that holds it.
    pub transaction: String,
    pub path: PathBuf,
    pub checksum: String,
    pub bytes: u64,
    /// Whether it was already here, whole and checked.
    pub already_here: bool,
}

/// Where an output file goes: `<dir>/<transaction>/<its VM path, less /workspace/>`; only
/// plain path segments are kept.
fn destination(dir: &Path, tx: &str, vm_path: &str) -> anyhow::Result<PathBuf> {
    let relative = vm_path.strip_prefix("/workspace/").unwrap_or(vm_path);
    let mut out = dir.join(tx);
    let mut named = false;
    for part in Path::new(relative).components() {
        match part {
            Component::Normal(p) => {
                out.push(p);
                named = true;
            }
            Component::RootDir | Component::CurDir => {}
            _ => bail!("the output file {vm_path:?} has a path this client does not write"),
        }
    }
    if !named {
        bail!("the output file {vm_path:?} names no file");
    }
    Ok(out)
}

/// The output files (url, checksum, vm path) of a Proof or Verification in getTransaction's
/// form.
pub fn output_files(tx: &Value) -> Vec<(String, String, String)> {
    let payload = &tx["payload"];
    let files = payload["Proof"]["files"]
        .as_array()
        .or_else(|| payload["Verification"]["files"].as_array());
    files
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f["url"].as_str()?.to_string(),
                f["checksum"].as_str()?.to_ascii_lowercase(),
                f["vm_path"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Downloads `url` to `to` (resuming a `.part`), checks its BLAKE3.
pub async fn fetch(url: &str, to: &Path, checksum: &str) -> anyhow::Result<(u64, bool)> {
    if to.is_file() && crate::blake3_file(to)?.eq_ignore_ascii_case(checksum) {
        return Ok((std::fs::metadata(to)?.len(), true));
    }
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let part = to.with_extension(match to.extension() {
        Some(e) => format!("{}.part", e.to_string_lossy()),
        None => "part".into(),
    });
    let have = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let mut request = http()?.get(url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let response = request.send().await.map_err(|e| unreachable(url, e))?;
    let status = response.status();
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT;
    if !status.is_success() {
        bail!("{url} answered {status}; the file may have been collected on the node (retention)");
    }
    let total = response
        .content_length()
        .map(|n| if resumed { n + have } else { n });
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .await
        .with_context(|| format!("cannot write {}", part.display()))?;
    let mut got = if resumed { have } else { 0 };
    let mut body = response.bytes_stream();
    let name = to
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut last = Instant::now();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| {
            format!("the download of {url} broke off; run download again to resume")
        })?;
        file.write_all(&chunk).await?;
        got += chunk.len() as u64;
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            progress(&name, got, total);
        }
    }
    file.flush().await?;
    drop(file);
    progress(&name, got, total);
    let actual = crate::blake3_file(&part)?;
    if !actual.eq_ignore_ascii_case(checksum) {
        let _ = tokio::fs::remove_file(&part).await;
        bail!("{url} gave content with BLAKE3 {actual}, not {checksum}; nothing was kept");
    }
    tokio::fs::rename(&part, to).await?;
    Ok((got, false))
}

fn progress(name: &str, got: u64, total: Option<u64>) {
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    match total {
        Some(t) => {
            let percent = (got * 100).checked_div(t).unwrap_or(100);
            let bar: String = (0..20)
                .map(|i| if i * 5 < percent { '#' } else { '.' })
                .collect();
            eprintln!(
                "{name} [{bar}] {:.1}/{:.1} MiB {percent}%",
                mib(got),
                mib(t)
            );
        }
        None => eprintln!("{name} {:.1} MiB", mib(got)),
    }
}

/// `download`: every output file of the tree of `hash` into `dir`.
pub async fn download(
    c: &Connection,
    hash: &app::tx::Hash,
    dir: &Path,
) -> anyhow::Result<Vec<Downloaded>> {
    let tree = crate::original::get_tree(c, hash).await?;
    let mut hashes = Vec::new();
    collect(&tree, &mut hashes);
    let mut done = Vec::new();
    for h in hashes {
        let tx = crate::original::get_transaction(c, &h).await?;
        for (url, checksum, vm_path) in output_files(&tx) {
            let to = destination(dir, &h.to_hex(), &vm_path)?;
            let (bytes, already_here) = fetch(&url, &to, &checksum).await?;
            done.push(Downloaded {
                transaction: h.to_hex(),
                path: to,
                checksum,
                bytes,
                already_here,
            });
        }
    }
    Ok(done)
}

fn collect(tree: &app::tx::rpc::TransactionTree, out: &mut Vec<app::tx::Hash>) {
    use app::tx::rpc::TransactionTree;
    match tree {
        TransactionTree::Root { children, hash } | TransactionTree::Node { children, hash } => {
            out.push(*hash);
            children.iter().for_each(|c| collect(c, out));
        }
        TransactionTree::Leaf { hash } => out.push(*hash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_files_land_under_their_transaction() {
        let dir = Path::new("/out");
        assert_eq!(
            destination(dir, "ab", "/workspace/proof.dat").expect("plain"),
            Path::new("/out/ab/proof.dat")
        );
        assert_eq!(
            destination(dir, "ab", "/workspace/sub/x.bin").expect("nested"),
            Path::new("/out/ab/sub/x.bin")
        );
        assert_eq!(
            destination(dir, "ab", "/other/y").expect("elsewhere"),
            Path::new("/out/ab/other/y")
        );
        for bad in ["/workspace/../../etc/passwd", "/workspace/", "/"] {
            assert!(destination(dir, "ab", bad).is_err(), "{bad}");
        }
    }
}
