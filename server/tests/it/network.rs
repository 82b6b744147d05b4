//! Several `gevulot run` processes on loopback forming a private network: peers listed by the
//! API and the metrics, transactions crossing from one node's JSON-RPC to another's, a node with
//! another passphrase kept out, a killed node coming back, and a whitelist synced from a URL
//! deciding who may join and author.

use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use app::tx::{Payload, Transaction};
use serde_json::{Value, json};

use crate::support::rpc;
use crate::support::{Running, api_token, gevulot, output, sign_in, stdout};

pub(crate) const ADMIN: (&str, &str) = ("admin", "network-admin-pass");
const WAIT: Duration = Duration::from_secs(30);

/// A node of the test network, with an API token for the peer view.
pub(crate) struct Member {
    pub(crate) node: Running,
    pub(crate) token: String,
    pub(crate) key: String,
}

pub(crate) async fn member(env: &[(&str, &str)]) -> Member {
    let mut all = vec![("GEVULOT_ADMIN_PASSWORD", ADMIN.1)];
    all.extend_from_slice(env);
    member_in(testkit::tempdir(), &all).await
}

pub(crate) async fn member_in(data: tempfile::TempDir, env: &[(&str, &str)]) -> Member {
    let node = Running::start_in(data, None, env);
    let c = reqwest::Client::new();
    let token = api_token(&c, &node.base, ADMIN.0, ADMIN.1).await;
    let info = rpc(&node.base, "gevulot_nodeInfo", json!([])).await;
    let key = info["result"]["public_key"]
        .as_str()
        .expect("public key")
        .to_string();
    Member { node, token, key }
}

impl Member {
    pub(crate) async fn network(&self) -> Value {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/node/peers", self.node.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    /// The node keys of the connected peers.
    pub(crate) async fn peer_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.network().await["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p["public_key"].as_str().unwrap_or("").to_string())
            .collect();
        keys.sort();
        keys
    }

    async fn has(&self, tx: &Value) -> bool {
        let r = rpc(&self.node.base, "getTransaction", json!([tx["hash"]])).await;
        r["result"]["Ok"].is_object()
    }

    /// The console's dashboard, signed in as the admin.
    async fn dashboard(&self) -> String {
        self.console("/console").await
    }

    /// A console page, signed in as the admin.
    pub(crate) async fn console(&self, path: &str) -> String {
        let c = reqwest::Client::new();
        let (session, _) = sign_in(&c, &self.node.base, ADMIN.0, ADMIN.1).await;
        c.get(format!("{}{path}", self.node.base))
            .header("cookie", session)
            .send()
            .await
            .expect("dashboard")
            .text()
            .await
            .expect("html")
    }

    pub(crate) async fn metrics(&self) -> String {
        self.node.metrics_text().await
    }
}

/// Polls `check` every 200 ms until it holds, for at most [`WAIT`].
pub(crate) async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(WAIT, what, check).await;
}

/// Polls `check` every 200 ms until it holds, for at most `limit`.
pub(crate) async fn eventually_within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fixture transaction in the original client's JSON input form.
fn vector(name: &str) -> Value {
    serde_json::from_str(
        testkit::vector(name)["input_json"]
            .as_str()
            .expect("input_json"),
    )
    .expect("json")
}

async fn send(base: &str, tx: &Value) {
    let r = rpc(base, "sendTransaction", json!([tx])).await;
    assert_eq!(r["result"], json!({"Ok": null}), "{r}");
}

