//! `gevulot-cli`: the client command, with the original client's command names.
//!
//! Offline commands: `generate-key`, `show-public-key`, `calculate-hash`. Commands that ask a node
//! (`info`, `status`, `list`, `peers`) call its `gevulot_*` JSON-RPC methods through the client
//! generated from `api::rpc::Gevulot` (`node.rs`); `--json` prints the node's answer as JSON for
//! scripts. The original client's network commands (deploy, exec, get-tx, print-tx-tree) are
//! still to come.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use app::crypto::SecretKey;
use clap::{Parser, Subcommand};

mod node;

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
    ShowPublicKey,
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
    /// The node's peer network (needs an API token: `--token` or `GEVULOT_API_TOKEN`).
    Peers,
}

fn blake3_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the client's runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let c = &cli.connection;
    match cli.command {
        Command::GenerateKey => {
            let key = SecretKey::generate_file(&cli.keyfile)?;
            println!("{}", key.public_key());
        }
        Command::ShowPublicKey => {
            println!("{}", SecretKey::read_file(&cli.keyfile)?.public_key());
        }
        Command::CalculateHash { file } => println!("{}", blake3_file(&file)?),
        Command::Info => show(
            cli.json,
            &runtime()?.block_on(node::info(c))?,
            node::print_info,
        )?,
        Command::Status { hash } => show(
            cli.json,
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
                cli.json,
                &runtime()?.block_on(node::list(c, query))?,
                node::print_page,
            )?;
        }
        Command::Peers => show(
            cli.json,
            &runtime()?.block_on(node::peers(c))?,
            node::print_peers,
        )?,
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
