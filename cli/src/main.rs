//! `gevulot-cli`: the client command, with the original client's command names.
//!
//! Offline commands: `generate-key`, `show-public-key`, `calculate-hash`. The original client's
//! network commands (`deploy`, `exec`, `get-tx`, `print-tx-tree`, in `original.rs`, serving local
//! files from `serve.rs`) keep its flags, defaults, task JSON and output, over the original
//! JSON-RPC methods. Commands that ask a node more (`info`, `status`, `list`, `peers`) call its
//! `gevulot_*` methods through the client generated from `api::rpc::Gevulot` (`node.rs`);
//! `follow` watches a Run live (`follow.rs`), `download` fetches its output files and
//! `--upload` sends local files through the node's REST upload (`transfer.rs`). `--json` prints
//! every command's answer as JSON for scripts. Exit status: 0 done, 1 refused or failed,
//! 2 usage, 3 the node cannot be reached, 4 the followed Run (or Deploy) failed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use app::crypto::SecretKey;
use clap::{Parser, Subcommand};

mod follow;
mod node;
mod original;
mod serve;
mod transfer;

#[derive(Debug, Parser)]
#[command(
    name = "gevulot-cli",
    version,
    about = "Client for a Gevulot prover node."
)]
struct Cli {
    /// The client's key file (32 raw bytes).
    #[arg(
        short = 'k',
        long = "keyfile",
        global = true,
        env = "GEVULOT_CLI_KEYFILE",
        default_value = "localkey.pki"
    )]
    keyfile: PathBuf,
    #[command(flatten)]
    connection: node::Connection,
    /// Print answers from the node as JSON (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new key file (refuses to overwrite) and print its public key.
    GenerateKey,
    /// Print the public key of the key file (130 hex characters).
    #[command(alias = "print-public-key")]
    ShowPublicKey,
    /// Deploy a prover and a verifier. A local image file is served to the node from a
    /// temporary HTTP server (--listen-addr) until the node has it.
    #[command(arg_required_else_help = true)]
    Deploy {
        /// The deployment's name.
        #[arg(short = 'n', long)]
        name: String,
        /// The prover's image file, or its BLAKE3 checksum (then --proverimgurl is needed).
        #[arg(short = 'p', long)]
        prover: String,
        /// The verifier's image file, or its BLAKE3 checksum (then --verifierimgurl is needed).
        #[arg(short = 'v', long)]
        verifier: String,
        /// The prover's name (default: its image's file name).
        #[arg(long = "provername")]
        prover_name: Option<String>,
        /// The verifier's name (default: its image's file name).
        #[arg(long = "verifiername")]
        verifier_name: Option<String>,
        /// Where the node downloads the prover's image (no local server for it then).
        #[arg(long = "proverimgurl")]
        prover_img_url: Option<String>,
        /// Where the node downloads the verifier's image.
        #[arg(long = "verifierimgurl")]
        verifier_img_url: Option<String>,
        /// CPUs for a proving task (resources left unset take the defaults: 2 CPUs, 2048 MiB,
        /// no GPU; none set: the node decides).
        #[arg(long = "provercpus")]
        prover_cpus: Option<u64>,
        /// Memory for a proving task, in MiB.
        #[arg(long = "provermem")]
        prover_mem: Option<u64>,
        /// GPUs for a proving task: 0 or 1.
        #[arg(long = "provergpus", value_parser = clap::value_parser!(u64).range(0..=1))]
        prover_gpus: Option<u64>,
        /// CPUs for a verifying task.
        #[arg(long = "verifiercpus")]
        verifier_cpus: Option<u64>,
        /// Memory for a verifying task, in MiB.
        #[arg(long = "verifiermem")]
        verifier_mem: Option<u64>,
        /// GPUs for a verifying task: 0 or 1.
        #[arg(long = "verifiergpus", value_parser = clap::value_parser!(u64).range(0..=1))]
        verifier_gpus: Option<u64>,
        /// Where the temporary server for local files listens (the node must reach it).
        #[arg(short = 'l', long = "listen-addr", default_value = "127.0.0.1:8080")]
        listen_addr: SocketAddr,
        /// Upload local images to the node (an operator's token) instead of serving them.
        #[arg(long)]
        upload: bool,
    },
    /// Run a workflow: the tasks, in order, in the original JSON format. Local input files are
    /// served to the node like deploy's images.
    ///
    /// [{"program": "<hash>", "cmd_args": [{"name": "--nonce", "value": "42"}],
    ///   "inputs": [{"Input": {"local_path": "witness.txt", "vm_path": "/workspace/witness.txt"}},
    ///              {"Output": {"source_program": "<hash>", "file_name": "/workspace/proof.dat"}}]}]
    ///
    /// With "file_url" in an Input, "local_path" is the file's BLAKE3 checksum.
    #[command(arg_required_else_help = true, verbatim_doc_comment)]
    Exec {
        /// The task array (JSON).
        #[arg(short = 't', long)]
        tasks: String,
        /// Where the temporary server for local files listens.
        #[arg(short = 'l', long = "listen-addr", default_value = "127.0.0.1:8080")]
        listen_addr: SocketAddr,
        /// Upload local inputs to the node (an operator's token) instead of serving them.
        #[arg(long)]
        upload: bool,
    },
    /// Show a Run's steps and phases live until it ends (a Deploy's images until both are
    /// fetched). Exit status 0 when it succeeded, 4 when it did not.
    #[command(arg_required_else_help = true)]
    Follow {
        /// The Run's (or Deploy's) hash.
        hash: String,
    },
    /// Fetch every output file of a Run's Proofs and Verifications into DIR/<transaction>/,
    /// resuming partial files and checking each file's BLAKE3.
    #[command(arg_required_else_help = true)]
    Download {
        /// The Run's hash (or any transaction of its tree).
        hash: String,
        /// Where the files go.
        #[arg(short = 'o', long = "output", default_value = ".")]
        output: PathBuf,
    },
    /// Print a Run's tree of Proofs and Verifications (getTransactionTree).
    #[command(arg_required_else_help = true)]
    PrintTxTree {
        /// The Run's hash.
        hash: String,
    },
    /// Print a transaction as JSON (getTransaction).
    #[command(arg_required_else_help = true)]
    GetTx {
        /// The transaction's hash.
        hash: String,
    },
    /// Print the BLAKE3 checksum of a file, as programs and inputs name them.
    CalculateHash {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// What the node is: version, key, database, uptime, whether it executes.
    Info,
    /// Where a transaction's execution stands: each task's phase, attempt and error.
    Status {
        /// The transaction's hash (64 hex characters).
        hash: String,
    },
    /// Transactions the node stored, newest first.
    List {
        /// Only this kind (`run`, `proof`, `verification`, `deploy`, …).
        #[arg(long)]
        kind: Option<String>,
        /// Only this author (hex public key).
        #[arg(long)]
        author: Option<String>,
        /// Only transactions with a task in this phase (`queued`, `running`, `failed`, …).
        #[arg(long)]
        status: Option<String>,
        /// Received at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// The cursor printed after the previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// Page size, 1 to 1000.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The node's peer network (needs an API token: `--token` or `GEVULOT_CLI_TOKEN`).
    Peers,
}

fn blake3_file(path: &Path) -> anyhow::Result<String> {
    let (checksum, _) = app::hash::Hash::blake3_of_file(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(checksum.to_hex())
}

/// Prints the node's answer: as JSON with `--json`, else with `human`.
fn show<T: serde::Serialize>(json: bool, answer: &T, human: fn(&T)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        human(answer);
    }
    Ok(())
}

fn parse_hash(text: &str) -> anyhow::Result<app::tx::Hash> {
    app::tx::Hash::from_hex(text.trim())
        .with_context(|| format!("{text:?} is not a hash (64 hexadecimal characters)"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the client's runtime")
}

/// Prints `value` as JSON when `json`, else `text`.
fn out(json: bool, value: serde_json::Value, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}

/// The followed transaction ended otherwise than it should (exit status 4).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RunFailed(String);

fn run(cli: Cli) -> anyhow::Result<()> {
    let c = &cli.connection;
    let json = cli.json;
    match cli.command {
        Command::GenerateKey => {
            let key = SecretKey::generate_file(&cli.keyfile)?;
            let public = key.public_key().to_string();
            out(
                json,
                serde_json::json!({"public_key": public, "key_file": cli.keyfile}),
                || public.clone(),
            )?;
        }
        Command::ShowPublicKey => {
            let public = SecretKey::read_file(&cli.keyfile)?.public_key().to_string();
            out(json, serde_json::json!({"public_key": public}), || {
                public.clone()
            })?;
        }
        Command::CalculateHash { file } => {
            let checksum = blake3_file(&file)?;
            out(json, serde_json::json!({"checksum": checksum}), || {
                checksum.clone()
            })?;
        }
        Command::Deploy {
            name,
            prover,
            verifier,
            prover_name,
            verifier_name,
            prover_img_url,
            verifier_img_url,
            prover_cpus,
            prover_mem,
            prover_gpus,
            verifier_cpus,
            verifier_mem,
            verifier_gpus,
            listen_addr,
            upload,
        } => {
            let key = SecretKey::read_file(&cli.keyfile)?;
            let prover = original::ProgramArgs {
                image: prover,
                name: prover_name,
                url: prover_img_url,
                cpus: prover_cpus,
                mem: prover_mem,
                gpus: prover_gpus,
            };
            let verifier = original::ProgramArgs {
                image: verifier,
                name: verifier_name,
                url: verifier_img_url,
                cpus: verifier_cpus,
                mem: verifier_mem,
                gpus: verifier_gpus,
            };
            if !json {
                println!("Start prover / verifier deployment");
            }
            let (tx, p, v) = runtime()?.block_on(original::deploy(
                c,
                &key,
                name,
                (&prover, &verifier),
                listen_addr,
                upload,
            ))?;
            out(
                json,
                serde_json::json!({"tx": tx.to_hex(), "prover": p.to_hex(), "verifier": v.to_hex()}),
                || {
                    format!(
                        "Prover / Verifier deployed correctly.\nProver hash:{p}\nVerifier hash:{v}.\nTx Hash:{tx}"
                    )
                },
            )?;
        }
        Command::Exec {
            tasks,
            listen_addr,
            upload,
        } => {
            let key = SecretKey::read_file(&cli.keyfile)?;
            let tx = runtime()?.block_on(original::exec(c, &key, &tasks, listen_addr, upload))?;
            out(json, serde_json::json!({"tx": tx.to_hex()}), || {
                format!("Programs send to execution correctly. Tx hash:{tx}")
            })?;
        }
        Command::PrintTxTree { hash } => {
            let hash = parse_hash(&hash)?;
            let tree = runtime()?.block_on(original::get_tree(c, &hash))?;
            let mut lines = Vec::new();
            original::tree_lines(&tree, 0, &mut lines);
            out(json, serde_json::to_value(&tree)?, || lines.join("\n"))?;
        }
        Command::GetTx { hash } => {
            let hash = parse_hash(&hash)?;
            let tx = runtime()?.block_on(original::get_transaction(c, &hash))?;
            println!("{}", serde_json::to_string(&tx)?);
        }
        Command::Follow { hash } => {
            let hash = parse_hash(&hash)?.to_hex();
            let (end, status) = runtime()?.block_on(follow::follow(c, &hash, json))?;
            match end {
                follow::Ended::Succeeded => {
                    if !json {
                        println!("{} {hash} succeeded", status.kind);
                    }
                }
                follow::Ended::Failed(why) => {
                    return Err(RunFailed(format!(
                        "{} {hash} did not succeed: {why}",
                        status.kind
                    ))
                    .into());
                }
            }
        }
        Command::Download { hash, output } => {
            let hash = parse_hash(&hash)?;
            let files = runtime()?.block_on(transfer::download(c, &hash, &output))?;
            out(json, serde_json::to_value(&files)?, || {
                if files.is_empty() {
                    return "no output files (yet): its Proofs and Verifications name none".into();
                }
                files
                    .iter()
                    .map(|f| {
                        format!(
                            "{}  {} bytes  BLAKE3 {}{}",
                            f.path.display(),
                            f.bytes,
                            f.checksum,
                            if f.already_here {
                                "  (already here)"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Command::Info => show(json, &runtime()?.block_on(node::info(c))?, node::print_info)?,
        Command::Status { hash } => show(
            json,
            &runtime()?.block_on(node::status(c, hash))?,
            node::print_status,
        )?,
        Command::List {
            kind,
            author,
            status,
            since,
            cursor,
            limit,
        } => {
            let query = api::dto::TransactionQuery {
                kind,
                author,
                status,
                since,
                cursor,
                limit: Some(limit),
                ..Default::default()
            };
            show(
                json,
                &runtime()?.block_on(node::list(c, query))?,
                node::print_page,
            )?;
        }
        Command::Peers => show(
            json,
            &runtime()?.block_on(node::peers(c))?,
            node::print_peers,
        )?,
    }
    Ok(())
}

/// The exit status for a failure: 3 the node cannot be reached, 4 a followed Run failed, else 1.
fn status_of(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<node::Unreachable>().is_some() {
        3
    } else if e.downcast_ref::<RunFailed>().is_some() {
        4
    } else {
        1
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(status_of(&e))
        }
    }
}
