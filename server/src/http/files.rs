//! The file download server (`GEVULOT_HTTP_PORT`, bound on the P2P address's IP).
//!
//! It serves exactly the layout of `wire-format.md`, read-only, and nothing else:
//!
//! - `/images/<program hash hex>/<image file name>` from `<data>/images/`
//! - `/txfiles/<tx hex>/<path…>` from `<data>/txfiles/` (run inputs, and
//!   `<tx>/<checksum hex>/<basename>` for outputs)
//!
//! *Security invariant:* a request can reach only regular files inside those two trees. Every
//! segment is percent-decoded and checked (no empty, `.`, `..`, dot-prefixed, or control-character
//! segments, no `/` or `\` smuggled in by encoding), the first segment must be a 64-hex hash, and
//! no component on disk may be a symlink. Anything else is a plain 404 that says nothing more.
//!
//! *Invariant:* a file is never served half-written: files enter these trees by an atomic rename
//! once complete, and temporary names start with a dot, which this server never serves.
//!
//! `GET` and `HEAD`, `Range` requests (single ranges), `Last-Modified`, and an `ETag` that is the
//! file's BLAKE3 (from the path for output files, computed and cached otherwise).
//!
//! A file this node does not hold but the network knows (an output of a stored Proof or
//! Verification, the image of a deployed program, an input of a stored Run) is fetched first
//! from its producer or a peer, checked against its checksum, stored, then served
//! (`Node::fetch_known_file`); `502 file_unavailable` when no source had it. A request from a peer
//! doing the same (`x-gevulot-peer-fetch`) is answered from what this node holds only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;
use tower_http::services::ServeFile;

use app::data_dir::DataDir;

/// Longest accepted request path, in segments.
const MAX_SEGMENTS: usize = 32;

/// ETags computed for files whose checksum is not in their path, keyed by path, size and mtime.
#[derive(Debug, Default)]
struct EtagCache {
    entries: Mutex<HashMap<(PathBuf, u64, SystemTime), String>>,
}

const ETAG_CACHE_ENTRIES: usize = 4096;

#[derive(Clone, Debug)]
pub struct FileServer {
    data_dir: DataDir,
    etags: Arc<EtagCache>,
    /// Fetches files the network knows and this node does not hold.
    node: Option<app::node::Node>,
}

impl FileServer {
    pub fn new(data_dir: DataDir) -> Self {
        Self {
            data_dir,
            etags: Arc::default(),
            node: None,
        }
    }

    /// Fetches a missing file the network knows through `node` before answering.
    pub fn fetching_through(mut self, node: app::node::Node) -> Self {
        self.node = Some(node);
        self
    }

    /// The server's router, behind `door`'s limits per client address.
    pub fn router(self, door: Arc<super::limits::Door>) -> Router {
        let router =
            Router::new()
                .fallback(serve)
                .with_state(self)
                .layer(axum::middleware::from_fn(
                    move |req: Request, next: axum::middleware::Next| {
                        let door = door.clone();
                        async move {
                            super::limits::guard(&door, super::limits::Answer::Problem, req, next)
                                .await
                        }
                    },
                ));
        super::common_layers(router)
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Decodes and checks the request path; `None` for anything outside the served layout.
fn segments(raw_path: &str) -> Option<Vec<String>> {
    let rest = raw_path.strip_prefix('/')?;
    let mut out = Vec::new();
    for raw in rest.split('/') {
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?
            .into_owned();
        let bad = decoded.is_empty()
            || decoded.starts_with('.')
            || decoded.contains('/')
            || decoded.contains('\\')
            || decoded.chars().any(char::is_control);
        if bad {
            return None;
        }
        out.push(decoded);
        if out.len() > MAX_SEGMENTS {
            return None;
        }
    }
    let ok = match out.first().map(String::as_str) {
        Some("images") => out.len() == 3 && is_hash(&out[1]),
        Some("txfiles") => out.len() >= 3 && is_hash(&out[1]),
        _ => false,
    };
    ok.then_some(out)
}

/// Resolves `segments` under the data directory (confined by [`DataDir::served`]), refusing
/// symlinks anywhere on the way.
fn resolve(data_dir: &DataDir, segments: &[String]) -> Option<PathBuf> {
    let target = data_dir.served(&segments.join("/"))?;
    let mut path = data_dir.root().to_path_buf();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        path.push(segment);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if meta.file_type().is_symlink() {
            return None;
        }
        let ok = if i == last {
            meta.is_file()
        } else {
            meta.is_dir()
        };
        if !ok {
            return None;
        }
    }
    (path == target).then_some(path)
}

/// The checksum an output file's path names (`txfiles/<tx>/<checksum>/<basename>`).
fn checksum_in_path(segments: &[String]) -> Option<&str> {
    (segments.len() == 4 && segments[0] == "txfiles" && is_hash(&segments[2]))
        .then(|| segments[2].as_str())
}

impl EtagCache {
    async fn etag(&self, path: &Path) -> Option<String> {
        let meta = tokio::fs::metadata(path).await.ok()?;
        let key = (path.to_path_buf(), meta.len(), meta.modified().ok()?);
        if let Ok(entries) = self.entries.lock()
            && let Some(tag) = entries.get(&key)
        {
            return Some(tag.clone());
        }
        let owned = path.to_path_buf();
        let tag = tokio::task::spawn_blocking(move || -> Option<String> {
            let mut hasher = blake3::Hasher::new();
            hasher
                .update_reader(std::fs::File::open(owned).ok()?)
                .ok()?;
            Some(hasher.finalize().to_hex().to_string())
        })
        .await
        .ok()??;
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= ETAG_CACHE_ENTRIES {
                entries.clear();
            }
            entries.insert(key, tag.clone());
        }
        Some(tag)
    }
}

