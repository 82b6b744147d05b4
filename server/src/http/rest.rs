//! REST under `/api/v1`, described by OpenAPI (utoipa): the router and the document come from the
//! same handler annotations, and `openapi/openapi.json` is the committed copy (a test compares).
//!
//! Conventions (`docs/API-DESIGN.md`): snake_case JSON, RFC 3339 times, hex hashes, opaque
//! cursors, and RFC 9457 `application/problem+json` errors with stable codes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use app::model::Source;
use app::tx::Transaction;

use super::dto::{
    NodeInfo, ProgramDetail, ProgramInfo, ProgramList, Submitted, TransactionDetail,
    TransactionPage, TransactionQuery, TransactionStatus, TreeNode, parse_hash,
};
use super::error::{ApiError, ApiPath, BadInput, ErrorCode, NotSignedIn, Problem, Unknown};
use super::{AppState, audit, auth, drain, gpus, operator, settings, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gevulot node API",
        description = "REST API of a Gevulot prover node. Errors are RFC 9457 problem documents \
                       with a stable `code`. The original JSON-RPC API is served at `POST /`.",
        license(name = "MIT OR Apache-2.0")
    ),
    tags(
        (name = "transactions", description = "Signed transactions: submit, look up, list, follow"),
        (name = "programs", description = "Deployed prover and verifier programs"),
        (name = "node", description = "This node"),
        (name = "auth", description = "Sign-in, users and API tokens"),
        (name = "operator", description = "Uploads, deploys and runs signed by the node (operator role)"),
        (name = "files", description = "Output files of proofs and verifications"),
        (name = "gpus", description = "GPU inventory and the node's GPU pool"),
        (name = "webhooks", description = "Signed notifications of Runs' progress to an integrator's URL")
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

/// The REST router and its OpenAPI document.
pub fn router(state: AppState) -> (axum::Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(submit_transaction, list_transactions))
        .routes(routes!(get_transaction))
        .routes(routes!(transaction_tree))
        .routes(routes!(transaction_status))
        .routes(routes!(cancel_transaction))
        .routes(routes!(live_events))
        .routes(routes!(get_program))
        .routes(routes!(node_info))
        .routes(routes!(node_resources))
        .routes(routes!(node_peers))
        .routes(routes!(drain::state, drain::start, drain::stop))
        .routes(routes!(settings::get))
        .routes(routes!(audit::list))
        .routes(routes!(list_files))
        .routes(routes!(file_info))
        .routes(routes!(operator::upload))
        .routes(routes!(list_programs, operator::deploy))
        .routes(routes!(operator::run))
        .routes(routes!(gpus::list))
        .routes(routes!(gpus::change))
        .routes(routes!(auth::login, auth::whoami, auth::logout))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::list_users, auth::create_user))
        .routes(routes!(auth::create_token))
        .routes(routes!(auth::setup))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::get, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .with_state(state)
        .split_for_parts()
}

/// The fallback for unknown routes.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {}; the API is described at /api-docs/openapi.json",
        uri.path()
    ))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    match q {
        Ok(Query(v)) => Ok(v),
        Err(e) => {
            let text = e.body_text();
            let code = if text.contains("unknown field") {
                ErrorCode::UnknownParameter
            } else {
                ErrorCode::InvalidParameter
            };
            Err(ApiError::bad_request(code, text))
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
        })
}

