//! Wire types of the REST API and the new JSON-RPC methods: snake_case JSON, RFC 3339 times,
//! hashes and keys as lowercase hex. (The original JSON-RPC methods use the transaction model's
//! own forms from `app::tx`.)

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use app::model::{Page, Program, StoredTransaction, Task, TxFilter};
use app::tx::rpc::RpcTransaction;
use app::tx::{Hash, Kind};

use super::error::ApiError;

/// A time as RFC 3339 (UTC, millisecond precision).
pub fn system_rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Milliseconds since the epoch as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    system_rfc3339(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn parse_rfc3339(field: &str, text: &str) -> Result<i64, ApiError> {
    let t = humantime::parse_rfc3339_weak(text).map_err(|e| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("{field}: {text:?} is not an RFC 3339 time ({e}), e.g. 2026-01-31T12:00:00Z"),
        )
    })?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Decodes a JSON request body, with the decoder's words on failure (`malformed_json`).
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("the body is not the expected JSON: {e}"),
        )
    })
}

/// Parses a 64-character hex hash from a path or parameter.
pub fn parse_hash(field: &str, text: &str) -> Result<Hash, ApiError> {
    Hash::from_hex(text).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_parameter",
            format!(
                "{field}: {:?} is not a hash (64 hexadecimal characters)",
                truncate(text)
            ),
        )
    })
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

/// A transaction in a listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransactionSummary {
    /// Transaction hash (hex).
    pub hash: String,
    /// `empty`, `transfer`, `stake`, `unstake`, `deploy`, `run`, `proof`, `proofkey`,
    /// `verification` or `cancel`.
    pub kind: String,
    /// Author public key (hex, 130 characters).
    pub author: String,
    /// The transaction this one refers to (Proof, Verification, ProofKey, Cancel).
    pub parent: Option<String>,
    pub nonce: String,
    /// How the transaction reached this node: `rpc`, `rest`, `console`, `p2p` or `node`.
    pub source: String,
    /// When this node stored it (RFC 3339).
    pub received_at: String,
}

impl From<&StoredTransaction> for TransactionSummary {
    fn from(s: &StoredTransaction) -> Self {
        Self {
            hash: s.tx.hash.to_hex(),
            kind: s.tx.kind().as_str().to_string(),
            author: s.tx.author.to_hex(),
            parent: s.tx.payload.parent().map(|p| p.to_hex()),
            nonce: s.tx.nonce.to_string(),
            source: s.source.as_str().to_string(),
            received_at: rfc3339(s.received_at_ms),
        }
    }
}

/// A transaction with its original JSON forms.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransactionDetail {
    #[serde(flatten)]
    pub summary: TransactionSummary,
    /// The transaction exactly as a client submits it (the original JSON input form).
    #[schema(value_type = Object)]
    pub input_form: serde_json::Value,
    /// The original `getTransaction` output form.
    #[schema(value_type = Object)]
    pub output_form: serde_json::Value,
}

/// Where a client finds an output file at `relative_path`: its size and its URL on this node's
/// server (`own`) when this node holds it (a regular file: the download server serves nothing
/// else), otherwise no size and its URL on the server of the node that produced it, the base
/// that node signed into the transaction. (The original output form keeps naming this node's
/// server, as the original did.)
pub fn file_location(
    data_dir: &std::path::Path,
    relative_path: &str,
    producer: &str,
    own: &str,
) -> (Option<u64>, String) {
    let size = std::fs::symlink_metadata(data_dir.join(relative_path))
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len());
    let elsewhere = producer.starts_with("http://") || producer.starts_with("https://");
    let base = if size.is_some() || !elsewhere {
        own
    } else {
        producer.trim_end_matches('/')
    };
    (size, format!("{base}/{relative_path}"))
}

impl TransactionDetail {
    pub fn new(s: &StoredTransaction, file_base_url: &str) -> Self {
        let output = RpcTransaction::from_transaction(&s.tx, file_base_url);
        Self {
            summary: s.into(),
            input_form: serde_json::to_value(&s.tx).unwrap_or_default(),
            output_form: serde_json::to_value(&output).unwrap_or_default(),
        }
    }
}

/// One page of transactions, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransactionPage {
    pub items: Vec<TransactionSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<&Page<StoredTransaction>> for TransactionPage {
    fn from(p: &Page<StoredTransaction>) -> Self {
        Self {
            items: p.items.iter().map(TransactionSummary::from).collect(),
            next_cursor: p.next.map(encode_cursor),
        }
    }
}

const CURSOR_PREFIX: &str = "v1:";

/// An opaque cursor: the keyset of the last item, versioned.
pub fn encode_cursor(seq: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{seq}"))
}

