//! Running the `gevulot` binary and watching its log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn gevulot() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gevulot"));
    // Tests never inherit a developer's configuration.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GEVULOT_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    cmd
}

pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .expect("the gevulot binary runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running node whose standard error is collected line by line.
pub struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Node {
    /// Starts `cmd`; its standard error and standard output lines are collected together.
    pub fn spawn(mut cmd: Command) -> Node {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the node starts");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        for stream in [
            Box::new(stderr) as Box<dyn std::io::Read + Send>,
            Box::new(stdout),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Node {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits (at most `timeout`) for a log line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line containing {needle:?} within {timeout:?}; the log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the whole log.
    pub fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.log.push(line);
        }
        let log = self.log.join("\n");
        assert!(
            exit.success(),
            "the node exited with {exit} after SIGTERM; log:\n{log}"
        );
        log
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The value of `field=` in a log line.
pub fn log_field(line: &str, field: &str) -> Option<String> {
    let at = line.find(&format!(" {field}="))? + field.len() + 2;
    let rest = &line[at..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_string())
}

/// A node started for a test: every listener on a free port, its own data directory.
pub struct Running {
    /// Kept so that the node runs until the test ends (dropping it kills the process).
    _node: Node,
    pub data: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub files: std::net::SocketAddr,
    pub health: std::net::SocketAddr,
    pub metrics: std::net::SocketAddr,
    /// Where the node listens for peers.
    pub p2p: std::net::SocketAddr,
    pub file_base_url: String,
}

impl Running {
    /// Waits for a line of the node's output containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        self._node.wait_for(needle, Duration::from_secs(30))
    }

    /// Everything the node printed so far.
    pub fn log_text(mut self) -> String {
        while let Ok(line) = self._node.lines.recv_timeout(Duration::from_millis(300)) {
            self._node.log.push(line);
        }
        self._node.log.join("\n")
    }

    /// Starts `gevulot run` on SQLite in a fresh data directory, or on `db_url`.
    pub fn start(db_url: Option<&str>) -> Running {
        Self::start_with(db_url, &[])
    }

    pub fn start_with(db_url: Option<&str>, env: &[(&str, &str)]) -> Running {
        Self::start_in(testkit::tempdir(), db_url, env)
    }

    /// Kills the node with SIGKILL (no chance to clean up) and hands back its data directory.
    pub fn kill(self) -> tempfile::TempDir {
        let Running {
            _node: mut node,
            data,
            ..
        } = self;
        let _ = node.child.kill();
        let _ = node.child.wait();
        data
    }

    /// Starts `gevulot run` on the data directory `data` (SQLite there unless `db_url`).
    pub fn start_in(
        data: tempfile::TempDir,
        db_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Running {
        install_tls_provider();
        let mut cmd = gevulot();
        cmd.arg("run")
            .env("GEVULOT_DATA_DIRECTORY", data.path())
            .env("GEVULOT_JSON_RPC_LISTEN_ADDR", "127.0.0.1:0")
            .env("GEVULOT_HTTP_PORT", "0")
            .env("GEVULOT_P2P_LISTEN_ADDR", "127.0.0.1:0")
            .env("GEVULOT_HEALTHCHECK_LISTEN_ADDR", "127.0.0.1:0")
            .env("GEVULOT_METRICS_LISTEN_ADDR", "127.0.0.1:0")
            .env("GEVULOT_PSK_PASSPHRASE", "test network");
        if let Some(url) = db_url {
            cmd.env("GEVULOT_DB_URL", url);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut node = Node::spawn(cmd);
        let ready = node.wait_for("node ready", Duration::from_secs(60));
        let addr = |field: &str| -> std::net::SocketAddr {
            log_field(&ready, field)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {field} in {ready}"))
        };
        Running {
            base: format!("http://{}", addr("json_rpc_listen_addr")),
            files: addr("files_listen_addr"),
            health: addr("healthcheck_listen_addr"),
            metrics: addr("metrics_listen_addr"),
            p2p: addr("p2p_listen_addr"),
            file_base_url: log_field(&ready, "file_base_url").expect("file_base_url"),
            _node: node,
            data,
        }
    }
}

/// A raw HTTP/1.1 exchange, for requests a client library would normalise (`..`, `%2e`).
/// Returns the status code and the body.
pub fn raw_http(
    addr: std::net::SocketAddr,
    request_line: &str,
    headers: &[&str],
) -> (u16, Vec<u8>) {
    raw_http_body(addr, request_line, headers, "")
}

/// [`raw_http`] with a request body.
pub fn raw_http_body(
    addr: std::net::SocketAddr,
    request_line: &str,
    headers: &[&str],
    body: &str,
) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("{request_line}\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// Signs in through the REST API; returns the session cookie (`name=value`) and its CSRF token.
pub async fn sign_in(
    c: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> (String, String) {
    let r = c
        .post(format!("{base}/api/v1/session"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .expect("sign-in request");
    assert_eq!(r.status(), 200, "sign-in as {user}");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("pair").to_string();
    let body: serde_json::Value = r.json().await.expect("json");
    (pair, body["csrf_token"].as_str().expect("csrf").to_string())
}

/// Signs in and creates an API token for that user.
pub async fn api_token(c: &reqwest::Client, base: &str, user: &str, password: &str) -> String {
    let (cookie, csrf) = sign_in(c, base, user, password).await;
    let created: serde_json::Value = c
        .post(format!("{base}/api/v1/tokens"))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .json(&serde_json::json!({"name": "test"}))
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("json");
    created["token"].as_str().expect("token").to_string()
}

/// reqwest is built with rustls but no default crypto provider (the node picks ring); the test
/// clients need one installed before they are built.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
