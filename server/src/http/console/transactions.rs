//! Transactions: search with keyset pages, and one transaction with its fields, tree, tasks,
//! outputs and the cancel button.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use frontend::pages::{self, FormErrors};
use frontend::{Flash, Nav};
use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize, Default)]
pub(super) struct TxSearch {
    #[serde(default)]
    hash: String,
    #[serde(default)]
    author: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    phase: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    cursor: Option<String>,
}

/// A date alone means its midnight UTC.
pub(super) fn time_param(text: &str) -> Option<String> {
    let t = text.trim();
    match t.len() {
        0 => None,
        10 => Some(format!("{t}T00:00:00Z")),
        _ => Some(t.to_string()),
    }
}

pub(super) fn tx_row(stored: &app::model::StoredTransaction) -> pages::TxRow {
    let s = crate::http::dto::TransactionSummary::from(stored);
    pages::TxRow {
        hash: s.hash,
        kind: s.kind,
        author: s.author,
        parent: s.parent,
        source: s.source,
        received_at_ms: stored.received_at_ms,
    }
}

pub(super) async fn transactions_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
    Query(q): Query<TxSearch>,
) -> Response {
    let nonempty = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_ascii_lowercase());
    let query = crate::http::dto::TransactionQuery {
        kind: nonempty(&q.kind),
        author: nonempty(&q.author),
        hash_prefix: nonempty(&q.hash),
        status: nonempty(&q.phase),
        since: time_param(&q.since),
        until: time_param(&q.until),
        cursor: q.cursor.clone(),
        limit: Some(50),
    };
    let mut errors = FormErrors::default();
    let page = match query.to_filter() {
        Ok((filter, before, limit)) => state
            .node
            .transactions(&filter, before, limit)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(ApiError::from(e)),
    };
    let (items, next) = match page {
        Ok(page) => {
            let next = page.next.map(|seq| {
                let c = crate::http::dto::encode_cursor(seq);
                let mut params = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in [
                    ("hash", &q.hash),
                    ("author", &q.author),
                    ("kind", &q.kind),
                    ("phase", &q.phase),
                    ("since", &q.since),
                    ("until", &q.until),
                ] {
                    if !v.is_empty() {
                        params.append_pair(k, v);
                    }
                }
                params.append_pair("cursor", &c);
                format!("/console/transactions?{}", params.finish())
            });
            let items = page.items.iter().map(tx_row).collect();
            (items, next)
        }
        Err(e) if e.status == StatusCode::BAD_REQUEST || e.status.as_u16() == 422 => {
            errors.add("", e.detail);
            (Vec::new(), None)
        }
        Err(e) => return problem(&state, Some(&s), &headers, e).await,
    };
    let view = pages::TransactionsView {
        query: pages::TxQuery {
            hash: q.hash,
            author: q.author,
            kind: q.kind,
            phase: q.phase,
            since: q.since,
            until: q.until,
        },
        items,
        next,
        errors,
    };
    render(
        &state,
        Some(&s),
        &headers,
        Page::new("Transactions", Nav::Transactions),
        move || pages::transactions(view),
    )
    .await
}

pub(super) fn tree_row(t: &TransactionTree, depth: usize) -> pages::TreeRow {
    let kind = ["run", "proof", "verification"]
        .get(depth)
        .copied()
        .unwrap_or("transaction");
    let children = match t {
        TransactionTree::Root { children, .. } | TransactionTree::Node { children, .. } => {
            children.iter().map(|c| tree_row(c, depth + 1)).collect()
        }
        TransactionTree::Leaf { .. } => Vec::new(),
    };
    pages::TreeRow {
        hash: t.hash().to_hex(),
        kind,
        children,
    }
}

