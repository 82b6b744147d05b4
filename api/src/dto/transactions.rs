//! Transactions: listings, details, trees, execution status.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use app::model::{Page, StoredTransaction, Task, TxFilter};
use app::tx::Kind;
use app::tx::rpc::RpcTransaction;

use super::*;
use crate::error::{BadRequest, ErrorCode};

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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

/// The version prefix of the cursors this server issues.
const CURSOR_PREFIX: &str = "v1.";

/// An opaque cursor: the keyset of the last item, versioned (`v1.<seq>`). Clients pass it
/// back unchanged; the document states its shape so that generated clients can check it.
pub fn encode_cursor(seq: i64) -> String {
    format!("{CURSOR_PREFIX}{seq}")
}

pub fn decode_cursor(cursor: &str) -> Result<i64, BadRequest> {
    match cursor_parts(cursor)?.as_slice() {
        [seq] => Ok(*seq),
        _ => Err(bad_cursor()),
    }
}

pub(super) fn bad_cursor() -> BadRequest {
    BadRequest::new(
        ErrorCode::InvalidCursor,
        "the cursor is not one this server issued; start again without a cursor",
    )
}

/// The numbers of a cursor this server issued: after its version prefix, `.`-separated
/// non-negative numbers of 1 to 18 digits (so that every cursor of that shape is one).
pub(super) fn cursor_parts(cursor: &str) -> Result<Vec<i64>, BadRequest> {
    let rest = cursor.strip_prefix(CURSOR_PREFIX).ok_or_else(bad_cursor)?;
    rest.split('.')
        .map(|part| {
            if part.is_empty() || part.len() > 18 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad_cursor());
            }
            part.parse().map_err(|_| bad_cursor())
        })
        .collect()
}

