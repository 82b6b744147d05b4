//! Helpers shared by the process tests: running the `gevulot` binary and watching its log, a
//! lab node with the VM fixtures (`Lab`), and JSON-RPC and REST calls.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use app::crypto::SecretKey;
use app::tx::{
    Hash, Payload, ProgramData, ProgramMetadata, ResourceRequest, Transaction, Workflow,
    WorkflowStep,
};
use axum::response::IntoResponse as _;
use futures::StreamExt as _;
use serde_json::{Value, json};

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

/// The front doors' limits off: for tests whose load comes from one address on purpose.
pub const UNLIMITED: &[(&str, &str)] = &[
    ("GEVULOT_RATE_LIMIT", "0"),
    ("GEVULOT_CONCURRENCY_LIMIT", "0"),
];

/// A node started for a test: every listener on a free port, its own data directory.
pub struct Running {
    /// Kept so that the node runs until the test ends (dropping it kills the process).
    _node: Node,
    /// Dropped after `_node` and before `data` (fields drop in order).
    _reaper: Reaper,
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
    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self._node.child.id()
    }

    /// The node's Prometheus exposition (`/metrics` on its metrics port).
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

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

    /// Stops the node with SIGTERM, waits for a clean exit, and hands back its data directory
    /// and everything it printed.
    pub fn stop(self) -> (tempfile::TempDir, String) {
        let Running {
            _node: node,
            _reaper: mut reaper,
            data,
            ..
        } = self;
        reaper.0 = None;
        (data, node.terminate())
    }

    /// Starts `gevulot run` on SQLite in a fresh data directory, or on `db_url`.
    pub fn start(db_url: Option<&str>) -> Running {
        Self::start_with(db_url, &[])
    }

    pub fn start_with(db_url: Option<&str>, env: &[(&str, &str)]) -> Running {
        Self::start_in(testkit::tempdir(), db_url, env)
    }

    /// Kills the node with SIGKILL and ends the VMs it ran, as when its machine is lost; hands
    /// back its data directory (for a test that does not start a node on it again).
    pub fn kill_for_good(self) -> tempfile::TempDir {
        let data = self.kill();
        app::vm::runner::reap_orphans(&data.path().join("vms"), std::path::Path::new("/"));
        data
    }

    /// Kills the node with SIGKILL (no chance to clean up) and hands back its data directory.
    pub fn kill(self) -> tempfile::TempDir {
        let Running {
            _node: mut node,
            _reaper: mut reaper,
            data,
            ..
        } = self;
        // What it leaves behind is the next node's to find.
        reaper.0 = None;
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
            _reaper: Reaper(Some(data.path().join("vms"))),
            data,
        }
    }
}

