//! Operator actions signed with the node's key: uploads (streamed to disk, BLAKE3 computed by the
//! node), deploying programs and starting runs. All need the `operator` role.
//!
//! Uploads are content-addressed: `<data>/txfiles/<blake3>/<name>`, served by the download server
//! at `<file base URL>/txfiles/<blake3>/<name>`, which is the URL the node puts into the Deploy or
//! Run it signs (peers fetch it from there, or from any peer at the same path).

use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use utoipa::{IntoParams, ToSchema};

use app::auth::Role;
use app::model::Source;
use app::tx::{
    Hash, Payload, ProgramData, ProgramMetadata, ResourceRequest, Workflow, WorkflowStep,
};
use app::validate::file_name_problem;

use super::AppState;
use super::auth::Caller;
use super::dto::{Submitted, parse_hash};
use super::error::{ApiError, Problem};
use super::rpc::calls;

fn unprocessable(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if let Some(problem) = file_name_problem(name) {
        return Err(unprocessable(
            "bad_file_name",
            format!("{field}: {problem}"),
        ));
    }
    if name.starts_with('.') {
        return Err(unprocessable(
            "bad_file_name",
            format!("{field}: a file name must not start with '.'"),
        ));
    }
    Ok(())
}

fn upload_path(data_dir: &Path, checksum: &str, name: &str) -> PathBuf {
    data_dir.join("txfiles").join(checksum).join(name)
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name (no directories), e.g. `prover.img`.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Uploaded {
    pub name: String,
    /// Hex BLAKE3 of the content, computed by the node.
    pub checksum: String,
    pub size: u64,
    /// Where the node serves it; use in Deploy and Run requests.
    pub url: String,
}

/// Upload a file (operator). The body is the raw content; it is streamed to disk and hashed.
#[utoipa::path(
    post,
    path = "/api/v1/uploads",
    tag = "operator",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = Uploaded),
        (status = 200, description = "The same content was already uploaded under this name", body = Uploaded),
        (status = 413, description = "Larger than GEVULOT_MAX_UPLOAD_BYTES", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    caller.require(Role::Operator)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))?;
    let (new, uploaded) = save_upload(
        &state,
        "name",
        &q.name,
        body.into_data_stream(),
        &caller.user.username,
    )
    .await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(uploaded)))
}

/// Streams an upload named `name` to disk, hashing it, and stores it where the node serves it
/// (`txfiles/<checksum>/<name>`) and where downloads look first (`content/<checksum>`). Returns
/// whether it is new. `field` names the name's origin in errors.
pub async fn save_upload<S, E>(
    state: &AppState,
    field: &str,
    name: &str,
    stream: S,
    by: &str,
) -> Result<(bool, Uploaded), ApiError>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    check_name(field, name)?;
    let tmp_dir = state.data_dir.join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(|e| io_error("cannot create the upload directory", &e))?;
    let mut suffix = [0u8; 8];
    let _ = getrandom::fill(&mut suffix);
    let tmp = tmp_dir.join(format!(".upload-{}", hex::encode(suffix)));
    let result = receive(state, stream, &tmp).await;
    let (checksum, size) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    let dest = upload_path(&state.data_dir, &checksum, name);
    let uploaded = Uploaded {
        url: format!("{}/txfiles/{checksum}/{name}", state.file_base_url),
        name: name.to_string(),
        checksum,
        size,
    };
    if tokio::fs::metadata(&dest).await.is_ok_and(|m| m.is_file()) {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Ok((false, uploaded));
    }
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io_error("cannot create the upload's directory", &e))?;
    }
    // The file appears under its final name only once complete and verified.
    tokio::fs::rename(&tmp, &dest)
        .await
        .map_err(|e| io_error("cannot move the upload into place", &e))?;
    // Programs and inputs naming this content find it without downloading it from the node itself.
    let content = state.data_dir.join("content");
    if tokio::fs::create_dir_all(&content).await.is_ok() {
        let _ = tokio::fs::hard_link(&dest, content.join(&uploaded.checksum)).await;
    }
    tracing::info!(target: "gevulot", by = %by, name = %uploaded.name, checksum = %uploaded.checksum, size_bytes = uploaded.size, "upload stored");
    Ok((true, uploaded))
}

fn io_error(what: &str, e: &std::io::Error) -> ApiError {
    tracing::error!(target: "gevulot", error = %e, "{what}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        format!("{what}; check the data directory's free space and permissions"),
    )
}