#[tokio::test]
async fn nodes_join_share_transactions_and_come_back() {
    let a = member(&[("GEVULOT_P2P_ANNOUNCE_INTERVAL_SECS", "1")]).await;
    let a_addr = a.node.p2p.to_string();
    let b = member(&[
        ("GEVULOT_P2P_DISCOVERY_ADDR", &a_addr),
        ("GEVULOT_P2P_ANNOUNCE_INTERVAL_SECS", "1"),
    ])
    .await;
    let outsider = member(&[
        ("GEVULOT_P2P_DISCOVERY_ADDR", &a_addr),
        ("GEVULOT_PSK_PASSPHRASE", "not the test network"),
    ])
    .await;

    eventually("a and b list each other", || async {
        a.peer_keys().await == [b.key.clone()] && b.peer_keys().await == [a.key.clone()]
    })
    .await;
    let view = a.network().await;
    let b_view = b.network().await;
    assert_eq!(view["listen_addr"], a_addr);
    assert_eq!(view["acl"]["mode"], "open");
    assert_eq!(view["peers"][0]["direction"], "inbound", "{view}");
    assert_eq!(b_view["peers"][0]["direction"], "outbound", "{b_view}");
    assert_eq!(b_view["bootstrap"], json!([a_addr]));
    assert_eq!(view["peers"][0]["peer_id"], b_view["peer_id"]);
    assert_eq!(view["psk_fingerprint"], b_view["psk_fingerprint"]);
    let outsider_view = outsider.network().await;
    assert_ne!(view["psk_fingerprint"], outsider_view["psk_fingerprint"]);
    assert_eq!(outsider_view["peers"], json!([]), "{outsider_view}");
    // The fingerprint is not the passphrase or its plain digest.
    let fingerprint = view["psk_fingerprint"].as_str().expect("fingerprint");
    assert!(
        !app::tx::Hash::sha3(b"test network")
            .to_hex()
            .starts_with(fingerprint)
    );

    // Each node hears the other's capacity, signed by its node key.
    eventually("a hears b's capacity", || async {
        a.network().await["nodes"].as_array().map_or(0, Vec::len) == 2
    })
    .await;
    let nodes = a.network().await["nodes"].clone();
    let of = |key: &str| {
        nodes
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["public_key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("{key} in {nodes}"))
    };
    let (own, of_b) = (of(&a.key), of(&b.key));
    assert_eq!(own["local"], true, "{own}");
    assert_eq!(of_b["local"], false, "{of_b}");
    assert!(of_b["cpus"].as_u64().expect("cpus") > 0, "{of_b}");
    assert_eq!(
        of_b["download_url"],
        b.node.file_base_url.as_str(),
        "{of_b}"
    );
    let html = reqwest::Client::new()
        .get(format!("{}/console/network", a.node.base))
        .header(
            "cookie",
            sign_in(&reqwest::Client::new(), &a.node.base, ADMIN.0, ADMIN.1)
                .await
                .0,
        )
        .send()
        .await
        .expect("network page")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains(&b.key) && html.contains("(this node)"),
        "{html}"
    );
    assert!(html.contains("Catch-up"), "{html}");

    // The console's dashboard shows the same.
    let page = a.dashboard().await;
    assert!(
        page.contains(r#"class="stat">1</span> connected"#),
        "{page}"
    );
    assert!(page.contains(&b.key), "b's key on a's dashboard");
    assert!(page.contains(fingerprint));
    assert!(page.contains("Open: any node with the pre-shared key"));

    // The peer view needs a signed-in caller, on REST and JSON-RPC alike.
    let c = reqwest::Client::new();
    let anonymous = c
        .get(format!("{}/api/v1/node/peers", a.node.base))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    let r = rpc(&a.node.base, "gevulot_peers", json!([])).await;
    assert_eq!(r["error"]["data"]["code"], "unauthorized", "{r}");
    let r: Value = c
        .post(format!("{}/rpc", a.node.base))
        .bearer_auth(&a.token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "gevulot_peers", "params": []}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(r["result"]["peer_id"], view["peer_id"], "{r}");

    // A client's transaction on b reaches a, exactly as sent; the outsider never sees it.
    let deploy = vector("deploy");
    send(&b.node.base, &deploy).await;
    eventually("a has b's transaction", || a.has(&deploy)).await;
    let on_a = rpc(&a.node.base, "getTransaction", json!([deploy["hash"]])).await;
    let on_b = rpc(&b.node.base, "getTransaction", json!([deploy["hash"]])).await;
    assert_eq!(on_a["result"], on_b["result"]);
    let metrics = a.metrics().await;
    for series in [
        "gevulot_peers_connected 1",
        "gevulot_p2p_transactions_total{outcome=\"accepted\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    assert!(
        b.metrics()
            .await
            .contains("gevulot_p2p_transactions_total{outcome=\"published\"} 1")
    );
    assert_eq!(b.network().await["messages"]["published"], 1);

    // b is killed; a sees it go. What a stores meanwhile reaches b when it is back.
    let Member { node, token, key } = b;
    let b_data = node.kill();
    eventually("a lists no peer", || async {
        a.peer_keys().await.is_empty()
    })
    .await;
    assert!(a.metrics().await.contains("gevulot_peers_connected 0"));
    let empty = vector("empty");
    send(&a.node.base, &empty).await;
    let b = Member {
        node: Running::start_in(
            b_data,
            None,
            &[
                ("GEVULOT_ADMIN_PASSWORD", ADMIN.1),
                ("GEVULOT_P2P_DISCOVERY_ADDR", &a_addr),
            ],
        ),
        token,
        key,
    };
    eventually("b is back", || async {
        a.peer_keys().await == [b.key.clone()]
    })
    .await;
    eventually("b gets what a stored while it was down", || b.has(&empty)).await;
    assert!(b.has(&deploy).await, "b kept what it had");
    assert!(!outsider.has(&deploy).await && !outsider.has(&empty).await);
}

/// A node that may hold one peer: the second node to join is refused at its handshake (and
/// counted), while the first stays connected.
#[tokio::test]
async fn a_node_holds_at_most_its_peer_limit() {
    let a = member(&[("GEVULOT_P2P_MAX_PEERS", "1")]).await;
    let a_addr = a.node.p2p.to_string();
    let b = member(&[("GEVULOT_P2P_DISCOVERY_ADDR", &a_addr)]).await;
    eventually("a and b connect", || async {
        a.peer_keys().await == [b.key.clone()]
    })
    .await;
    let c = member(&[("GEVULOT_P2P_DISCOVERY_ADDR", &a_addr)]).await;
    let refused = r#"gevulot_p2p_connections_refused_total{reason="limit"} "#;
    eventually("a refuses c", || async {
        a.node
            .metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(refused))
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n >= 1)
    })
    .await;
    assert_eq!(a.peer_keys().await, std::slice::from_ref(&b.key));
    assert_eq!(c.peer_keys().await, Vec::<String>::new());
}

