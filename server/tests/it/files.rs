//! The download server serves exactly the wire layout: traversal attempts of every kind get a
//! bare 404 that leaks nothing; Range, HEAD and ETag work.

use std::net::SocketAddr;

use crate::support::{Running, raw_http};

const SECRET_MARKER: &str = "do-not-serve";

struct Layout {
    tx: String,
    checksum: String,
    program: String,
    content: Vec<u8>,
}

/// Files as the pipeline lays them out, plus things that must never be served.
fn lay_out(node: &Running) -> Layout {
    let data = node.data.path();
    let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let checksum = blake3::hash(&content).to_hex().to_string();
    let tx = "11".repeat(32);
    let program = "22".repeat(32);
    let out_dir = data.join("txfiles").join(&tx).join(&checksum);
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    std::fs::write(out_dir.join("proof.dat"), &content).expect("write");
    let input_dir = data.join("txfiles").join(&tx).join("workspace");
    std::fs::create_dir_all(&input_dir).expect("mkdir");
    std::fs::write(input_dir.join("in.txt"), b"input file contents").expect("write");
    std::fs::write(input_dir.join(".in.txt.partial"), b"half").expect("write");
    let image_dir = data.join("images").join(&program);
    std::fs::create_dir_all(&image_dir).expect("mkdir");
    std::fs::write(image_dir.join("prover.img"), b"image bytes").expect("write");
    std::fs::write(data.join("secret.txt"), SECRET_MARKER).expect("write");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(data.join("node.key"), input_dir.join("key-link"))
            .expect("symlink");
        std::os::unix::fs::symlink(data.join("secret.txt"), input_dir.join("secret-link"))
            .expect("symlink");
        std::os::unix::fs::symlink(data, data.join("txfiles").join("22".repeat(32)))
            .expect("symlink");
    }
    Layout {
        tx,
        checksum,
        program,
        content,
    }
}

fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> (u16, Vec<u8>) {
    raw_http(addr, &format!("GET {path} HTTP/1.1"), headers)
}

#[test]
fn serves_the_layout_and_nothing_else() {
    let node = Running::start(None);
    let l = lay_out(&node);
    let addr = node.files;
    let output = format!("/txfiles/{}/{}/proof.dat", l.tx, l.checksum);
    let (status, body) = get(addr, &output, &[]);
    assert_eq!(status, 200);
    assert_eq!(body, l.content);
    assert_eq!(blake3::hash(&body).to_hex().as_str(), l.checksum);
    assert_eq!(
        get(addr, &format!("/txfiles/{}/workspace/in.txt", l.tx), &[]),
        (200, b"input file contents".to_vec())
    );
    assert_eq!(
        get(addr, &format!("/images/{}/prover.img", l.program), &[]),
        (200, b"image bytes".to_vec())
    );

    let key_bytes = std::fs::read(node.data.path().join("node.key")).expect("key");
    let attempts = [
        "/node.key".to_string(),
        "/gevulot.db".to_string(),
        "/secret.txt".to_string(),
        "/log/".to_string(),
        "/".to_string(),
        "/images".to_string(),
        format!("/txfiles/{}/../../node.key", l.tx),
        format!("/txfiles/{}/%2e%2e/%2e%2e/node.key", l.tx),
        format!("/txfiles/{}/%2E%2E/%2E%2E/secret.txt", l.tx),
        format!("/txfiles/{}/..%2f..%2fnode.key", l.tx),
        format!("/txfiles/{}/..%5c..%5cnode.key", l.tx),
        format!("/txfiles/{}/workspace/key-link", l.tx),
        format!("/txfiles/{}/workspace/secret-link", l.tx),
        format!("/txfiles/{}/node.key", "22".repeat(32)),
        format!("/txfiles/{}/workspace/.in.txt.partial", l.tx),
        format!("/txfiles/{}/workspace", l.tx),
        format!("/images/{}/../../node.key", l.program),
        format!("/images/{}//etc/passwd", l.program),
        "//etc/passwd".to_string(),
        "/txfiles//etc/passwd".to_string(),
        format!("/txfiles/{}/%00", l.tx),
        "http://evil/../../node.key".to_string(),
    ];
    for path in &attempts {
        let (status, body) = get(addr, path, &[]);
        assert!(status == 404 || status == 400, "{path}: {status}");
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains(SECRET_MARKER) && body != key_bytes,
            "{path} leaked: {text}"
        );
        assert!(body.len() < 64, "{path}: a 404 says nothing more: {text}");
    }
    // Read-only.
    let (status, _) = raw_http(
        addr,
        &format!("PUT {output} HTTP/1.1"),
        &["Content-Length: 0"],
    );
    assert_eq!(status, 405);
    let (status, _) = raw_http(addr, &format!("DELETE {output} HTTP/1.1"), &[]);
    assert_eq!(status, 405);
    assert!(node.data.path().join("node.key").exists());
}

#[tokio::test]
async fn range_head_and_etag() {
    let node = Running::start(None);
    let l = lay_out(&node);
    let url = format!(
        "http://{}/txfiles/{}/{}/proof.dat",
        node.files, l.tx, l.checksum
    );
    let c = reqwest::Client::new();
    let head = c.head(&url).send().await.expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        l.content.len().to_string().as_str()
    );
    let etag = head.headers()["etag"].to_str().expect("etag").to_string();
    assert_eq!(etag, format!("\"{}\"", l.checksum));
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    assert!(head.bytes().await.expect("body").is_empty());

    let part = c
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", l.content.len()).as_str()
    );
    assert_eq!(
        part.bytes().await.expect("body").as_ref(),
        &l.content[100..200]
    );
    let tail = c
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .expect("range");
    assert_eq!(
        tail.bytes().await.expect("body").as_ref(),
        &l.content[l.content.len() - 10..]
    );
    let unsatisfiable = c
        .get(&url)
        .header("range", "bytes=999999-")
        .send()
        .await
        .expect("range");
    assert_eq!(unsatisfiable.status(), 416);

    let cached = c
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("conditional");
    assert_eq!(cached.status(), 304);

    // Files whose checksum is not in their path get a computed ETag.
    let input = format!("http://{}/txfiles/{}/workspace/in.txt", node.files, l.tx);
    let r = c.head(&input).send().await.expect("head");
    let expected = format!("\"{}\"", blake3::hash(b"input file contents").to_hex());
    assert_eq!(r.headers()["etag"], expected.as_str());
}