/// Submit a signed transaction.
///
/// The body is the transaction in the original JSON input form, exactly as `sendTransaction`
/// takes it. The answer comes once the transaction is stored durably. Submitting a transaction
/// the node already has changes nothing and answers 200 with `new: false`.
#[utoipa::path(
    post,
    path = "/api/v1/transactions",
    tag = "transactions",
    request_body(content = Object, content_type = "application/json",
        description = "A signed transaction in the original JSON input form"),
    responses(
        (status = 201, description = "Stored", body = Submitted),
        (status = 200, description = "Already stored; nothing changed", body = Submitted),
        (status = 400, description = "Not a transaction", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Refused by a validation rule (see `code`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this address's rate or in-flight limit (`rate_limited`); retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn submit_transaction(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!(
                    "the body is larger than this node accepts ({} bytes; see GEVULOT_MAX_PROOF_BYTES)",
                    state.max_request_bytes
                ),
            )
        } else {
            ApiError::bad_request(ErrorCode::MalformedTransaction, e.body_text())
        }
    })?;
    if !is_json(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the transaction as JSON with Content-Type: application/json",
        ));
    }
    let tx: Transaction = serde_json::from_slice(&body).map_err(|e| {
        state.metrics.submitted("unknown", "malformed");
        ApiError::bad_request(
            ErrorCode::MalformedTransaction,
            format!("the body is not a transaction in the original JSON input form: {e}"),
        )
    })?;
    let s = state.node.submit(&tx, Source::Rest).await?;
    let status = if s.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Submitted {
            hash: s.hash.to_hex(),
            new: s.new,
        }),
    ))
}

/// List transactions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/transactions",
    tag = "transactions",
    params(TransactionQuery),
    responses(
        (status = 200, description = "One page", body = TransactionPage),
        (status = 400, description = "Bad filter or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_transactions(
    State(state): State<AppState>,
    q: Result<Query<TransactionQuery>, QueryRejection>,
) -> Result<Json<TransactionPage>, ApiError> {
    let q = query(q)?;
    let (filter, before, limit) = q.to_filter()?;
    let page = state.node.transactions(&filter, before, limit).await?;
    Ok(Json((&page).into()))
}

/// Get a transaction.
#[utoipa::path(
    get,
    path = "/api/v1/transactions/{hash}",
    tag = "transactions",
    params(("hash" = String, Path, pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64, description = "Transaction hash (64 hex characters)")),
    responses(
        (status = 200, description = "The transaction", body = TransactionDetail),
        (status = 400, description = "Not a hash", body = Problem, content_type = "application/problem+json"),
        Unknown,
    )
)]
async fn get_transaction(
    State(state): State<AppState>,
    ApiPath(hash): ApiPath<String>,
) -> Result<Json<TransactionDetail>, ApiError> {
    let hash = parse_hash("hash", &hash)?;
    let stored = state.node.transaction(&hash).await?;
    Ok(Json(TransactionDetail::new(
        &stored,
        state.node.file_base_url(),
    )))
}

/// The Run → Proof → Verification tree containing a transaction.
#[utoipa::path(
    get,
    path = "/api/v1/transactions/{hash}/tree",
    tag = "transactions",
    params(("hash" = String, Path, pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64, description = "Any Run, Proof or Verification of the tree (hex)")),
    responses(
        BadInput,
        (status = 200, description = "The tree from its Run", body = TreeNode),
        (status = 404, description = "Not part of a tree on this node", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn transaction_tree(
    State(state): State<AppState>,
    ApiPath(hash): ApiPath<String>,
) -> Result<Json<TreeNode>, ApiError> {
    let hash = parse_hash("hash", &hash)?;
    match state.node.tree(&hash).await? {
        Some(tree) => Ok(Json(TreeNode::from_tree(&tree, 0))),
        None => Err(ApiError::not_found(format!(
            "{} is not a Run, Proof or Verification known to this node",
            hash.to_hex()
        ))),
    }
}

/// Execution status: the tasks of a transaction with their phases, attempts and errors.
#[utoipa::path(
    get,
    path = "/api/v1/transactions/{hash}/status",
    tag = "transactions",
    params(("hash" = String, Path, pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64, description = "Transaction hash (hex)")),
    responses(
        BadInput,
        (status = 200, description = "Status", body = TransactionStatus),
        Unknown,
    )
)]
async fn transaction_status(
    State(state): State<AppState>,
    ApiPath(hash): ApiPath<String>,
) -> Result<Json<TransactionStatus>, ApiError> {
    let hash = parse_hash("hash", &hash)?;
    Ok(Json((&state.node.status(&hash).await?).into()))
}

/// List deployed programs.
#[utoipa::path(
    get,
    path = "/api/v1/programs",
    tag = "programs",
    responses((status = 200, description = "Programs by name", body = ProgramList))
)]
async fn list_programs(State(state): State<AppState>) -> Result<Json<ProgramList>, ApiError> {
    let programs = state.node.programs(1000).await?;
    Ok(Json(ProgramList {
        items: programs.iter().map(|p| program_info(&state, p)).collect(),
    }))
}

