//! Live status: JSON-RPC over WebSocket with a status subscription, server-sent events, and
//! cancelling a Run (an operator action).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Running, api_token, raw_http_body};

/// A minimal WebSocket client (text frames, masked as RFC 6455 requires of clients).
struct Ws {
    stream: TcpStream,
}

impl Ws {
    fn connect(addr: SocketAddr, path: &str) -> Ws {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("handshake answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Ws { stream }
    }

    fn frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut out = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len < 65536 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&out).expect("send");
    }

    fn send(&mut self, value: &Value) {
        self.frame(0x1, value.to_string().as_bytes());
    }

    fn recv(&mut self) -> Value {
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).expect("a frame");
            let opcode = head[0] & 0x0f;
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).expect("len");
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).expect("len");
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).expect("payload");
            match opcode {
                0x1 => return serde_json::from_slice(&payload).expect("json"),
                0x9 => self.frame(0xA, &payload),
                _ => {}
            }
        }
    }
}

fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let len = format!("Content-Length: {}", body.len());
    let headers = ["Content-Type: application/json", len.as_str()];
    let (status, bytes) = raw_http_body(addr, &format!("POST {path} HTTP/1.1"), &headers, body);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn input(name: &str) -> String {
    testkit::vector(name)["input_json"]
        .as_str()
        .expect("json")
        .to_string()
}

fn hash(name: &str) -> String {
    testkit::vector(name)["hash_hex"]
        .as_str()
        .expect("hash")
        .to_string()
}

fn addr(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().expect("address")
}

#[test]
fn websocket_subscription_follows_a_run() {
    let node = Running::start_with(None, &[("GEVULOT_ADMIN_PASSWORD", "admin-password-1")]);
    let main = addr(&node.base);
    for name in ["deploy", "run"] {
        assert_eq!(post(main, "/api/v1/transactions", &input(name)).0, 201);
    }
    let mut ws = Ws::connect(main, "/rpc");
    // The original methods work over WebSocket too.
    let params: Value = serde_json::from_str(
        testkit::vector("run")["get_transaction_params_json"]
            .as_str()
            .expect("params"),
    )
    .expect("json");
    ws.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "getTransaction", "params": params}));
    let answer = ws.recv();
    assert_eq!(answer["result"]["Ok"]["hash"], hash("run"), "{answer}");

    ws.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "gevulot_subscribeTransactionStatus", "params": [hash("run")]}));
    let accepted = ws.recv();
    let subscription = accepted["result"].clone();
    assert!(!subscription.is_null(), "{accepted}");
    let first = ws.recv();
    assert_eq!(first["method"], "gevulot_transactionStatus");
    assert_eq!(first["params"]["subscription"], subscription);
    assert_eq!(first["params"]["result"]["kind"], "run");

    // A Proof of the Run changes its status: a notification arrives.
    assert_eq!(post(main, "/api/v1/transactions", &input("proof")).0, 201);
    let next = ws.recv();
    assert_eq!(next["params"]["result"]["hash"], hash("run"), "{next}");

    // Subscribing to an unknown transaction is refused with the catalogue code.
    ws.send(&json!({"jsonrpc": "2.0", "id": 3, "method": "gevulot_subscribeTransactionStatus", "params": ["ab".repeat(32)]}));
    // (Status notifications of the run's tasks may arrive first.)
    let refused = loop {
        let message = ws.recv();
        if message["id"] == 3 {
            break message;
        }
        assert_eq!(message["method"], "gevulot_transactionStatus", "{message}");
    };
    assert_eq!(refused["error"]["data"]["code"], "not_found", "{refused}");
}

#[tokio::test]
async fn server_sent_events_and_cancel() {
    let node = Running::start_with(None, &[("GEVULOT_ADMIN_PASSWORD", "admin-password-1")]);
    let c = reqwest::Client::new();
    let base = node.base.clone();
    for name in ["deploy", "run"] {
        let r = c
            .post(format!("{base}/api/v1/transactions"))
            .header("content-type", "application/json")
            .body(input(name))
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 201);
    }
    let mut events = c
        .get(format!("{base}/api/v1/events?tx={}", hash("run")))
        .send()
        .await
        .expect("events");
    assert_eq!(events.headers()["content-type"], "text/event-stream");

    // Cancel needs an operator.
    let url = format!("{base}/api/v1/transactions/{}/cancel", hash("run"));
    let r = c.post(&url).send().await.expect("cancel");
    assert_eq!(r.status(), 401);
    let token = api_token(&c, &base, "admin", "admin-password-1").await;
    let r = c
        .post(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status(), 201);
    let cancel: Value = r.json().await.expect("json");
    // The Cancel is a transaction signed by the node, naming the Run.
    let info: Value = c
        .get(format!("{base}/api/v1/node"))
        .send()
        .await
        .expect("node")
        .json()
        .await
        .expect("json");
    let stored: Value = c
        .get(format!(
            "{base}/api/v1/transactions/{}",
            cancel["hash"].as_str().expect("hash")
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(stored["kind"], "cancel");
    assert_eq!(stored["parent"], hash("run"));
    assert_eq!(stored["author"], info["public_key"]);
    let not_a_run = c
        .post(format!(
            "{base}/api/v1/transactions/{}/cancel",
            hash("deploy")
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cancel");
    assert_eq!(not_a_run.status(), 422);
    let unknown = c
        .post(format!(
            "{base}/api/v1/transactions/{}/cancel",
            "ab".repeat(32)
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cancel");
    assert_eq!(unknown.status(), 404);

    // The event stream saw the Cancel of the Run.
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("\"tx_kind\":\"cancel\"") {
        let chunk = tokio::time::timeout_at(deadline, events.chunk())
            .await
            .expect("an event in time")
            .expect("stream");
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("open stream")));
    }
    assert!(seen.contains("event: transaction_stored"), "{seen}");

    // JSON-RPC cancel needs a token too.
    let call = |auth: Option<String>| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let mut req = c.post(format!("{base}/rpc")).json(&json!({"jsonrpc": "2.0", "id": 1, "method": "gevulot_cancel", "params": [hash("run")]}));
            if let Some(t) = auth {
                req = req.bearer_auth(t);
            }
            req.send()
                .await
                .expect("rpc")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let refused = call(None).await;
    assert_eq!(
        refused["error"]["data"]["code"], "unauthorized",
        "{refused}"
    );
    let ok = call(Some(token)).await;
    assert!(ok["result"]["hash"].is_string(), "{ok}");
}