async fn serve(State(server): State<FileServer>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = (StatusCode::METHOD_NOT_ALLOWED, "read-only: GET and HEAD\n").into_response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(segments) = segments(req.uri().path()) else {
        return not_found();
    };
    let data_dir = server.data_dir.clone();
    let lookup = segments.clone();
    let held = tokio::task::spawn_blocking(move || resolve(&data_dir, &lookup))
        .await
        .ok()
        .flatten();
    let path = match (held, &server.node) {
        (Some(path), _) => path,
        (None, Some(node)) if !req.headers().contains_key(app::node::PEER_FETCH_HEADER) => {
            match node.fetch_known_file(&segments).await {
                Ok(Some(_)) => {
                    // Served from where it now is, through the same checks as any file.
                    let data_dir = server.data_dir.clone();
                    let lookup = segments.clone();
                    match tokio::task::spawn_blocking(move || resolve(&data_dir, &lookup)).await {
                        Ok(Some(path)) => path,
                        _ => return not_found(),
                    }
                }
                Ok(None) => return not_found(),
                Err(e @ app::node::NodeError::Unavailable(_)) => {
                    return (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response();
                }
                Err(e) => {
                    return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response();
                }
            }
        }
        (None, _) => return not_found(),
    };
    let etag = match checksum_in_path(&segments) {
        Some(sum) => Some(sum.to_ascii_lowercase()),
        None => server.etags.etag(&path).await,
    };
    let etag = etag.map(|t| format!("\"{t}\""));
    if let (Some(tag), Some(wanted)) = (&etag, req.headers().get(header::IF_NONE_MATCH))
        && wanted.to_str().is_ok_and(|w| {
            w.split(',')
                .any(|candidate| candidate.trim() == tag || candidate.trim() == "*")
        })
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(tag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return r;
    }
    // Large reads: fewer wake-ups per byte on big images and proofs.
    let serve = ServeFile::new(&path).with_buf_chunk_size(256 * 1024);
    let response = match serve.oneshot(req).await {
        Ok(r) => r.map(Body::new),
        Err(never) => match never {},
    };
    let mut response = response;
    if response.status().is_success()
        && let Some(tag) = etag.and_then(|t| HeaderValue::from_str(&t).ok())
    {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn layout() {
        assert!(segments(&format!("/images/{H}/prover.img")).is_some());
        assert!(segments(&format!("/txfiles/{H}/workspace/in.txt")).is_some());
        assert!(segments(&format!("/txfiles/{H}/{H}/proof.dat")).is_some());
        for bad in [
            "/".to_string(),
            "/node.key".to_string(),
            "/gevulot.db".to_string(),
            "/log/x".to_string(),
            format!("/images/{H}"),
            format!("/images/{H}/a/b"),
            "/images/nothex/x".to_string(),
            format!("/txfiles/{H}/../../node.key"),
            format!("/txfiles/{H}/%2e%2e/%2e%2e/node.key"),
            format!("/txfiles/{H}/%2E%2E/x"),
            format!("/txfiles/{H}/a%2fb"),
            format!("/txfiles/{H}/a%5cb"),
            format!("/txfiles/{H}//x"),
            format!("/txfiles/{H}/.partial"),
            format!("/txfiles/{H}/a%00b"),
            format!("/images/{H}/%ff"),
            "//etc/passwd".to_string(),
        ] {
            assert!(segments(&bad).is_none(), "{bad}");
        }
    }
}