/// Writes a node key into a fresh data directory and returns both with the key's hex.
fn data_with_key() -> (tempfile::TempDir, String) {
    let data = testkit::tempdir();
    let file = data.path().join("node.key");
    let out = output(gevulot().args(["generate", "key", "--key-file"]).arg(&file));
    assert!(out.status.success());
    let out = output(
        gevulot()
            .args(["show", "public-key", "--key-file"])
            .arg(&file),
    );
    (data, stdout(&out).trim().to_string())
}

/// Serves `body` at `/acl` on loopback; returns the URL.
async fn serve_list(body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/acl", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route("/acl", axum::routing::get(move || async move { body }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn signed_empty(author: &SecretKey, nonce: u64) -> Value {
    serde_json::to_value(Transaction::new_signed(Payload::Empty, nonce, author)).expect("json")
}

#[tokio::test]
async fn a_whitelist_from_a_url_decides_who_joins_and_who_authors() {
    let (friend_data, friend_key) = data_with_key();
    let author = SecretKey::generate().expect("key");
    let stranger_author = SecretKey::generate().expect("key");
    let url = serve_list(format!(
        "# members\n{friend_key}\n{}\n",
        author.public_key().to_hex()
    ))
    .await;
    let guarded = member(&[("GEVULOT_ACL_WHITELIST_URL", &url)]).await;
    let guarded_addr = guarded.node.p2p.to_string();
    let join = [
        ("GEVULOT_ADMIN_PASSWORD", ADMIN.1),
        ("GEVULOT_P2P_DISCOVERY_ADDR", guarded_addr.as_str()),
    ];
    let friend = member_in(friend_data, &join).await;
    let stranger = member(&join[1..]).await;
    assert_eq!(friend.key, friend_key);

    eventually("the friend is admitted, the stranger refused", || async {
        let view = guarded.network().await;
        guarded.peer_keys().await == [friend_key.clone()]
            && view["messages"]["peers_refused"].as_u64() >= Some(1)
    })
    .await;
    assert!(!guarded.peer_keys().await.contains(&stranger.key));
    let acl = guarded.network().await["acl"].clone();
    assert_eq!(acl["mode"], "whitelist", "{acl}");
    assert_eq!(acl["whitelisted_keys"], 2, "{acl}");
    assert_eq!(acl["url"], url.as_str());
    assert_eq!(acl["last_sync"]["succeeded"], true, "{acl}");
    assert_eq!(acl["last_sync"]["added"], 2, "{acl}");
    let page = guarded.dashboard().await;
    assert!(
        page.contains("Whitelist: only the 2 whitelisted keys"),
        "{page}"
    );
    assert!(page.contains(&format!("Follows {url}; synced")), "{page}");

    // Through the friend (an open node), only the whitelisted author's transaction gets in.
    let allowed = signed_empty(&author, 1);
    let refused = signed_empty(&stranger_author, 1);
    send(&friend.node.base, &refused).await;
    send(&friend.node.base, &allowed).await;
    eventually("the allowed transaction arrives", || guarded.has(&allowed)).await;
    eventually("the other is refused", || async {
        guarded.network().await["messages"]["rejected"].as_u64() >= Some(1)
    })
    .await;
    assert!(!guarded.has(&refused).await);
    // A client of the guarded node is held to the same list.
    let r = rpc(&guarded.node.base, "sendTransaction", json!([refused])).await;
    assert!(
        r["result"]["Err"]["InvalidRequest"]
            .as_str()
            .is_some_and(|m| m.contains("whitelist")),
        "{r}"
    );
}