pub fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            "the cursor is not one this server issued; start again without a cursor",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    text.strip_prefix(CURSOR_PREFIX)
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)
}

/// Filters for listing transactions.
#[derive(Debug, Clone, Default, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TransactionQuery {
    /// Only this kind (`run`, `proof`, …).
    pub kind: Option<String>,
    /// Only this author (hex public key).
    pub author: Option<String>,
    /// Only hashes starting with this hex prefix.
    pub hash_prefix: Option<String>,
    /// Only transactions with a task in this phase (`queued`, `running`, `failed`, …).
    pub status: Option<String>,
    /// Received at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Received before this time (RFC 3339).
    pub until: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    pub limit: Option<u32>,
}

impl TransactionQuery {
    /// The store filter, keyset and limit this query asks for.
    pub fn to_filter(&self) -> Result<(TxFilter, Option<i64>, u32), ApiError> {
        let kind = match &self.kind {
            None => None,
            Some(k) => Some(Kind::parse(k).ok_or_else(|| {
                let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("kind: {:?} is not one of {}", truncate(k), all.join(", ")),
                )
            })?),
        };
        let author =
            match &self.author {
                None => None,
                Some(a) => Some(app::crypto::PublicKey::from_hex(a).map_err(|e| {
                    ApiError::bad_request("invalid_parameter", format!("author: {e}"))
                })?),
            };
        if let Some(p) = &self.hash_prefix
            && (p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "hash_prefix: at most 64 hexadecimal characters",
            ));
        }
        let phase = match &self.status {
            None => None,
            Some(s) => Some(app::model::Phase::parse(s).ok_or_else(|| {
                let all: Vec<&str> = app::model::Phase::ALL.iter().map(|p| p.as_str()).collect();
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("status: {:?} is not one of {}", truncate(s), all.join(", ")),
                )
            })?),
        };
        let limit = self.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "limit: between 1 and 1000",
            ));
        }
        let filter = TxFilter {
            kind,
            author,
            hash_prefix: self.hash_prefix.as_ref().map(|p| p.to_ascii_lowercase()),
            parent: None,
            phase,
            since_ms: self
                .since
                .as_deref()
                .map(|t| parse_rfc3339("since", t))
                .transpose()?,
            until_ms: self
                .until
                .as_deref()
                .map(|t| parse_rfc3339("until", t))
                .transpose()?,
        };
        let before = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok((filter, before, limit))
    }
}

/// Where a transaction's execution stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransactionStatus {
    pub hash: String,
    pub kind: String,
    /// The tasks executing this transaction's workflow steps, in step order.
    pub tasks: Vec<TaskStatus>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskStatus {
    /// The task's id on this node.
    pub id: i64,
    pub step_index: i64,
    /// Program hash (hex).
    pub program: String,
    /// `proof` or `verification`.
    pub kind: String,
    /// `queued`, `waiting_for_program`, `downloading`, `waiting_for_resources`, `booting`,
    /// `running`, `submitting`, `succeeded`, `failed`, `cancelled` or `timed_out`.
    pub phase: String,
    /// Boots so far (retries count).
    pub attempt: i64,
    /// Why the task failed, was cancelled or is retried, or what it waits for.
    pub error: Option<String>,
    /// The running download, while the task downloads its image or inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<DownloadProgress>,
    /// The end of its VM's serial console (the latest attempt), once it booted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// Every phase it entered, oldest first.
    pub timeline: Vec<PhaseEntry>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// A phase a task entered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PhaseEntry {
    pub phase: String,
    pub at: String,
    /// Why (a failure or retry), or what the task waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl From<&app::model::PhaseChange> for PhaseEntry {
    fn from(c: &app::model::PhaseChange) -> Self {
        Self {
            phase: c.phase.as_str().to_string(),
            at: rfc3339(c.at_ms),
            note: c.note.clone(),
        }
    }
}

/// How far a download has come.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DownloadProgress {
    pub received_bytes: u64,
    /// When the server said how large the file is.
    pub total_bytes: Option<u64>,
    /// The download's attempt (retries count).
    pub attempt: u32,
}

impl TaskStatus {
    /// The task as stored, with what the pipeline knows now (download progress, VM log tail).
    pub fn new(t: &Task, pipeline: Option<&app::pipeline::Pipeline>) -> Self {
        let mut status = Self::from(t);
        if let Some(p) = pipeline {
            status.progress = p.download_progress(t.id).map(|p| DownloadProgress {
                received_bytes: p.received,
                total_bytes: p.total,
                attempt: p.attempt,
            });
            if t.attempt > 0 {
                status.log_tail = p.log_tail(t.id, 2048);
            }
        }
        status
    }
}