/// A program with where its image stands on this node.
fn program_info(state: &AppState, p: &app::model::Program) -> ProgramInfo {
    ProgramInfo::from(p).fetched(state.node.image_state(p))
}

/// Get a program and the runs that use it.
#[utoipa::path(
    get,
    path = "/api/v1/programs/{hash}",
    tag = "programs",
    params(("hash" = String, Path, pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64, description = "Program hash (hex)")),
    responses(
        BadInput,
        (status = 200, description = "The program", body = ProgramDetail),
        Unknown,
    )
)]
async fn get_program(
    State(state): State<AppState>,
    ApiPath(hash): ApiPath<String>,
) -> Result<Json<ProgramDetail>, ApiError> {
    let hash = parse_hash("hash", &hash)?;
    let program = state.node.program(&hash).await?;
    let runs = state.node.runs_using(&hash, 50).await?;
    Ok(Json(ProgramDetail {
        program: program_info(&state, &program),
        runs: runs.iter().map(|h| h.to_hex()).collect(),
    }))
}

/// This node: version, key, database, uptime.
#[utoipa::path(
    get,
    path = "/api/v1/node",
    tag = "node",
    responses((status = 200, description = "Node information", body = NodeInfo))
)]
async fn node_info(State(state): State<AppState>) -> Result<Json<NodeInfo>, ApiError> {
    Ok(Json((&state.node.info().await?).into()))
}

/// Cancel a Run (operator): the node signs a `Cancel` naming it.
///
/// A Run's author can instead sign a `Cancel` and submit it like any transaction.
#[utoipa::path(
    post,
    path = "/api/v1/transactions/{hash}/cancel",
    tag = "transactions",
    params(("hash" = String, Path, pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64, description = "The Run to cancel (hex)")),
    responses(
        BadInput,
        (status = 201, description = "The Cancel transaction was stored", body = Submitted),
        (status = 200, description = "The same Cancel was already stored", body = Submitted),
        NotSignedIn,
        (status = 403, description = "Not an operator, or no CSRF token", body = Problem, content_type = "application/problem+json"),
        Unknown,
        (status = 422, description = "Not a Run", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel_transaction(
    State(state): State<AppState>,
    caller: auth::Caller,
    ApiPath(hash): ApiPath<String>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    caller.require(app::auth::Role::Operator)?;
    let hash = parse_hash("hash", &hash)?;
    let submitted = state
        .node
        .cancel(&hash, Source::Rest, &caller.actor())
        .await?;
    let submitted = Submitted {
        hash: submitted.hash.to_hex(),
        new: submitted.new,
    };
    tracing::info!(target: "gevulot", by = %caller.user.username, run = %hash, cancel = %submitted.hash, "run cancelled");
    let status = if submitted.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(submitted)))
}

/// Filters for the live event stream.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events that change this transaction's status (hex hash).
    #[param(pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64)]
    pub tx: Option<String>,
}

/// One live event.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LiveEvent {
    /// `transaction_stored`, `task_changed`, or `lagged` (events were missed: reload the state).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The stored transaction, or the transaction whose task changed.
    pub hash: Option<String>,
    pub tx_kind: Option<String>,
    pub parent: Option<String>,
    pub task_id: Option<i64>,
    pub phase: Option<String>,
}

impl From<&app::events::Event> for LiveEvent {
    fn from(e: &app::events::Event) -> Self {
        use app::events::Event as E;
        match e {
            E::TransactionStored {
                hash, kind, parent, ..
            } => LiveEvent {
                kind: "transaction_stored",
                hash: Some(hash.to_hex()),
                tx_kind: Some(kind.as_str().to_string()),
                parent: parent.map(|p| p.to_hex()),
                task_id: None,
                phase: None,
            },
            E::TaskChanged {
                tx, task_id, phase, ..
            } => LiveEvent {
                kind: "task_changed",
                hash: Some(tx.to_hex()),
                tx_kind: None,
                parent: None,
                task_id: Some(*task_id),
                phase: Some(phase.as_str().to_string()),
            },
        }
    }
}

