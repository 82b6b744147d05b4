//! Files from peers: a node's download port serves a file the network knows but the node does
//! not hold by fetching it from its producer, or, with the producer down, from a peer at the same
//! path, checksum-verified; a peer's own fetch never makes it fetch in turn.

use app::crypto::SecretKey;

use crate::network::{Member, eventually, member};
use crate::support::{Image, accepted, deploy, input, program, run, step};

/// An HTTP server holding the program images; abort the handle to take it down.
async fn producer(files: Vec<(&'static str, Vec<u8>)>) -> (String, tokio::task::JoinHandle<()>) {
    let mut app = axum::Router::new();
    for (name, body) in files {
        app = app.route(
            &format!("/{name}"),
            axum::routing::get(move || {
                let body = body.clone();
                async move { body }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, server)
}

async fn fetch(member: &Member, path: &str, peer: bool) -> (u16, Option<String>, Vec<u8>) {
    let mut req = reqwest::Client::new().get(format!("http://{}/{path}", member.node.files));
    if peer {
        req = req.header(app::node::PEER_FETCH_HEADER, "1");
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, etag, r.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_file_comes_from_its_producer_or_a_peer() {
    let prover_image = b"a prover image, never fetched by a run".repeat(1000);
    let verifier_image = b"a verifier image nobody holds".to_vec();
    let witness = b"a run's input".to_vec();
    let (base, server) = producer(vec![
        ("prover.img", prover_image.clone()),
        ("verifier.img", verifier_image.clone()),
        ("in.txt", witness.clone()),
    ])
    .await;
    let image = |name: &str, body: &[u8]| Image {
        url: format!("{base}/{name}"),
        checksum: blake3::hash(body).to_hex().to_string(),
    };
    let prover = program("prover", &image("prover.img", &prover_image), 64, 1);
    let verifier = program("verifier", &image("verifier.img", &verifier_image), 64, 1);

    // Nodes that never execute: they fetch nothing on arrival, only what their download port is
    // asked for.
    let fast = ("GEVULOT_P2P_ANNOUNCE_INTERVAL_SECS", "1");
    let relay = ("GEVULOT_NODE_NO_EXECUTION", "true");
    let a = member(&[fast, relay]).await;
    let a_addr = a.node.p2p.to_string();
    let b = member(&[fast, relay, ("GEVULOT_P2P_DISCOVERY_ADDR", &a_addr)]).await;
    eventually("each node hears the other's download URL", || async {
        a.network().await["nodes"].as_array().map_or(0, Vec::len) == 2
            && b.network().await["nodes"].as_array().map_or(0, Vec::len) == 2
    })
    .await;

    let key = SecretKey::from_bytes(&[41; 32]).expect("key");
    let deployed = deploy(&key, "peer files", prover.clone(), verifier.clone());
    accepted(&a.node.base, &deployed).await;
    let stored = |m: &Member| {
        let base = m.node.base.clone();
        let hash = deployed.hash;
        async move {
            let r = crate::support::rpc(&base, "getTransaction", serde_json::json!([hash])).await;
            r["result"]["Ok"].is_object()
        }
    };
    eventually("b stores the Deploy", || stored(&b)).await;

    // b does not hold the prover's image: it fetches it from the producer, checks and serves it.
    let prover_path = format!("images/{}/prover.img", prover.hash.to_hex());
    let (status, etag, body) = fetch(&b, &prover_path, false).await;
    assert_eq!(status, 200);
    assert_eq!(body, prover_image);
    assert_eq!(
        etag,
        Some(format!("\"{}\"", blake3::hash(&prover_image).to_hex()))
    );

    // A Run's input, at the path the original serves it.
    let r = run(
        &key,
        vec![step(
            &prover,
            &[],
            vec![input("/workspace/in.txt", &image("in.txt", &witness))],
        )],
    );
    accepted(&a.node.base, &r).await;
    let input_path = format!("txfiles/{}/workspace/in.txt", r.hash.to_hex());
    let (status, _, body) = fetch(&a, &input_path, false).await;
    assert_eq!(status, 200);
    assert_eq!(body, witness);

    // The producer goes down: a gets the same file from b, at the same path.
    server.abort();
    let _ = server.await;
    let (status, _, body) = fetch(&a, &prover_path, false).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, prover_image);
    // Held now: served again without any source.
    assert_eq!(fetch(&a, &prover_path, true).await.0, 200);

    // Nobody holds the verifier's image. A peer's fetch is answered from what a holds only (no
    // loop); a client learns that no source had it.
    let verifier_path = format!("images/{}/verifier.img", verifier.hash.to_hex());
    assert_eq!(fetch(&a, &verifier_path, true).await.0, 404);
    let (status, _, body) = fetch(&a, &verifier_path, false).await;
    let text = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("no source had it"), "{text}");
    // A path no transaction names is a plain 404, fetched from nowhere.
    let unknown = format!("images/{}/prover.img", "ab".repeat(32));
    assert_eq!(fetch(&a, &unknown, false).await.0, 404);
    let wrong_name = format!("images/{}/other.img", prover.hash.to_hex());
    assert_eq!(fetch(&b, &wrong_name, false).await.0, 404);

    let metrics = a.metrics().await;
    for series in [
        "gevulot_file_fetches_total{outcome=\"fetched\"} 2",
        "gevulot_file_fetches_total{outcome=\"failed\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}
