//! What the server's benchmarks share: a real `gevulot run` process.

// Each benchmark uses only part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `gevulot run` process for a benchmark; killed when dropped.
pub struct NodeProcess {
    child: Child,
    /// `http://<main address>/`
    pub rpc: String,
    /// `http://<download server address>`
    pub files: String,
    /// `http://<metrics server address>`
    pub metrics: String,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, name: &str) -> Option<String> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    Some(line[at..].split(' ').next()?.trim_matches('"').to_string())
}

/// Starts `gevulot run` on `data` (SQLite there unless `db_url`) with `env` added, and waits
/// until it is ready.
pub fn start_node(
    data: &std::path::Path,
    db_url: Option<&str>,
    env: &[(&str, &str)],
) -> anyhow::Result<NodeProcess> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gevulot"));
    cmd.arg("run")
        .env("GEVULOT_DATA_DIRECTORY", data)
        .env("GEVULOT_JSON_RPC_LISTEN_ADDR", "127.0.0.1:0")
        .env("GEVULOT_HTTP_PORT", "0")
        .env("GEVULOT_P2P_LISTEN_ADDR", "127.0.0.1:0")
        .env("GEVULOT_HEALTHCHECK_LISTEN_ADDR", "127.0.0.1:0")
        .env("GEVULOT_METRICS_LISTEN_ADDR", "127.0.0.1:0")
        .env("GEVULOT_PSK_PASSPHRASE", "bench")
        // One load generator is one client address: the front doors' limits would measure
        // themselves.
        .env("GEVULOT_RATE_LIMIT", "0")
        .env("GEVULOT_CONCURRENCY_LIMIT", "0")
        .env("GEVULOT_FILES_RATE_LIMIT", "0")
        .env("GEVULOT_FILES_CONCURRENCY_LIMIT", "0")
        .env("RUST_LOG", "warn,gevulot=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(url) = db_url {
        cmd.env("GEVULOT_DB_URL", url);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let ready = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("the node exited before it was ready"))??;
        if line.contains("node ready") {
            break line;
        }
    };
    // Keep draining the log so the node never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let rpc = format!(
        "http://{}/",
        field(&ready, "json_rpc_listen_addr").ok_or_else(|| anyhow::anyhow!("no address"))?
    );
    let files = format!(
        "http://{}",
        field(&ready, "files_listen_addr").ok_or_else(|| anyhow::anyhow!("no address"))?
    );
    let metrics = format!(
        "http://{}",
        field(&ready, "metrics_listen_addr").ok_or_else(|| anyhow::anyhow!("no address"))?
    );
    Ok(NodeProcess {
        child,
        rpc,
        files,
        metrics,
    })
}