/// Live events as server-sent events (`text/event-stream`), each a JSON `LiveEvent`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "transactions",
    params(EventsQuery),
    responses(
        BadInput,
        (status = 200, description = "A stream of LiveEvent JSON documents", content_type = "text/event-stream", body = LiveEvent),
    )
)]
async fn live_events(
    State(state): State<AppState>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let q = query(q)?;
    let filter = q.tx.as_deref().map(|t| parse_hash("tx", t)).transpose()?;
    let receiver = state.node.events().subscribe();
    let stream = futures::stream::unfold(receiver, move |mut rx| async move {
        loop {
            let live = match rx.recv().await {
                Ok(e) if filter.as_ref().is_some_and(|h| !e.concerns(h)) => continue,
                Ok(e) => LiveEvent::from(&e),
                Err(RecvError::Lagged(_)) => LiveEvent {
                    kind: "lagged",
                    hash: None,
                    tx_kind: None,
                    parent: None,
                    task_id: None,
                    phase: None,
                },
                Err(RecvError::Closed) => return None,
            };
            let event = Event::default()
                .event(live.kind)
                .json_data(&live)
                .unwrap_or_else(|_| Event::default().comment("unencodable event"));
            return Some((Ok(event), rx));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}

/// This node in the peer network (any signed-in role): its peer id and listen address, the
/// pre-shared key's fingerprint, connected peers, the whitelist and its sync, and message counts.
#[utoipa::path(
    get,
    path = "/api/v1/node/peers",
    tag = "node",
    responses(
        (status = 200, description = "The peer network", body = super::dto::PeerNetwork),
        NotSignedIn,
    )
)]
async fn node_peers(
    State(state): State<AppState>,
    caller: auth::Caller,
) -> Result<Json<super::dto::PeerNetwork>, ApiError> {
    caller.require(app::auth::Role::Viewer)?;
    Ok(Json((&state.node.network().await?).into()))
}

/// What this node offers to programs.
#[utoipa::path(
    get,
    path = "/api/v1/node/resources",
    tag = "node",
    responses((status = 200, description = "Offered resources", body = super::dto::NodeResources))
)]
async fn node_resources(State(state): State<AppState>) -> Json<super::dto::NodeResources> {
    Json(super::dto::NodeResources::new(
        state.node.resources(),
        state.node.usage(),
    ))
}

/// List output files, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/files",
    tag = "files",
    params(super::dto::FileQuery),
    responses(
        BadInput,
        (status = 200, description = "One page", body = super::dto::FilePage),
    )
)]
async fn list_files(
    State(state): State<AppState>,
    q: Result<Query<super::dto::FileQuery>, QueryRejection>,
) -> Result<Json<super::dto::FilePage>, ApiError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidParameter,
            "limit: between 1 and 1000",
        ));
    }
    let after = q
        .cursor
        .as_deref()
        .map(super::dto::decode_file_cursor)
        .transpose()?;
    let (files, next) = state.node.output_files(after, limit).await?;
    Ok(Json(super::dto::FilePage {
        items: files.iter().map(super::dto::FileInfo::from).collect(),
        next_cursor: next.map(super::dto::encode_file_cursor),
    }))
}

/// One output file's metadata and download URL.
#[utoipa::path(
    get,
    path = "/api/v1/files/{tx}/{index}",
    tag = "files",
    params(
        ("tx" = String, Path, pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64, description = "The Proof or Verification (hex)"),
        ("index" = i64, Path, minimum = 0, description = "Position in its file list"),
    ),
    responses(
        BadInput,
        (status = 200, description = "The file", body = super::dto::FileInfo),
        Unknown,
    )
)]
async fn file_info(
    State(state): State<AppState>,
    ApiPath((tx, index)): ApiPath<(String, String)>,
) -> Result<Json<super::dto::FileInfo>, ApiError> {
    let tx = parse_hash("tx", &tx)?;
    let index: i64 = index
        .parse()
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidParameter, "index: a number"))?;
    let file = state.node.output_file(&tx, index).await?;
    Ok(Json(super::dto::FileInfo::from(&file)))
}