pub(super) fn fields(payload: &Payload) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match payload {
        Payload::Deploy {
            name,
            prover,
            verifier,
        } => {
            out.push(("Name".into(), name.clone()));
            for (label, p) in [("Prover", prover), ("Verifier", verifier)] {
                let r = p.resource_requirements.unwrap_or_default();
                out.push((
                    label.into(),
                    format!(
                        "{} — program {} — image {} at {} (BLAKE3 {}) — {} MiB, {} CPUs, {} GPUs",
                        p.name,
                        p.hash,
                        p.image_file_name,
                        p.image_file_url,
                        p.image_file_checksum,
                        r.mem,
                        r.cpus,
                        r.gpus
                    ),
                ));
            }
        }
        Payload::Run { workflow } => {
            for (i, step) in workflow.steps.iter().enumerate() {
                let inputs: Vec<String> = step
                    .inputs
                    .iter()
                    .map(|input| match input {
                        ProgramData::Input {
                            file_name,
                            file_url,
                            checksum,
                        } => format!("{file_name} ← {file_url} (BLAKE3 {checksum})"),
                        ProgramData::Output {
                            source_program,
                            file_name,
                        } => format!("{file_name} ← output of program {source_program}"),
                    })
                    .collect();
                out.push((
                    format!("Step {}", i + 1),
                    format!(
                        "program {} · args [{}] · inputs: {}",
                        step.program,
                        step.args.join(", "),
                        if inputs.is_empty() {
                            "none".to_string()
                        } else {
                            inputs.join("; ")
                        }
                    ),
                ));
            }
        }
        Payload::Proof { prover, proof, .. } => {
            out.push(("Prover".into(), prover.to_hex()));
            out.push(("Proof".into(), bytes_preview(proof)));
        }
        Payload::Verification {
            verifier,
            verification,
            ..
        } => {
            out.push(("Verifier".into(), verifier.to_hex()));
            out.push(("Verification".into(), bytes_preview(verification)));
        }
        Payload::ProofKey { key, .. } => out.push(("Key".into(), hex::encode(key))),
        Payload::Transfer { to, value } => {
            out.push(("To".into(), to.to_hex()));
            out.push(("Value".into(), value.to_string()));
        }
        Payload::Stake { value } | Payload::Unstake { value } => {
            out.push(("Value".into(), value.to_string()));
        }
        Payload::Cancel { .. } | Payload::Empty => {}
    }
    out
}

/// JSON laid out for reading: one field per line, but arrays of numbers (hashes, keys, the
/// signature's words) on one line.
pub(super) fn readable_json(v: &serde_json::Value, indent: usize) -> String {
    use serde_json::Value;
    let pad = "  ".repeat(indent + 1);
    let end = "  ".repeat(indent);
    match v {
        Value::Array(items) if items.iter().all(Value::is_number) => {
            serde_json::to_string(v).unwrap_or_default()
        }
        Value::Array(items) if items.is_empty() => "[]".into(),
        Value::Array(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|i| format!("{pad}{}", readable_json(i, indent + 1)))
                .collect();
            format!("[\n{}\n{end}]", inner.join(",\n"))
        }
        Value::Object(map) if map.is_empty() => "{}".into(),
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, val)| {
                    format!(
                        "{pad}{}: {}",
                        serde_json::to_string(k).unwrap_or_default(),
                        readable_json(val, indent + 1)
                    )
                })
                .collect();
            format!("{{\n{}\n{end}}}", inner.join(",\n"))
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Short proof bytes as text when they are text, else their size and first bytes in hex.
pub(super) fn bytes_preview(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text) if data.len() <= 2048 && !text.chars().any(char::is_control) => {
            format!("{text} ({} bytes)", data.len())
        }
        _ => format!(
            "{} bytes: {}{}",
            data.len(),
            hex::encode(&data[..data.len().min(64)]),
            if data.len() > 64 { "…" } else { "" }
        ),
    }
}

/// The output files of `tx` and of the results under it in its tree.
pub(super) async fn outputs(
    state: &AppState,
    tree: Option<&TransactionTree>,
    tx: &app::tx::Transaction,
) -> Result<Vec<pages::OutputRow>, ApiError> {
    let mut hashes = vec![tx.hash];
    fn collect(t: &TransactionTree, out: &mut Vec<Hash>) {
        if let TransactionTree::Root { children, .. } | TransactionTree::Node { children, .. } = t {
            for c in children {
                out.push(c.hash());
                collect(c, out);
            }
        }
    }
    if tx.kind() == Kind::Run
        && let Some(t) = tree
    {
        collect(t, &mut hashes);
    }
    let mut rows = Vec::new();
    for hash in hashes {
        let Some(stored) = state.node.find_transaction(&hash).await? else {
            continue;
        };
        let files = match &stored.tx.payload {
            Payload::Proof { files, .. } | Payload::Verification { files, .. } => files.clone(),
            _ => continue,
        };
        for f in files {
            let (size, url) = state
                .node
                .locate(&app::tx::rpc::output_file_path(&hash, &f), &f.url);
            rows.push(pages::OutputRow {
                name: f.basename().to_string(),
                url,
                checksum: f.checksum.to_hex(),
                size,
            });
        }
    }
    Ok(rows)
}

