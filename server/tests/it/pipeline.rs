//! The prover pipeline end to end: a real `gevulot run`, program images built from the VM
//! fixtures and served over HTTP by the test, real VMs under TCG with the hybrid vsock, and the
//! results read back through JSON-RPC, REST and the file server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use app::tx::{
    Hash, Payload, ProgramData, ProgramMetadata, ResourceRequest, Transaction, Workflow,
    WorkflowStep,
};
use serde_json::{Value, json};

use crate::process::Running;

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
        let app = axum::Router::new().route(
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
        let mut env = self.node_env();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k, (*v).to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Running::start_with(None, &env)
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

fn nonce() -> u64 {
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
    let r = reqwest::get(url).await.expect("get");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.expect("json")
}

/// The tasks of `hash` from the REST status.
pub async fn tasks(base: &str, hash: &Hash) -> Vec<Value> {
    get(&format!("{base}/api/v1/transactions/{hash}/status")).await["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
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

/// Downloads `url` and returns the BLAKE3 of its content.
async fn blake3_of(url: &str) -> String {
    let r = reqwest::get(url).await.expect("download");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    blake3::hash(&r.bytes().await.expect("body"))
        .to_hex()
        .to_string()
}

#[tokio::test]
async fn json_rpc_run_yields_a_verified_proof_with_downloadable_output() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let data = lab.serve("in.txt", b"the witness".to_vec());
    let node = lab.start(&[]);
    let user = SecretKey::generate().expect("key");
    let prover = program("prover", &prover_img, 512, 1);
    let verifier = program("verifier", &verifier_img, 512, 1);
    let d = deploy(&user, "test", prover.clone(), verifier.clone());
    let r = send_rpc(&node.base, &d).await;
    assert_eq!(r["result"], json!({"Ok": null}), "{r}");
    let run_tx = run(
        &user,
        vec![
            step(
                &prover,
                &["--nonce", "1"],
                vec![input("/workspace/in.txt", &data)],
            ),
            step(
                &verifier,
                &[],
                vec![output_of(&prover, "/workspace/proof.dat")],
            ),
        ],
    );
    let r = send_rpc(&node.base, &run_tx).await;
    assert_eq!(r["result"], json!({"Ok": null}), "{r}");

    let done = wait_tasks(
        &node.base,
        &run_tx.hash,
        Duration::from_secs(240),
        "the run ends",
        all_ended,
    )
    .await;
    assert_eq!(phases(&done), ["succeeded", "succeeded"], "{done:?}");
    assert_eq!(done[0]["kind"], "proof");
    assert_eq!(done[1]["kind"], "verification");
    assert_eq!(done[0]["attempt"], 1);

    // The original tree method: Run → Proof → Verification.
    let tree = rpc(&node.base, "getTransactionTree", json!([run_tx.hash])).await;
    let root = &tree["result"]["Ok"]["Root"];
    let proof_node = &root["children"][0]["Node"];
    assert!(proof_node.is_object(), "{tree}");
    let proof_hash =
        Hash(serde_json::from_value::<[u8; 32]>(proof_node["hash"].clone()).expect("proof hash"));
    assert!(proof_node["children"][0]["Leaf"].is_object(), "{tree}");

    // The Proof, signed by the node, with the proof bytes and an output file to download.
    let proof = rpc(&node.base, "getTransaction", json!([proof_hash])).await;
    let proof = &proof["result"]["Ok"];
    let info = rpc(&node.base, "gevulot_nodeInfo", json!([])).await;
    assert_eq!(proof["author"], info["result"]["public_key"], "{proof}");
    let payload = &proof["payload"]["Proof"];
    assert_eq!(payload["parent"], run_tx.hash.to_hex());
    assert_eq!(payload["prover"], prover.hash.to_hex());
    let file = &payload["files"][0];
    assert_eq!(file["vm_path"], "/workspace/proof.dat");
    let url = file["url"].as_str().expect("url");
    assert!(url.starts_with(&node.file_base_url), "{url}");
    assert_eq!(
        blake3_of(url).await,
        file["checksum"].as_str().expect("checksum")
    );
    // The proof names the input it was made from.
    let proof_bytes = base64_decode(payload["proof"].as_str().expect("proof"));
    let expected = format!("proof:{}:--nonce 1", blake3::hash(b"the witness").to_hex());
    assert_eq!(String::from_utf8_lossy(&proof_bytes), expected);
    // The image and the input are served at the original's paths, as peers ask for them.
    let files = format!("http://{}", node.files);
    assert_eq!(
        blake3_of(&format!("{files}/images/{}/prover.img", prover.hash)).await,
        prover_img.checksum
    );
    assert_eq!(
        blake3_of(&format!("{files}/txfiles/{}/workspace/in.txt", run_tx.hash)).await,
        data.checksum
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}
