//! `gevulot-cli`: the client command, with the original client's command names.
//!
//! Offline commands: `generate-key`, `show-public-key`, `calculate-hash`. The commands that talk
//! to a node (deploy, exec, get-tx, print-tx-tree) arrive with the node's APIs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use app::crypto::SecretKey;
use clap::{Parser, Subcommand};

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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::GenerateKey => {
            let key = SecretKey::generate_file(&cli.keyfile)?;
            println!("{}", key.public_key());
        }
        Command::ShowPublicKey => {
            println!("{}", SecretKey::read_file(&cli.keyfile)?.public_key());
        }
        Command::CalculateHash { file } => println!("{}", blake3_file(&file)?),
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