/// Filters for listing transactions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TransactionQuery {
    /// Only this kind (`run`, `proof`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<KindName>, inline)]
    pub kind: Option<String>,
    /// Only this author (hex public key, 130 characters); a key no transaction has matches
    /// nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[0-9a-fA-F]{130}$", min_length = 130, max_length = 130)]
    pub author: Option<String>,
    /// Only hashes starting with this hex prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[0-9a-fA-F]{0,64}$", max_length = 64)]
    pub hash_prefix: Option<String>,
    /// Only transactions with a task in this phase (`queued`, `running`, `failed`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<PhaseName>, inline)]
    pub status: Option<String>,
    /// Received at or after this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Received before this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// The `next_cursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^v1\.[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl TransactionQuery {
    /// The store filter, keyset and limit this query asks for.
    pub fn to_filter(&self) -> Result<(TxFilter, Option<i64>, u32), BadRequest> {
        let kind = match &self.kind {
            None => None,
            Some(k) => Some(Kind::parse(k).ok_or_else(|| {
                let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                BadRequest::new(
                    ErrorCode::InvalidParameter,
                    format!("kind: {:?} is not one of {}", truncate(k), all.join(", ")),
                )
            })?),
        };
        if let Some(a) = &self.author
            && (a.len() != 130 || !a.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(BadRequest::new(
                ErrorCode::InvalidParameter,
                format!(
                    "author: {:?} is not a public key (130 hexadecimal characters)",
                    truncate(a)
                ),
            ));
        }
        let author = self.author.as_ref().map(|a| a.to_ascii_lowercase());
        if let Some(p) = &self.hash_prefix
            && (p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(BadRequest::new(
                ErrorCode::InvalidParameter,
                "hash_prefix: at most 64 hexadecimal characters",
            ));
        }
        let phase = match &self.status {
            None => None,
            Some(s) => Some(app::model::Phase::parse(s).ok_or_else(|| {
                let all: Vec<&str> = app::model::Phase::ALL.iter().map(|p| p.as_str()).collect();
                BadRequest::new(
                    ErrorCode::InvalidParameter,
                    format!("status: {:?} is not one of {}", truncate(s), all.join(", ")),
                )
            })?),
        };
        let limit = self.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(BadRequest::new(
                ErrorCode::InvalidParameter,
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransactionStatus {
    pub hash: String,
    pub kind: String,
    /// The tasks executing this transaction's workflow steps, in step order.
    pub tasks: Vec<TaskStatus>,
    /// The files it names and where each stands on this node: a Deploy's images and a Run's
    /// inputs, fetched as soon as the transaction is stored. Empty on a node that does not
    /// execute.
    pub files: Vec<FileFetchInfo>,
    /// Where a Run is placed in the network: which node holds it (and whom it took it over
    /// from), or why it waits, or how it ended. Absent for other kinds and on a node without a
    /// network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<RunPlacement>,
}

/// Where a Run is placed, as this node sees the network.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunPlacement {
    /// `waiting` (no node holds it yet), `placed`, or `ended`.
    #[schema(example = "placed")]
    pub state: String,
    /// The nodes holding it (one, or `GEVULOT_PLACEMENT_REDUNDANCY`).
    pub nodes: Vec<PlacedNode>,
    /// Once ended: `done`, `failed`, `cancelled` or `unplaceable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Why it waits, or why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The peer id of the node it ended on, when it failed there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_on: Option<String>,
}

/// A node holding a Run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlacedNode {
    pub peer_id: String,
    /// Its node key (hex), which signs its Proofs and Verifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// When it took the Run (RFC 3339).
    pub since: String,
    /// The peer id of the node it took the Run over from, when the first holder went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_over_from: Option<String>,
    /// Whether it is the node that answers.
    pub local: bool,
}

impl From<&app::placement::Placement> for RunPlacement {
    fn from(p: &app::placement::Placement) -> Self {
        Self {
            state: p.state.to_string(),
            nodes: p
                .nodes
                .iter()
                .map(|n| PlacedNode {
                    peer_id: n.peer_id.clone(),
                    public_key: n.public_key.clone(),
                    since: rfc3339(n.since_ms),
                    taken_over_from: n.taken_over_from.clone(),
                    local: n.local,
                })
                .collect(),
            outcome: p.outcome.clone(),
            reason: p.reason.clone(),
            ended_on: p.ended_on.clone(),
        }
    }
}

/// A file and where it stands on this node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileFetchInfo {
    /// The image's file name, or the input's path in the VM.
    pub name: String,
    /// Hex BLAKE3.
    pub checksum: String,
    /// `absent` (not fetched, nothing under way), `fetching`, `ready`, `failed`, or
    /// `not_needed` (an image this node does not fetch: it can never run the program; `reason`
    /// says why).
    pub state: String,
    /// While fetching.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<DownloadProgress>,
    /// Why the last fetch failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the file is not fetched here (`not_needed`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

impl FileFetchInfo {
    pub fn new(name: &str, checksum: &str, state: &app::download::FetchState) -> Self {
        use app::download::FetchState;
        Self {
            name: name.to_string(),
            checksum: checksum.to_string(),
            state: state.as_str().to_string(),
            progress: match state {
                FetchState::Fetching(p) => Some(DownloadProgress {
                    received_bytes: p.received,
                    total_bytes: p.total,
                    attempt: p.attempt,
                }),
                _ => None,
            },
            reason: match state {
                FetchState::NotNeeded(why) => Some(why.clone()),
                _ => None,
            },
            error: match state {
                FetchState::Failed(why) => Some(why.clone()),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DownloadProgress {
    pub received_bytes: u64,
    /// When the server said how large the file is.
    pub total_bytes: Option<u64>,
    /// The download's attempt (retries count).
    pub attempt: u32,
}

/// A task with its timeline and what the pipeline knows now (download progress, VM log tail).
impl From<&app::node::TaskView> for TaskStatus {
    fn from(v: &app::node::TaskView) -> Self {
        let mut status = Self::from(&v.task);
        status.progress = v.progress.as_ref().map(|p| DownloadProgress {
            received_bytes: p.received,
            total_bytes: p.total,
            attempt: p.attempt,
        });
        status.log_tail = v.log_tail.clone();
        status.timeline = v.timeline.iter().map(PhaseEntry::from).collect();
        status
    }
}

impl From<&app::node::TxStatus> for TransactionStatus {
    fn from(s: &app::node::TxStatus) -> Self {
        Self {
            hash: s.hash.to_hex(),
            kind: s.kind.as_str().to_string(),
            tasks: s.tasks.iter().map(TaskStatus::from).collect(),
            files: s
                .files
                .iter()
                .map(|f| FileFetchInfo::new(&f.name, &f.checksum.to_hex(), &f.state))
                .collect(),
            placement: s.placement.as_ref().map(RunPlacement::from),
        }
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// A cursor this server issued reads back, and so does every string of the shape the
        /// document states; anything else is `invalid_cursor`, never a panic.
        #[test]
        fn cursors_read_back_and_anything_else_is_refused(
            seq in 0..1_000_000_000_000_000_000i64,
            index in 0..1_000_000i64,
            digits in "[0-9]{1,18}",
            junk in "\\PC{0,60}",
        ) {
            proptest::prop_assert_eq!(decode_cursor(&encode_cursor(seq)).ok(), Some(seq));
            proptest::prop_assert_eq!(
                decode_file_cursor(&encode_file_cursor((seq, index))).ok(),
                Some((seq, index))
            );
            let (one, two) = (format!("v1.{digits}"), format!("v1.{digits}.{digits}"));
            proptest::prop_assert!(decode_cursor(&one).is_ok());
            proptest::prop_assert!(decode_file_cursor(&two).is_ok());
            for bad in [decode_cursor(&junk).err(), decode_file_cursor(&junk).err()].into_iter().flatten() {
                proptest::prop_assert_eq!(bad.code, ErrorCode::InvalidCursor);
            }
        }
    }
}