pub(super) async fn task_rows(
    state: &AppState,
    hash: &Hash,
) -> Result<(Vec<pages::TaskRow>, Option<String>), ApiError> {
    let status = state.node.status(hash).await?;
    let placement = status.placement.as_ref().map(frontend::placement_sentence);
    let mut rows = Vec::with_capacity(status.tasks.len());
    for t in status.tasks {
        let program_name = state
            .node
            .find_program(&t.task.program)
            .await?
            .map(|p| p.name);
        let progress = t.progress.map(|d| match d.total {
            Some(total) => format!(
                "{} of {}",
                frontend::bytes(d.received),
                frontend::bytes(total)
            ),
            None => frontend::bytes(d.received),
        });
        rows.push(pages::TaskRow {
            task: t.task,
            program_name,
            log_tail: t.log_tail,
            progress,
            timeline: t.timeline,
        });
    }
    Ok((rows, placement))
}

pub(super) async fn transaction_view(
    state: &AppState,
    s: &Session,
    hash: &str,
) -> Result<pages::TransactionView, ApiError> {
    let hash = crate::http::dto::parse_hash("hash", hash)?;
    let stored = state.node.find_transaction(&hash).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no transaction {} on this node; check the hash, or search on the Transactions page",
            hash.to_hex()
        ))
    })?;
    let tree = state.node.tree(&hash).await?;
    let (tasks, placement) = task_rows(state, &hash).await?;
    let outputs = outputs(state, tree.as_ref(), &stored.tx).await?;
    let can_cancel = stored.tx.kind() == Kind::Run
        && s.user.role.allows(Role::Operator)
        && (tasks.is_empty() || tasks.iter().any(|t| !t.task.phase.is_terminal()));
    Ok(pages::TransactionView {
        row: tx_row(&stored),
        fields: fields(&stored.tx.payload),
        input_json: readable_json(&serde_json::to_value(&stored.tx).unwrap_or_default(), 0),
        tree: tree.as_ref().map(|t| tree_row(t, 0)),
        tasks,
        outputs,
        can_cancel,
        placement,
        csrf: s.csrf.clone(),
    })
}

pub(super) async fn transaction_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
    Path(hash): Path<String>,
) -> Response {
    let view = match transaction_view(&state, &s, &hash).await {
        Ok(v) => v,
        Err(e) => return problem(&state, Some(&s), &headers, e).await,
    };
    let mut page = Page::new(
        format!("{} {}", view.row.kind, frontend::short(&view.row.hash)),
        Nav::Transactions,
    );
    page.follows = Some(view.row.hash.clone());
    if headers.contains_key(FRAGMENT_HEADER) {
        let live = pages::TransactionLive {
            hash: view.row.hash,
            tree: view.tree,
            tasks: view.tasks,
            outputs: view.outputs,
            can_cancel: view.can_cancel,
            placement: view.placement,
            csrf: view.csrf,
        };
        return render(&state, Some(&s), &headers, page, move || {
            pages::transaction_live(live)
        })
        .await;
    }
    render(&state, Some(&s), &headers, page, move || {
        pages::transaction(view)
    })
    .await
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    _headers: HeaderMap,
    Path(hash): Path<String>,
    Posted {
        session: s,
        form: _,
    }: Posted<CancelForm>,
) -> Response {
    let back = format!("/console/transactions/{hash}");
    let result = async {
        let run = crate::http::dto::parse_hash("hash", &hash)?;
        Ok::<_, ApiError>(state.node.cancel(&run, Source::Console, &s.actor()).await?)
    }
    .await;
    match result {
        Ok(c) => {
            tracing::info!(target: "gevulot", by = %s.user.username, run = %hash, cancel = %c.hash, "run cancelled from the console");
            see_other_with(
                &back,
                Flash::Ok(format!(
                    "Cancelled: the Cancel transaction {} stops the run's VMs now.",
                    c.hash
                )),
            )
        }
        Err(e) => see_other_with(&back, Flash::Error(e.detail)),
    }
}