/// Streams `stream` into `tmp`, hashing as it goes; returns the hex BLAKE3 and the size.
async fn receive<S, E>(
    state: &AppState,
    mut stream: S,
    tmp: &Path,
) -> Result<(String, u64), ApiError>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| io_error("cannot create the upload file", &e))?;
    let mut hasher = blake3::Hasher::new();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk.map_err(|e| {
            ApiError::bad_request("malformed_body", format!("the upload broke off: {e}"))
        })?;
        size += chunk.len() as u64;
        if size > state.max_upload_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the upload is larger than {} bytes (GEVULOT_MAX_UPLOAD_BYTES)",
                    state.max_upload_bytes
                ),
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| io_error("cannot write the upload", &e))?;
    }
    file.sync_all()
        .await
        .map_err(|e| io_error("cannot write the upload", &e))?;
    Ok((hasher.finalize().to_hex().to_string(), size))
}

/// Resources a program asks for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub mem_mib: u64,
    pub cpus: u64,
    pub gpus: u64,
}

/// A program to deploy: its image either uploaded to this node or at a URL.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    pub name: String,
    /// The image's file name; for an upload, the name it was uploaded under.
    pub image_file_name: Option<String>,
    /// The checksum of an image uploaded to this node (`POST /api/v1/uploads`).
    pub upload: Option<String>,
    /// Or: where the image can be downloaded…
    pub image_url: Option<String>,
    /// …and its hex BLAKE3.
    pub image_checksum: Option<String>,
    /// Defaults to 2048 MiB, 2 CPUs, no GPU.
    pub resources: Option<ResourceSpec>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// A name for the pair.
    pub name: String,
    pub prover: ProgramSpec,
    pub verifier: ProgramSpec,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deployed {
    /// The Deploy transaction.
    pub hash: String,
    /// The prover's program hash.
    pub prover: String,
    /// The verifier's program hash.
    pub verifier: String,
}

fn program_metadata(
    state: &AppState,
    field: &str,
    spec: &ProgramSpec,
) -> Result<ProgramMetadata, ApiError> {
    let (image_file_name, image_file_url, image_file_checksum) =
        match (&spec.upload, &spec.image_url, &spec.image_checksum) {
            (Some(checksum), None, None) => {
                let name = spec.image_file_name.clone().ok_or_else(|| {
                    unprocessable(
                        "invalid_parameter",
                        format!("{field}.image_file_name: name the uploaded file"),
                    )
                })?;
                check_name(&format!("{field}.image_file_name"), &name)?;
                let checksum = checksum.to_ascii_lowercase();
                uploaded(state, field, &checksum, &name)?;
                let url = format!("{}/txfiles/{checksum}/{name}", state.file_base_url);
                (name, url, checksum)
            }
            (None, Some(url), Some(checksum)) => {
                let name = match &spec.image_file_name {
                    Some(n) => n.clone(),
                    None => url
                        .rsplit('/')
                        .next()
                        .filter(|n| !n.is_empty())
                        .unwrap_or("image")
                        .to_string(),
                };
                (name, url.clone(), checksum.to_ascii_lowercase())
            }
            _ => {
                return Err(unprocessable(
                    "invalid_parameter",
                    format!(
                        "{field}: give either `upload` or both `image_url` and `image_checksum`"
                    ),
                ));
            }
        };
    let mut meta = ProgramMetadata {
        name: spec.name.clone(),
        hash: Hash::default(),
        image_file_name,
        image_file_url,
        image_file_checksum,
        resource_requirements: spec.resources.as_ref().map(|r| ResourceRequest {
            mem: r.mem_mib,
            cpus: r.cpus,
            gpus: r.gpus,
        }),
    };
    meta.hash = meta.compute_hash();
    Ok(meta)
}

/// Checks that an upload exists on this node.
fn uploaded(state: &AppState, field: &str, checksum: &str, name: &str) -> Result<(), ApiError> {
    let is_hash = Hash::from_hex(checksum).is_some();
    if !is_hash || !upload_path(&state.data_dir, checksum, name).is_file() {
        return Err(unprocessable(
            "unknown_upload",
            format!(
                "{field}: no upload {name:?} with checksum {checksum} on this node; upload it first"
            ),
        ));
    }
    Ok(())
}