/// When a test drops a node (killing it), ends the VMs it left running, their QEMU and vsock
/// daemons, as the node's next start would; disarmed (`None`) when the test hands the data
/// directory on to start another node on it.
struct Reaper(Option<PathBuf>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(vms) = self.0.take() {
            app::vm::runner::reap_orphans(&vms, std::path::Path::new("/"));
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

// --- a node with VM fixtures, and JSON-RPC / REST helpers --------------------------------------

/// Program images and input files, served over HTTP by the test.
pub struct Lab {
    pub fx: testkit::vm::Fixtures,
    pub qemu: PathBuf,
    pub daemon: PathBuf,
    pub dir: tempfile::TempDir,
    pub base: String,
    files: Arc<std::sync::Mutex<HashMap<String, Vec<u8>>>>,
    initrd: Vec<u8>,
}

/// A deployable program: its metadata, ready for a Deploy.
#[derive(Clone, Debug)]
pub struct Image {
    pub url: String,
    pub checksum: String,
}

impl Lab {
    /// `None` (the test skips) outside CI when QEMU, the vsock daemon or the fixtures are missing.
    pub async fn new() -> Option<Lab> {
        let qemu = testkit::vm::require("qemu-system-x86_64")?;
        let daemon = testkit::vm::require("vhost-device-vsock")?;
        let fx = testkit::vm::fixtures()?;
        let initrd = testkit::vm::initramfs(&fx).expect("initramfs");
        let files: Arc<std::sync::Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let served = files.clone();
        let slow = files.clone();
        let app = axum::Router::new()
            .route(
                "/{name}",
                axum::routing::get(
                    move |axum::extract::Path(name): axum::extract::Path<String>| {
                        let served = served.clone();
                        async move {
                            let body = served.lock().expect("lock").get(&name).cloned();
                            match body {
                                Some(b) => (axum::http::StatusCode::OK, b),
                                None => (axum::http::StatusCode::NOT_FOUND, Vec::new()),
                            }
                        }
                    },
                ),
            )
            // The same files, 64 KiB every 100 ms (a slow server, to watch a download).
            .route(
                "/slow/{name}",
                axum::routing::get(
                    move |axum::extract::Path(name): axum::extract::Path<String>| {
                        let slow = slow.clone();
                        async move {
                            let body = slow.lock().expect("lock").get(&name).cloned();
                            let Some(body) = body else {
                                return axum::http::StatusCode::NOT_FOUND.into_response();
                            };
                            let length = body.len();
                            let chunks: Vec<Vec<u8>> =
                                body.chunks(64 << 10).map(<[u8]>::to_vec).collect();
                            let stream = futures::stream::iter(chunks).then(|chunk| async move {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                Ok::<_, std::io::Error>(chunk)
                            });
                            (
                                [(axum::http::header::CONTENT_LENGTH, length.to_string())],
                                axum::body::Body::from_stream(stream),
                            )
                                .into_response()
                        }
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Some(Lab {
            fx,
            qemu,
            daemon,
            dir: testkit::tempdir(),
            base,
            files,
            initrd,
        })
    }

    /// Serves `content` at `/<name>`.
    pub fn serve(&self, name: &str, content: Vec<u8>) -> Image {
        let checksum = blake3::hash(&content).to_hex().to_string();
        self.files
            .lock()
            .expect("lock")
            .insert(name.to_string(), content);
        Image {
            url: format!("{}/{name}", self.base),
            checksum,
        }
    }

    /// Stops serving `/<name>` (its producer is gone).
    pub fn unserve(&self, name: &str) {
        self.files.lock().expect("lock").remove(name);
    }

    /// A kernel-bundle image running `program` (e.g. `/bin/test-prover`), served as `<name>`.
    pub fn program_image(&self, name: &str, program: &str) -> Image {
        let out = self.dir.path().join(name);
        testkit::vm::kernel_bundle(
            &self.fx,
            &self.initrd,
            &format!("quiet gevulot.program={program}"),
            &out,
        )
        .expect("bundle");
        self.serve(name, std::fs::read(&out).expect("image"))
    }

    /// Environment for a node that runs VMs under TCG with the hybrid vsock.
    pub fn node_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GEVULOT_VM_ACCEL", "tcg".into()),
            ("GEVULOT_VSOCK_MODE", "hybrid".into()),
            ("GEVULOT_VSOCK_DAEMON", self.daemon.display().to_string()),
            ("GEVULOT_QEMU_PATH", self.qemu.display().to_string()),
            ("GEVULOT_CPUS", "4".into()),
            ("GEVULOT_MEM_GB", "4".into()),
            ("GEVULOT_TASK_RETRY_DELAY", "1".into()),
        ]
    }

    pub fn start(&self, extra: &[(&'static str, &str)]) -> Running {
        self.start_in(testkit::tempdir(), extra)
    }

    /// Starts a node on an existing data directory (a restart).
    pub fn start_in(&self, data: tempfile::TempDir, extra: &[(&'static str, &str)]) -> Running {
        let mut env = self.node_env();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k, (*v).to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Running::start_in(data, None, &env)
    }
}

pub fn program(name: &str, image: &Image, mem: u64, cpus: u64) -> ProgramMetadata {
    let mut meta = ProgramMetadata {
        name: name.into(),
        hash: Hash([0; 32]),
        image_file_name: format!("{name}.img"),
        image_file_url: image.url.clone(),
        image_file_checksum: image.checksum.clone(),
        resource_requirements: Some(ResourceRequest { mem, cpus, gpus: 0 }),
    };
    meta.hash = meta.compute_hash();
    meta
}

pub fn deploy(
    key: &SecretKey,
    name: &str,
    prover: ProgramMetadata,
    verifier: ProgramMetadata,
) -> Transaction {
    Transaction::new_signed(
        Payload::Deploy {
            name: name.into(),
            prover,
            verifier,
        },
        nonce(),
        key,
    )
}

pub fn run(key: &SecretKey, steps: Vec<WorkflowStep>) -> Transaction {
    Transaction::new_signed(
        Payload::Run {
            workflow: Workflow { steps },
        },
        nonce(),
        key,
    )
}

/// A Run of `prover` (with `args` and `inputs`) whose proof `verifier` checks.
pub fn prove_and_verify(
    key: &SecretKey,
    prover: &ProgramMetadata,
    verifier: &ProgramMetadata,
    args: &[&str],
    inputs: Vec<ProgramData>,
) -> Transaction {
    run(
        key,
        vec![
            step(prover, args, inputs),
            step(
                verifier,
                &[],
                vec![output_of(prover, "/workspace/proof.dat")],
            ),
        ],
    )
}

pub fn nonce() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

pub fn step(program: &ProgramMetadata, args: &[&str], inputs: Vec<ProgramData>) -> WorkflowStep {
    WorkflowStep {
        program: program.hash,
        args: args.iter().map(|a| a.to_string()).collect(),
        inputs,
    }
}

pub fn input(name: &str, image: &Image) -> ProgramData {
    ProgramData::Input {
        file_name: name.into(),
        file_url: image.url.clone(),
        checksum: image.checksum.clone(),
    }
}

pub fn output_of(program: &ProgramMetadata, name: &str) -> ProgramData {
    ProgramData::Output {
        source_program: program.hash,
        file_name: name.into(),
    }
}

/// The original client's call: `sendTransaction` with the transaction's JSON input form.
pub async fn send_rpc(base: &str, tx: &Transaction) -> Value {
    rpc(base, "sendTransaction", json!([tx])).await
}

/// Sends `tx` with `sendTransaction` and checks that the node accepted it.
pub async fn accepted(base: &str, tx: &Transaction) {
    let r = send_rpc(base, tx).await;
    assert_eq!(r["result"], json!({"Ok": null}), "{r}");
}

pub async fn rpc(base: &str, method: &str, params: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

pub async fn get(url: &str) -> Value {
    get_known(url)
        .await
        .unwrap_or_else(|| panic!("{url}: 404 Not Found"))
}

/// GETs `url` as JSON; `None` while the node answers 404 (it has not learnt of the thing yet).
pub async fn get_known(url: &str) -> Option<Value> {
    let r = reqwest::get(url).await.expect("get");
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    assert!(r.status().is_success(), "{url}: {}", r.status());
    Some(r.json().await.expect("json"))
}

/// The tasks of `hash` from the REST status (none while the node has not heard of `hash`).
pub async fn tasks(base: &str, hash: &Hash) -> Vec<Value> {
    get_known(&format!("{base}/api/v1/transactions/{hash}/status"))
        .await
        .and_then(|s| s["tasks"].as_array().cloned())
        .unwrap_or_default()
}

/// Waits until the REST status of the Run `hash` shows a placement for which `check` holds, and
/// returns it.
pub async fn wait_placement(
    base: &str,
    hash: &Hash,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        // A node that has not heard of the Run yet shows no placement.
        let p = get_known(&format!("{base}/api/v1/transactions/{hash}/status"))
            .await
            .map_or(Value::Null, |s| s["placement"].clone());
        if check(&p) {
            return p;
        }
        assert!(
            start.elapsed() < timeout,
            "the placement is not as expected within {timeout:?}: {p}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `check` holds for the tasks of `hash`, failing with the last tasks seen.
pub async fn wait_tasks(
    base: &str,
    hash: &Hash,
    timeout: Duration,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let t = tasks(base, hash).await;
        if check(&t) {
            return t;
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: not within {timeout:?}; tasks: {}",
            serde_json::to_string_pretty(&t).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the pipeline has planned the Run `hash` (hex): it creates all of a Run's tasks in
/// one database transaction, so once one is visible, all are.
pub async fn wait_planned(base: &str, hash: &str) {
    let hash = Hash::from_hex(hash).expect("a transaction hash");
    wait_tasks(
        base,
        &hash,
        Duration::from_secs(30),
        "the Run is planned",
        |t| !t.is_empty(),
    )
    .await;
}

/// Waits (at most `secs`) until every task of `hash` has ended, and returns them.
pub async fn all_end(base: &str, hash: &Hash, secs: u64) -> Vec<Value> {
    wait_tasks(
        base,
        hash,
        Duration::from_secs(secs),
        "the tasks end",
        all_ended,
    )
    .await
}

pub fn phases(tasks: &[Value]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| t["phase"].as_str().unwrap_or("").to_string())
        .collect()
}

pub fn all_ended(tasks: &[Value]) -> bool {
    !tasks.is_empty()
        && phases(tasks)
            .iter()
            .all(|p| ["succeeded", "failed", "cancelled", "timed_out"].contains(&p.as_str()))
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

/// Downloads `url` and returns the BLAKE3 of its content.
pub async fn blake3_of(url: &str) -> String {
    let r = reqwest::get(url).await.expect("download");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    blake3::hash(&r.bytes().await.expect("body"))
        .to_hex()
        .to_string()
}
