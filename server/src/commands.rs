//! The operator commands other than `run`.

use anyhow::Context;
use app::crypto::{PublicKey, SecretKey};
use app::store::{PoolOptions, Store, redact_url};

use crate::config::{
    Command, DbArgs, GenerateCommand, KeyFileArgs, PeerAction, PeerArgs, Secret, ShowCommand,
};

pub async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => crate::node::run(*args).await,
        Command::Migrate(args) => migrate(&args).await,
        Command::Generate(GenerateCommand::Key(args)) => generate_key(&args),
        Command::Show(ShowCommand::PublicKey(args)) => show_public_key(&args),
        Command::Peer(args) => peer(&args).await,
        Command::Healthcheck(args) => {
            let report = crate::http::health::probe(args.healthcheck_listen_addr).await?;
            println!("{report}");
            Ok(())
        }
    }
}

/// Connects to the configured database and brings its schema up to date.
pub async fn open_store(args: &DbArgs) -> anyhow::Result<Store> {
    let url = args.resolve_url()?;
    connect(&url, args.db_max_connections).await
}

/// Connects to `url` and brings the schema up to date; errors show the URL without its password.
pub async fn connect(url: &Secret, max_connections: u32) -> anyhow::Result<Store> {
    let options = PoolOptions {
        max_connections,
        ..PoolOptions::default()
    };
    let shown = redact_url(url.expose());
    let store = Store::connect(url.expose(), &options)
        .await
        .with_context(|| format!("cannot connect to the database {shown}"))?;
    store
        .migrate()
        .await
        .with_context(|| format!("cannot migrate the database {shown}"))?;
    tracing::info!(target: "gevulot", database = %shown, backend = store.backend().as_str(), "database schema is up to date");
    Ok(store)
}

async fn migrate(args: &DbArgs) -> anyhow::Result<()> {
    let store = open_store(args).await?;
    println!(
        "database schema is up to date ({})",
        store.backend().as_str()
    );
    store.close().await;
    Ok(())
}

fn key_file(args: &KeyFileArgs) -> anyhow::Result<std::path::PathBuf> {
    match &args.key_file {
        Some(path) => Ok(path.clone()),
        None => Ok(crate::config::resolve_data_dir(&args.data)?
            .path
            .join("node.key")),
    }
}

fn generate_key(args: &KeyFileArgs) -> anyhow::Result<()> {
    let path = key_file(args)?;
    let key = SecretKey::generate_file(&path)?;
    eprintln!("created the node key {}", path.display());
    println!("{}", key.public_key().to_hex());
    Ok(())
}

fn show_public_key(args: &KeyFileArgs) -> anyhow::Result<()> {
    let path = key_file(args)?;
    let key = SecretKey::read_file(&path)?;
    println!("{}", key.public_key().to_hex());
    Ok(())
}

async fn peer(args: &PeerArgs) -> anyhow::Result<()> {
    let key = PublicKey::from_hex(args.key.trim())
        .with_context(|| format!("{:?} is not a public key", args.key))?;
    let store = open_store(&args.db).await?;
    let message = match args.action {
        PeerAction::Whitelist => {
            if store.acl_add(&key).await? {
                "whitelisted"
            } else {
                "already whitelisted"
            }
        }
        PeerAction::Deny => {
            if store.acl_remove(&key).await? {
                "removed from the whitelist"
            } else {
                "was not on the whitelist"
            }
        }
    };
    println!("{key}: {message}");
    store.close().await;
    Ok(())
}
