//! The original client's network commands, with its flags, defaults, JSON task format and
//! output: `deploy`, `exec`, `get-tx`, `print-tx-tree`. They use the node's original JSON-RPC
//! methods (`sendTransaction`, `getTransaction`, `getTransactionTree`), so they work against any
//! Gevulot node. Unlike the original, a failure goes to standard error with a non-zero exit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use app::crypto::SecretKey;
use app::tx::rpc::TransactionTree;
use app::tx::{
    Hash, Payload, ProgramData, ProgramMetadata, ResourceRequest, Transaction, Workflow,
    WorkflowStep,
};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::rpc_params;
use serde::Deserialize;
use serde_json::Value;

use crate::node::Connection;
use crate::serve::FileServer;

/// One program of `deploy`: a local image file, or an image's checksum with its URL.
#[derive(Debug, Clone, Default)]
pub struct ProgramArgs {
    /// A file path, or (when no such file exists) the image's BLAKE3 checksum.
    pub image: String,
    pub name: Option<String>,
    pub url: Option<String>,
    pub cpus: Option<u64>,
    pub mem: Option<u64>,
    pub gpus: Option<u64>,
}

/// The original's rule: resources are named only when a flag sets one; the others default.
pub fn resource_requirements(
    cpus: Option<u64>,
    mem: Option<u64>,
    gpus: Option<u64>,
) -> Option<ResourceRequest> {
    if cpus.is_none() && mem.is_none() && gpus.is_none() {
        return None;
    }
    let default = ResourceRequest::default();
    Some(ResourceRequest {
        cpus: cpus.unwrap_or(default.cpus),
        mem: mem.unwrap_or(default.mem),
        gpus: gpus.unwrap_or(default.gpus),
    })
}

fn blake3_hex(path: &Path) -> anyhow::Result<String> {
    crate::blake3_file(path)
}

/// A nonce no earlier transaction of this client used (the original always sent 0, so the
/// same command twice was the same transaction).
fn nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn program(
    args: &ProgramArgs,
    role: &str,
    server: &mut FileServer,
) -> anyhow::Result<ProgramMetadata> {
    let local = Path::new(&args.image);
    let (checksum, url, file_name) = if local.is_file() {
        let checksum = blake3_hex(local)?;
        let file_name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("the image path names no file")?;
        let url = match &args.url {
            Some(url) => url.clone(),
            None => server.add(&std::fs::canonicalize(local)?)?,
        };
        (checksum, url, file_name)
    } else {
        let Some(url) = &args.url else {
            bail!(
                "{role} {:?} is no file here, so it is taken as the image's checksum, and then \
                 --{role}imgurl must say where the node downloads it",
                args.image
            );
        };
        let file_name = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .with_context(|| format!("--{role}imgurl {url:?} ends in no file name"))?
            .to_string();
        (args.image.to_ascii_lowercase(), url.clone(), file_name)
    };
    let mut meta = ProgramMetadata {
        name: args.name.clone().unwrap_or_else(|| file_name.clone()),
        hash: Hash([0; 32]),
        image_file_name: file_name,
        image_file_url: url,
        image_file_checksum: checksum,
        resource_requirements: resource_requirements(args.cpus, args.mem, args.gpus),
    };
    meta.hash = meta.compute_hash();
    Ok(meta)
}