impl From<&Task> for TaskStatus {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id,
            progress: None,
            log_tail: None,
            timeline: Vec::new(),
            step_index: t.step_index,
            program: t.program.to_hex(),
            kind: t.kind.as_str().to_string(),
            phase: t.phase.as_str().to_string(),
            attempt: t.attempt,
            error: t.error.clone(),
            created_at: rfc3339(t.created_at_ms),
            updated_at: rfc3339(t.updated_at_ms),
            started_at: t.started_at_ms.map(rfc3339),
            finished_at: t.finished_at_ms.map(rfc3339),
        }
    }
}

/// A node of a Run → Proof → Verification tree.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TreeNode {
    pub hash: String,
    /// `run`, `proof` or `verification`.
    pub kind: String,
    #[schema(no_recursion)]
    pub children: Vec<TreeNode>,
}

impl TreeNode {
    pub fn from_tree(tree: &app::tx::rpc::TransactionTree, depth: usize) -> Self {
        use app::tx::rpc::TransactionTree as T;
        let kind = ["run", "proof", "verification"]
            .get(depth)
            .copied()
            .unwrap_or("unknown");
        let children = match tree {
            T::Root { children, .. } | T::Node { children, .. } => children
                .iter()
                .map(|c| Self::from_tree(c, depth + 1))
                .collect(),
            T::Leaf { .. } => Vec::new(),
        };
        Self {
            hash: tree.hash().to_hex(),
            kind: kind.to_string(),
            children,
        }
    }
}

/// Resources a program asks for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Resources {
    pub mem_mib: u64,
    pub cpus: u64,
    pub gpus: u64,
}

/// A deployed program.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgramInfo {
    pub hash: String,
    pub name: String,
    pub image_file_name: String,
    pub image_file_url: String,
    /// Hex BLAKE3 of the image.
    pub image_file_checksum: String,
    pub resources: Resources,
    /// True when the Deploy named no requirements and the defaults apply.
    pub resources_defaulted: bool,
    /// `prover` or `verifier`.
    pub role: String,
    /// The Deploy transaction (hex).
    pub deploy_tx: String,
    pub created_at: String,
}

impl From<&Program> for ProgramInfo {
    fn from(p: &Program) -> Self {
        let r = p.resource_requirements.unwrap_or_default();
        Self {
            hash: p.hash.to_hex(),
            name: p.name.clone(),
            image_file_name: p.image_file_name.clone(),
            image_file_url: p.image_file_url.clone(),
            image_file_checksum: p.image_file_checksum.clone(),
            resources: Resources {
                mem_mib: r.mem,
                cpus: r.cpus,
                gpus: r.gpus,
            },
            resources_defaulted: p.resource_requirements.is_none(),
            role: p.role.as_str().to_string(),
            deploy_tx: p.deploy_tx.to_hex(),
            created_at: rfc3339(p.created_at_ms),
        }
    }
}

/// A program with the runs that use it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgramDetail {
    #[serde(flatten)]
    pub program: ProgramInfo,
    /// The newest runs using this program (hex hashes, at most 50).
    pub runs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgramList {
    pub items: Vec<ProgramInfo>,
}

/// What this node is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub version: String,
    /// The node's public key (hex): the author of its Proof and Verification transactions.
    pub public_key: String,
    /// `postgres` or `sqlite`.
    pub database: String,
    pub database_version: String,
    pub started_at: String,
    pub uptime_seconds: u64,
    /// False when the node accepts and relays but never executes.
    pub execution: bool,
    /// Base URL of this node's file download server.
    pub file_base_url: String,
    pub transactions: i64,
}

/// The answer to a submission.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// The transaction hash (hex).
    pub hash: String,
    /// False when the node already had this transaction (nothing changed).
    pub new: bool,
}

/// What this node offers to programs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeResources {
    pub cpus: u64,
    pub mem_mib: u64,
    /// PCI addresses of the GPUs configured for programs (`GEVULOT_GPU_DEVICES`).
    pub gpu_devices: Vec<String>,
    /// False when the node never executes (`GEVULOT_NODE_NO_EXECUTION`).
    pub execution: bool,
    /// What is free now and how many tasks run and wait (absent when the node never executes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResourceUsage>,
}