/// Deploy a prover and a verifier, signed by the node (operator).
#[utoipa::path(
    post,
    path = "/api/v1/programs",
    tag = "operator",
    request_body = DeployRequest,
    responses(
        (status = 201, description = "The Deploy transaction was stored", body = Deployed),
        (status = 422, description = "Refused by a rule, or an unknown upload", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Deployed>), ApiError> {
    caller.require(Role::Operator)?;
    let request: DeployRequest = super::dto::json_body(&body)?;
    let deployed = deploy_programs(&state, request, Source::Rest, &caller.user.username).await?;
    Ok((StatusCode::CREATED, Json(deployed)))
}

/// Signs and submits a Deploy of `request` (the REST API's and the console's deploy).
pub async fn deploy_programs(
    state: &AppState,
    request: DeployRequest,
    source: Source,
    by: &str,
) -> Result<Deployed, ApiError> {
    let state = state.clone();
    let prover = program_metadata(&state, "prover", &request.prover)?;
    let verifier = program_metadata(&state, "verifier", &request.verifier)?;
    let deployed = Deployed {
        hash: String::new(),
        prover: prover.hash.to_hex(),
        verifier: verifier.hash.to_hex(),
    };
    let (tx, _) = calls::sign_and_submit(
        &state,
        Payload::Deploy {
            name: request.name,
            prover,
            verifier,
        },
        source,
    )
    .await?;
    tracing::info!(target: "gevulot", by = %by, deploy = %tx.hash, "programs deployed");
    Ok(Deployed {
        hash: tx.hash.to_hex(),
        ..deployed
    })
}

/// An input file of a workflow step: by URL, by upload, or from an earlier step's program.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Where the program finds it, under `/workspace/`.
    pub file_name: String,
    pub url: Option<String>,
    /// Hex BLAKE3 (with `url`).
    pub checksum: Option<String>,
    /// The checksum of a file uploaded to this node…
    pub upload: Option<String>,
    /// …and the name it was uploaded under.
    pub upload_name: Option<String>,
    /// Or: the program hash of an earlier step that writes this file.
    pub from_program: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Program hash (hex).
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub steps: Vec<StepSpec>,
}

fn input(state: &AppState, field: &str, spec: &InputSpec) -> Result<ProgramData, ApiError> {
    let bad = || {
        unprocessable(
            "invalid_parameter",
            format!(
                "{field}: give `url` and `checksum`, or `upload` and `upload_name`, or `from_program`"
            ),
        )
    };
    match (
        (&spec.url, &spec.checksum),
        (&spec.upload, &spec.upload_name),
        &spec.from_program,
    ) {
        ((Some(url), Some(checksum)), (None, None), None) => Ok(ProgramData::Input {
            file_name: spec.file_name.clone(),
            file_url: url.clone(),
            checksum: checksum.to_ascii_lowercase(),
        }),
        ((None, None), (Some(checksum), Some(name)), None) => {
            let checksum = checksum.to_ascii_lowercase();
            uploaded(state, field, &checksum, name)?;
            Ok(ProgramData::Input {
                file_name: spec.file_name.clone(),
                file_url: format!("{}/txfiles/{checksum}/{name}", state.file_base_url),
                checksum,
            })
        }
        ((None, None), (None, None), Some(program)) => Ok(ProgramData::Output {
            source_program: parse_hash(&format!("{field}.from_program"), program)?,
            file_name: spec.file_name.clone(),
        }),
        _ => Err(bad()),
    }
}

/// Start a workflow on deployed programs, signed by the node (operator).
#[utoipa::path(
    post,
    path = "/api/v1/runs",
    tag = "operator",
    request_body = RunRequest,
    responses(
        (status = 201, description = "The Run transaction was stored", body = Submitted),
        (status = 422, description = "Refused by a rule, or an unknown upload", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    caller.require(Role::Operator)?;
    let request: RunRequest = super::dto::json_body(&body)?;
    let hash = start_run(&state, &request, Source::Rest, &caller.user.username).await?;
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            hash: hash.to_hex(),
            new: true,
        }),
    ))
}

/// Signs and submits a Run of `request` (the REST API's and the console's run).
pub async fn start_run(
    state: &AppState,
    request: &RunRequest,
    source: Source,
    by: &str,
) -> Result<Hash, ApiError> {
    let state = state.clone();
    let mut steps = Vec::with_capacity(request.steps.len());
    for (i, step) in request.steps.iter().enumerate() {
        let field = format!("steps[{i}]");
        let inputs = step
            .inputs
            .iter()
            .enumerate()
            .map(|(j, spec)| input(&state, &format!("{field}.inputs[{j}]"), spec))
            .collect::<Result<Vec<_>, _>>()?;
        steps.push(WorkflowStep {
            program: parse_hash(&format!("{field}.program"), &step.program)?,
            args: step.args.clone(),
            inputs,
        });
    }
    let (tx, _) = calls::sign_and_submit(
        &state,
        Payload::Run {
            workflow: Workflow { steps },
        },
        source,
    )
    .await?;
    tracing::info!(target: "gevulot", by = %by, run = %tx.hash, "run started");
    Ok(tx.hash)
}