/// Sends `tx` with `sendTransaction`, then reads it back with `getTransaction`.
async fn send(c: &Connection, tx: &Transaction) -> anyhow::Result<()> {
    let client = c.client()?;
    let answer: Value = client
        .request("sendTransaction", rpc_params![tx])
        .await
        .map_err(|e| crate::node::failed(&c.url, e))?;
    if let Some(err) = answer.get("Err") {
        bail!("the node refused the transaction: {}", text(err));
    }
    let stored = get_transaction(c, &tx.hash).await?;
    if stored["hash"].as_str() != Some(tx.hash.to_hex().as_str()) {
        bail!("the node accepted {} but does not return it", tx.hash);
    }
    Ok(())
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// `getTransaction`'s `Ok` value.
pub async fn get_transaction(c: &Connection, hash: &Hash) -> anyhow::Result<Value> {
    let answer: Value = c
        .client()?
        .request("getTransaction", rpc_params![hash.0])
        .await
        .map_err(|e| crate::node::failed(&c.url, e))?;
    match (answer.get("Ok"), answer.get("Err")) {
        (Some(tx), _) => Ok(tx.clone()),
        (None, Some(err)) => bail!("{}", text(err)),
        _ => bail!("the node answered something else than a transaction: {answer}"),
    }
}

pub async fn get_tree(c: &Connection, hash: &Hash) -> anyhow::Result<TransactionTree> {
    let answer: Value = c
        .client()?
        .request("getTransactionTree", rpc_params![hash.0])
        .await
        .map_err(|e| crate::node::failed(&c.url, e))?;
    match (answer.get("Ok"), answer.get("Err")) {
        (Some(tree), _) => serde_json::from_value(tree.clone())
            .with_context(|| format!("the node's tree is not the original's shape: {tree}")),
        (None, Some(err)) => bail!("{}", text(err)),
        _ => bail!("the node answered something else than a tree: {answer}"),
    }
}

/// The original's tree print: `Root: h`, then `Node: h` and `Leaf: h` indented by tabs.
pub fn tree_lines(tree: &TransactionTree, depth: usize, out: &mut Vec<String>) {
    let tabs = "\t".repeat(depth);
    match tree {
        TransactionTree::Root { children, hash } => {
            out.push(format!("Root: {hash}"));
            children.iter().for_each(|c| tree_lines(c, depth + 1, out));
        }
        TransactionTree::Node { children, hash } => {
            out.push(format!("{tabs}Node: {hash}"));
            children.iter().for_each(|c| tree_lines(c, depth + 1, out));
        }
        TransactionTree::Leaf { hash } => out.push(format!("{tabs}Leaf: {hash}")),
    }
}

/// Serves what `server` holds until the node has it; warns about files it never fetched.
async fn deliver(server: FileServer) {
    let missed = server.serve().await;
    for path in missed {
        eprintln!(
            "warning: the node did not download {} within {} s of asking; it stays unavailable \
             to the node unless served elsewhere",
            path.display(),
            crate::serve::IDLE.as_secs()
        );
    }
}

/// The Deploy the original client builds for these programs (local images added to `server`).
pub fn deploy_tx(
    key: &SecretKey,
    name: String,
    prover: &ProgramArgs,
    verifier: &ProgramArgs,
    server: &mut FileServer,
    nonce: u64,
) -> anyhow::Result<Transaction> {
    let prover = program(prover, "prover", server)?;
    let verifier = program(verifier, "verifier", server)?;
    Ok(Transaction::new_signed(
        Payload::Deploy {
            name,
            prover,
            verifier,
        },
        nonce,
        key,
    ))
}

/// With `--upload`: a local image is uploaded to the node, whose URL the program then names.
async fn uploaded(c: &Connection, args: &ProgramArgs) -> anyhow::Result<ProgramArgs> {
    let local = Path::new(&args.image);
    if args.url.is_some() || !local.is_file() {
        return Ok(args.clone());
    }
    let (_, url) = crate::transfer::upload(c, local).await?;
    Ok(ProgramArgs {
        url: Some(url),
        ..args.clone()
    })
}

/// `deploy`: (tx, prover, verifier) hashes. Local images are served from `listen`, or
/// uploaded to the node with `upload`.
pub async fn deploy(
    c: &Connection,
    key: &SecretKey,
    name: String,
    (prover, verifier): (&ProgramArgs, &ProgramArgs),
    listen: SocketAddr,
    upload: bool,
) -> anyhow::Result<(Hash, Hash, Hash)> {
    let (prover, verifier) = if upload {
        (uploaded(c, prover).await?, uploaded(c, verifier).await?)
    } else {
        (prover.clone(), verifier.clone())
    };
    let mut server = FileServer::new(listen);
    let tx = deploy_tx(key, name, &prover, &verifier, &mut server, nonce())?;
    let Payload::Deploy {
        prover, verifier, ..
    } = &tx.payload
    else {
        bail!("a Deploy was built as something else");
    };
    let (p, v) = (prover.hash, verifier.hash);
    send(c, &tx).await?;
    deliver(server).await;
    Ok((tx.hash, p, v))
}

/// One task of `exec --tasks`, the original's JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskJson {
    program: String,
    #[serde(default)]
    cmd_args: Vec<ArgJson>,
    #[serde(default)]
    inputs: Vec<InputJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgJson {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
enum InputJson {
    Input {
        /// A local file, or the checksum when `file_url` is given.
        local_path: String,
        vm_path: String,
        #[serde(default)]
        file_url: Option<String>,
    },
    Output {
        source_program: String,
        file_name: String,
    },
}

fn hash_of(field: &str, text: &str) -> anyhow::Result<Hash> {
    Hash::from_hex(text.trim())
        .with_context(|| format!("{field} {text:?} is not a hash (64 hexadecimal characters)"))
}

/// The Run's steps from the original's task JSON; local inputs are added to `server`.
pub fn steps(tasks: &str, server: &mut FileServer) -> anyhow::Result<Vec<WorkflowStep>> {
    let tasks: Vec<TaskJson> = serde_json::from_str(tasks).context(
        "--tasks is not the task JSON: [{\"program\": hash, \"cmd_args\": [{\"name\", \"value\"}], \
         \"inputs\": [{\"Input\": {\"local_path\", \"vm_path\", \"file_url\"?}} | \
         {\"Output\": {\"source_program\", \"file_name\"}}]}]",
    )?;
    if tasks.is_empty() {
        bail!("--tasks names no task");
    }
    tasks
        .into_iter()
        .map(|t| {
            let inputs = t
                .inputs
                .into_iter()
                .map(|i| match i {
                    InputJson::Input {
                        local_path,
                        vm_path,
                        file_url: Some(url),
                    } => Ok(ProgramData::Input {
                        file_name: vm_path,
                        file_url: url,
                        checksum: local_path.trim().to_ascii_lowercase(),
                    }),
                    InputJson::Input {
                        local_path,
                        vm_path,
                        file_url: None,
                    } => {
                        let path = PathBuf::from(&local_path);
                        let full = std::fs::canonicalize(&path)
                            .with_context(|| format!("input {local_path:?} is no file here"))?;
                        Ok(ProgramData::Input {
                            file_name: vm_path,
                            checksum: blake3_hex(&full)?,
                            file_url: server.add(&full)?,
                        })
                    }
                    InputJson::Output {
                        source_program,
                        file_name,
                    } => Ok(ProgramData::Output {
                        source_program: hash_of("source_program", &source_program)?,
                        file_name,
                    }),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(WorkflowStep {
                program: hash_of("program", &t.program)?,
                // The original flattened to [name, value, …] and dropped empty strings.
                args: t
                    .cmd_args
                    .into_iter()
                    .flat_map(|a| [a.name, a.value])
                    .filter(|s| !s.is_empty())
                    .collect(),
                inputs,
            })
        })
        .collect()
}

/// The Run the original client builds for the task JSON (local inputs added to `server`).
pub fn run_tx(
    key: &SecretKey,
    tasks: &str,
    server: &mut FileServer,
    nonce: u64,
) -> anyhow::Result<Transaction> {
    let steps = steps(tasks, server)?;
    Ok(Transaction::new_signed(
        Payload::Run {
            workflow: Workflow { steps },
        },
        nonce,
        key,
    ))
}

/// With `--upload`: each local input is uploaded, and the task JSON names its URL instead.
async fn upload_inputs(c: &Connection, tasks: &str) -> anyhow::Result<String> {
    let mut tasks: Value = serde_json::from_str(tasks).context("--tasks is not JSON")?;
    for task in tasks.as_array_mut().into_iter().flatten() {
        for input in task["inputs"].as_array_mut().into_iter().flatten() {
            let Some(spec) = input.get_mut("Input").and_then(Value::as_object_mut) else {
                continue;
            };
            if spec.get("file_url").is_some_and(|u| !u.is_null()) {
                continue;
            }
            let Some(local) = spec.get("local_path").and_then(Value::as_str) else {
                continue;
            };
            let (checksum, url) = crate::transfer::upload(c, Path::new(local)).await?;
            spec.insert("local_path".into(), Value::String(checksum));
            spec.insert("file_url".into(), Value::String(url));
        }
    }
    Ok(tasks.to_string())
}

/// `exec`: the Run's hash. Local inputs are served from `listen`, or uploaded with `upload`.
pub async fn exec(
    c: &Connection,
    key: &SecretKey,
    tasks: &str,
    listen: SocketAddr,
    upload: bool,
) -> anyhow::Result<Hash> {
    let tasks = if upload {
        upload_inputs(c, tasks).await?
    } else {
        tasks.to_string()
    };
    let mut server = FileServer::new(listen);
    let tx = run_tx(key, &tasks, &mut server, nonce())?;
    send(c, &tx).await?;
    deliver(server).await;
    Ok(tx.hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_named_only_when_a_flag_sets_one() {
        assert_eq!(resource_requirements(None, None, None), None);
        let only_mem = resource_requirements(None, Some(24576), None).expect("set");
        assert_eq!(
            (only_mem.cpus, only_mem.mem, only_mem.gpus),
            (ResourceRequest::default().cpus, 24576, 0)
        );
    }

    #[test]
    fn the_original_task_json() {
        let dir = testkit::tempdir();
        let local = dir.path().join("witness.txt");
        std::fs::write(&local, b"witness").expect("write");
        let (p, v) = ("11".repeat(32), "22".repeat(32));
        let tasks = serde_json::json!([
            {"program": p, "cmd_args": [{"name": "--nonce", "value": "42"}, {"name": "-v", "value": ""}],
             "inputs": [
                {"Input": {"local_path": local, "vm_path": "/workspace/witness.txt"}},
                {"Input": {"local_path": "AB".repeat(32), "vm_path": "/workspace/big.bin", "file_url": "https://files.example/big.bin"}}
             ]},
            {"program": v, "inputs": [{"Output": {"source_program": p, "file_name": "/workspace/proof.dat"}}]}
        ])
        .to_string();
        let mut server = FileServer::new("127.0.0.1:0".parse().expect("addr"));
        let steps = steps(&tasks, &mut server).expect("steps");
        assert_eq!(
            steps[0].args,
            ["--nonce", "42", "-v"],
            "empty strings dropped"
        );
        let ProgramData::Input {
            file_url,
            checksum,
            file_name,
        } = &steps[0].inputs[0]
        else {
            panic!("an input");
        };
        assert_eq!(file_name, "/workspace/witness.txt");
        assert_eq!(checksum, &blake3::hash(b"witness").to_hex().to_string());
        assert!(
            file_url.starts_with("http://127.0.0.1:"),
            "served: {file_url}"
        );
        assert!(matches!(&steps[0].inputs[1],
            ProgramData::Input { checksum, file_url, .. } if checksum == &"ab".repeat(32) && file_url == "https://files.example/big.bin"));
        assert!(
            matches!(&steps[1].inputs[0], ProgramData::Output { source_program, .. } if source_program.to_hex() == p)
        );
        for bad in [
            "{}",
            "[]",
            "[{\"program\": \"zz\"}]",
            "[{\"program\": \"11\", \"extra\": 1}]",
        ] {
            assert!(super::steps(bad, &mut server).is_err(), "{bad}");
        }
    }

    /// For the same inputs and nonce, the same bytes the original client sent (its own library
    /// made these vectors): the Deploy and the Run, as `sendTransaction`'s parameters.
    #[test]
    fn the_same_transactions_as_the_original() {
        let key_of = |v: &serde_json::Value| {
            let bytes = hex::decode(v["secret_key_hex"].as_str().expect("key")).expect("hex");
            SecretKey::from_bytes(&bytes).expect("secret key")
        };
        let mut server = FileServer::new("127.0.0.1:0".parse().expect("addr"));
        let v = testkit::vector("deploy");
        let prover = ProgramArgs {
            image: "0ddc0ec8a19228be949b9a8f224599478c6662a7910eb4fab802f1dd93fafd01".into(),
            name: Some("prover".into()),
            url: Some("http://127.0.0.1:8000/prover.img".into()),
            cpus: Some(1),
            mem: Some(512),
            gpus: None,
        };
        let verifier = ProgramArgs {
            image: "8feef5effd1ba59187a642e77a78063d7ca12861a3c6f1f5a6119e72b597c2b5".into(),
            name: Some("verifier".into()),
            url: Some("http://127.0.0.1:8000/verifier.img".into()),
            ..ProgramArgs::default()
        };
        let nonce = v["nonce"].as_u64().expect("nonce");
        let tx = deploy_tx(
            &key_of(&v),
            "prover-bundle".into(),
            &prover,
            &verifier,
            &mut server,
            nonce,
        )
        .expect("deploy");
        assert_eq!(tx.hash.to_hex(), v["hash_hex"].as_str().expect("hash"));
        assert_eq!(
            serde_json::to_string(&[&tx]).expect("json"),
            v["send_transaction_params_json"].as_str().expect("params")
        );
        assert_eq!(
            serde_json::to_string(&[tx.hash.0]).expect("json"),
            v["get_transaction_params_json"].as_str().expect("params"),
            "getTransaction's parameter"
        );

        let v = testkit::vector("run");
        let (p, vr) = (
            "8e20b79028aca64928b5f335c1bcfd58dde6e4902845ecf20657591f8ac406e5",
            "70653c6a7b7629b5b82a86920216f29c49bd6b72b463699230eb6f6209b9984d",
        );
        let tasks = serde_json::json!([
            {"program": p, "cmd_args": [{"name": "--nonce", "value": "1"}],
             "inputs": [{"Input": {"local_path": "01b089f96aa80410b771e873888a4259d461dbf272b59191e6a116e69892d29e",
                                    "vm_path": "/workspace/in.txt", "file_url": "http://127.0.0.1:8000/in.txt"}}]},
            {"program": vr, "cmd_args": [],
             "inputs": [{"Output": {"source_program": p, "file_name": "/workspace/proof.dat"}}]}
        ])
        .to_string();
        let tx = run_tx(
            &key_of(&v),
            &tasks,
            &mut server,
            v["nonce"].as_u64().expect("nonce"),
        )
        .expect("run");
        assert_eq!(tx.hash.to_hex(), v["hash_hex"].as_str().expect("hash"));
        assert_eq!(
            serde_json::to_string(&[&tx]).expect("json"),
            v["send_transaction_params_json"].as_str().expect("params")
        );
    }
}
