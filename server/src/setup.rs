//! Set-up shared by `gevulot run` and the operator commands: the database, the node key, what
//! the host offers.

use std::path::Path;

use anyhow::Context;
use app::crypto::SecretKey;
use app::store::{PoolOptions, Store, redact_url};
use tracing::info;

use crate::config::{DbArgs, Secret};

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
    info!(target: "gevulot", database = %shown, backend = store.backend().as_str(), "database schema is up to date");
    Ok(store)
}

/// Loads the node key, creating it (mode 0600) on first run.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<SecretKey> {
    if path.exists() {
        return Ok(SecretKey::read_file(path)?);
    }
    let key = SecretKey::generate_file(path)?;
    info!(target: "gevulot", key_file = %path.display(), public_key = %key.public_key(), "created a new node key");
    Ok(key)
}

pub fn host_cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Total memory from /proc/meminfo, in MiB (0 when unknown).
pub fn host_mem_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

/// A node on an in-memory database, without network or execution: for unit tests of the server.
#[cfg(test)]
pub async fn lone_node() -> anyhow::Result<app::node::Node> {
    let store = Store::connect("sqlite::memory:", &PoolOptions::default()).await?;
    store.migrate().await?;
    Ok(app::node::Node::start(app::node::Config {
        data: app::data_dir::DataDir::new(std::env::temp_dir()),
        store,
        key: SecretKey::from_bytes(&[1; 32])?,
        limits: Default::default(),
        acl: app::node::AclPolicy::Open,
        acl_whitelist_url: None,
        p2p: None,
        file_base_url: "http://127.0.0.1:9995".into(),
        resources: app::node::Resources {
            cpus: 1,
            mem_mib: 1,
            gpu_devices: vec![],
            execution: false,
            min_free_bytes: 0,
        },
        sysfs_root: "/".into(),
        max_upload_bytes: 1 << 20,
        session_ttl: app::auth::DEFAULT_SESSION_TTL,
        placement_redundancy: 1,
        webhooks: Default::default(),
        execution: None,
        observer: None,
    })
    .await?)
}