/// This node in the peer network: who it is there, who it is connected to now, who may join,
/// and what crossed the network since it started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerNetwork {
    /// The node's libp2p peer id, derived from its node key.
    pub peer_id: String,
    /// Where the node listens for peers (`GEVULOT_P2P_LISTEN_ADDR`).
    pub listen_addr: String,
    /// The address given to peers behind NAT (`GEVULOT_P2P_ADVERTISED_LISTEN_ADDR`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_addr: Option<String>,
    /// A fingerprint of the pre-shared key: nodes of one network show the same one. It reveals
    /// nothing of the passphrase.
    pub psk_fingerprint: String,
    /// The peers this node joins through (`GEVULOT_P2P_DISCOVERY_ADDR`), dialled again while
    /// not connected.
    pub bootstrap: Vec<String>,
    /// Connected (and, in whitelist mode, admitted) peers, oldest connection first.
    pub peers: Vec<PeerInfo>,
    pub acl: AclState,
    pub messages: P2pMessages,
}

/// A connected peer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerInfo {
    pub peer_id: String,
    /// The peer's node key (hex, uncompressed): the author of its Proofs and Verifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The remote address of the connection.
    pub address: String,
    /// `inbound` (the peer dialled this node) or `outbound`.
    pub direction: String,
    pub connected_at: String,
    /// What the peer runs, once it said so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Where the peer says it listens.
    pub listen_addresses: Vec<String>,
}

/// Who may author transactions and connect as a peer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AclState {
    /// `open` (anyone with a valid signature or the pre-shared key) or `whitelist` (only keys on
    /// the whitelist, besides this node's own).
    pub mode: String,
    pub whitelisted_keys: i64,
    /// The published list the whitelist follows (any password redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The latest sync with that list; absent before the first one ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<AclSync>,
}

/// The latest whitelist sync.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AclSync {
    pub at: String,
    pub succeeded: bool,
    /// Keys added and removed by it.
    pub added: usize,
    pub removed: usize,
    /// Lines of the list that are not keys (1-based), skipped.
    pub bad_lines: Vec<usize>,
    /// Why nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Transaction messages over the peer network since the node started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct P2pMessages {
    /// Transactions this node published.
    pub published: u64,
    /// Transactions from peers that were accepted (stored, or already stored) and forwarded.
    pub accepted: u64,
    /// Messages from peers that were not valid transactions or not allowed: not stored, not
    /// forwarded.
    pub rejected: u64,
    /// Messages not judged: while overloaded (the validation queue is full) or while the
    /// database failed.
    pub ignored: u64,
    /// Transactions that could not be handed to the network.
    pub dropped: u64,
    /// Connections refused because the peer's key is not on the whitelist.
    pub peers_refused: u64,
}

/// What the node's tasks hold and wait for now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceUsage {
    pub free_cpus: u64,
    pub free_mem_mib: u64,
    /// GPUs of the pool that no task holds.
    pub free_gpus: usize,
    /// Tasks holding resources (booting, running or submitting).
    pub running_tasks: usize,
    /// Tasks waiting for resources.
    pub waiting_tasks: usize,
}

/// An output file of a Proof or Verification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileInfo {
    /// The Proof or Verification transaction (hex).
    pub tx: String,
    /// `proof` or `verification`.
    pub tx_kind: String,
    /// Position in the transaction's file list.
    pub index: i64,
    /// The path the program wrote, inside its VM.
    pub vm_path: String,
    /// Hex BLAKE3.
    pub checksum: String,
    /// Size in bytes, when this node has the file.
    pub size: Option<u64>,
    /// Download URL (supports Range requests): on this node's file server when it has the file,
    /// otherwise on the server of the node that produced it.
    pub url: String,
}

impl FileInfo {
    pub fn new(
        f: &app::model::OutputFile,
        data_dir: &std::path::Path,
        file_base_url: &str,
    ) -> Self {
        let (size, url) =
            file_location(data_dir, &f.relative_path(), &f.producer_url, file_base_url);
        Self {
            tx: f.tx.to_hex(),
            tx_kind: f.kind.as_str().to_string(),
            index: f.index,
            vm_path: f.vm_path.clone(),
            checksum: f.checksum.to_hex(),
            size,
            url,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FilePage {
    pub items: Vec<FileInfo>,
    pub next_cursor: Option<String>,
}

/// Cursor over (transaction seq, file index).
pub fn encode_file_cursor((seq, index): (i64, i64)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{seq}:{index}"))
}

pub fn decode_file_cursor(cursor: &str) -> Result<(i64, i64), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            "the cursor is not one this server issued; start again without a cursor",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (seq, index) = text
        .strip_prefix(CURSOR_PREFIX)
        .and_then(|t| t.split_once(':'))
        .ok_or_else(bad)?;
    Ok((
        seq.parse().map_err(|_| bad())?,
        index.parse().map_err(|_| bad())?,
    ))
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    pub limit: Option<u32>,
}
