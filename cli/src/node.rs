//! Commands that ask a node, through the client generated from `api::rpc::Gevulot`.

use std::time::Duration;

use anyhow::Context;
use api::dto::{NodeInfo, PeerNetwork, TransactionPage, TransactionQuery, TransactionStatus};
use api::rpc::GevulotClient as _;
use jsonrpsee::core::ClientError;
use jsonrpsee::http_client::{HeaderMap, HttpClient, HttpClientBuilder};

/// Where the node is and how to talk to it (the global flags).
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The node's JSON-RPC URL (its REST API is on the same address).
    #[arg(
        short = 'j',
        long = "jsonurl",
        global = true,
        env = "GEVULOT_CLI_URL",
        default_value = "http://localhost:9944"
    )]
    pub url: String,
    /// Seconds to wait for each answer.
    #[arg(long = "rpctimeout", global = true, default_value_t = 60)]
    pub timeout_secs: u64,
    /// An API token of the node (for `peers` and `--upload`); never printed.
    #[arg(long, global = true, env = "GEVULOT_CLI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The node could not be reached (exit status 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

impl Connection {
    /// The node's address for REST (`http://host:port`, no trailing slash).
    pub fn base(&self) -> String {
        self.url.trim_end_matches('/').to_string()
    }

    /// A WebSocket client for subscriptions.
    pub(crate) async fn ws_client(&self) -> anyhow::Result<jsonrpsee::ws_client::WsClient> {
        let url = match self.url.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}"),
            Some((_, rest)) => format!("ws://{rest}"),
            None => format!("ws://{}", self.url),
        };
        jsonrpsee::ws_client::WsClientBuilder::default()
            .request_timeout(Duration::from_secs(self.timeout_secs))
            .build(&url)
            .await
            .map_err(|e| failed(&self.url, e))
    }

    pub(crate) fn client(&self) -> anyhow::Result<HttpClient> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .context("the API token has characters a header cannot carry")?;
            headers.insert("authorization", value);
        }
        HttpClientBuilder::default()
            .request_timeout(Duration::from_secs(self.timeout_secs))
            .set_headers(headers)
            .build(&self.url)
            .with_context(|| format!("{} is not a JSON-RPC URL", self.url))
    }
}

/// The node's words for a failed call, with its catalogue code.
pub(crate) fn failed(url: &str, e: ClientError) -> anyhow::Error {
    match &e {
        ClientError::Call(call) => match api::rpc::error_code(call) {
            Some(code) => anyhow::anyhow!("{} ({code})", call.message()),
            None => anyhow::anyhow!("{}", call.message()),
        },
        ClientError::Transport(_) | ClientError::RequestTimeout => {
            anyhow::Error::new(Unreachable(format!(
                "cannot reach the node at {url}: {e}; check -j/--jsonurl (GEVULOT_CLI_URL) and that the node runs"
            )))
        }
        _ => anyhow::Error::new(e),
    }
}

pub async fn info(c: &Connection) -> anyhow::Result<NodeInfo> {
    c.client()?.node_info().await.map_err(|e| failed(&c.url, e))
}

pub async fn status(c: &Connection, hash: String) -> anyhow::Result<TransactionStatus> {
    c.client()?
        .transaction_status(hash)
        .await
        .map_err(|e| failed(&c.url, e))
}

pub async fn list(c: &Connection, query: TransactionQuery) -> anyhow::Result<TransactionPage> {
    c.client()?
        .list_transactions(Some(query))
        .await
        .map_err(|e| failed(&c.url, e))
}

pub async fn peers(c: &Connection) -> anyhow::Result<PeerNetwork> {
    c.client()?.peers().await.map_err(|e| failed(&c.url, e))
}

/// `info` for people.
pub fn print_info(i: &NodeInfo) {
    println!("version       {}", i.version);
    println!("public key    {}", i.public_key);
    println!("database      {} {}", i.database, i.database_version);
    println!("started at    {} (up {} s)", i.started_at, i.uptime_seconds);
    println!("executes      {}", if i.execution { "yes" } else { "no" });
    println!("files from    {}", i.file_base_url);
    println!("transactions  {}", i.transactions);
}

/// `status` for people: one line per task, with why it failed or what it waits for.
pub fn print_status(s: &TransactionStatus) {
    println!("{} {}", s.kind, s.hash);
    if s.tasks.is_empty() {
        println!("  no tasks on this node");
    }
    for t in &s.tasks {
        print!(
            "  step {} {:<12} {:<22} attempt {}  program {}",
            t.step_index, t.kind, t.phase, t.attempt, t.program
        );
        if let Some(p) = &t.progress {
            print!(
                "  {} of {} bytes",
                p.received_bytes,
                p.total_bytes.map_or("?".into(), |t| t.to_string())
            );
        }
        println!();
        if let Some(e) = &t.error {
            println!("    {e}");
        }
    }
}

/// `list` for people: one line per transaction, and how to get the next page.
pub fn print_page(p: &TransactionPage) {
    for t in &p.items {
        println!("{}  {:<12} {}  {}", t.received_at, t.kind, t.hash, t.source);
    }
    if let Some(cursor) = &p.next_cursor {
        println!("more: --cursor {cursor}");
    }
}

/// `peers` for people.
pub fn print_peers(n: &PeerNetwork) {
    println!("peer id       {}", n.peer_id);
    println!("listens on    {}", n.listen_addr);
    println!(
        "whitelist     {} ({} keys)",
        n.acl.mode, n.acl.whitelisted_keys
    );
    if n.peers.is_empty() {
        println!("no peers connected");
    }
    for p in &n.peers {
        println!(
            "  {} {} {} since {}",
            p.peer_id, p.direction, p.address, p.connected_at
        );
    }
}
