//! Operator actions signed with the node's key: uploads (streamed to disk, BLAKE3 computed by the
//! node), deploying programs and starting runs. All need the `operator` role.
//!
//! Uploads are content-addressed: `<data>/txfiles/<blake3>/<name>`, served by the download server
//! at `<file base URL>/txfiles/<blake3>/<name>`, which is the URL the node puts into the Deploy or
//! Run it signs (peers fetch it from there, or from any peer at the same path).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use app::auth::Role;
use app::model::Source;
use app::node::{ImageSource, InputSource};
use app::tx::ResourceRequest;

use super::AppState;
use super::auth::Caller;
use super::dto::{Submitted, parse_hash};
use super::error::{ApiError, BadInput, ErrorCode, Problem};

fn unprocessable(code: ErrorCode, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name (no directories, not starting with `.`), e.g. `prover.img`.
    #[param(
        pattern = r"^[^./\\\x00-\x1f\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]*$",
        min_length = 1
    )]
    pub name: String,
}

/// Raw bytes (the document's schema of an upload's body).
#[derive(Debug)]
pub struct FileContent;

impl utoipa::PartialSchema for FileContent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for FileContent {}

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
    request_body(content = Option<FileContent>, content_type = "application/octet-stream",
        description = "The file's content (an absent or empty body is an empty file)"),
    responses(
        BadInput,
        (status = 201, description = "Stored", body = Uploaded),
        (status = 200, description = "The same content was already uploaded under this name", body = Uploaded),
        (status = 413, description = "Larger than GEVULOT_MAX_UPLOAD_BYTES", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a plain file name (`bad_file_name`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    caller.require(Role::Operator)?;
    let Query(q) =
        q.map_err(|e| ApiError::bad_request(ErrorCode::InvalidParameter, e.body_text()))?;
    let (new, uploaded) = state
        .node
        .save_upload("name", &q.name, body.into_data_stream(), &caller.actor())
        .await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Uploaded::from(&uploaded))))
}

impl From<&app::node::Uploaded> for Uploaded {
    fn from(u: &app::node::Uploaded) -> Self {
        Self {
            name: u.name.clone(),
            checksum: u.checksum.to_hex(),
            size: u.size,
            url: u.url.clone(),
        }
    }
}

/// Resources a program asks for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    #[schema(minimum = 1, maximum = 67108864)]
    pub mem_mib: u64,
    #[schema(minimum = 1, maximum = 4096)]
    pub cpus: u64,
    #[schema(maximum = 64)]
    pub gpus: u64,
}

/// A program to deploy: its image either uploaded to this node or at a URL.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    pub name: String,
    /// The image's file name; for an upload, the name it was uploaded under.
    #[schema(
        pattern = r"^[^./\\\x00-\x1f\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]*$",
        min_length = 1
    )]
    pub image_file_name: Option<String>,
    /// The checksum of an image uploaded to this node (`POST /api/v1/uploads`).
    #[schema(pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64)]
    pub upload: Option<String>,
    /// Or: where the image can be downloaded (http or https)…
    #[schema(format = "uri")]
    pub image_url: Option<String>,
    /// …and its hex BLAKE3.
    #[schema(pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64)]
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

/// The core's program spec from the request's, whose shape is checked here.
fn program_spec(field: &str, spec: &ProgramSpec) -> Result<app::node::ProgramSpec, ApiError> {
    let image = match (&spec.upload, &spec.image_url, &spec.image_checksum) {
        (Some(checksum), None, None) => ImageSource::Upload {
            checksum: checksum.clone(),
            file_name: spec.image_file_name.clone().ok_or_else(|| {
                unprocessable(
                    ErrorCode::InvalidParameter,
                    format!("{field}.image_file_name: name the uploaded file"),
                )
            })?,
        },
        (None, Some(url), Some(checksum)) => ImageSource::Url {
            url: url.clone(),
            checksum: checksum.clone(),
            file_name: spec.image_file_name.clone(),
        },
        _ => {
            return Err(unprocessable(
                ErrorCode::InvalidParameter,
                format!("{field}: give either `upload` or both `image_url` and `image_checksum`"),
            ));
        }
    };
    Ok(app::node::ProgramSpec {
        name: spec.name.clone(),
        image,
        resources: spec.resources.as_ref().map(|r| ResourceRequest {
            mem: r.mem_mib,
            cpus: r.cpus,
            gpus: r.gpus,
        }),
    })
}

/// Deploy a prover and a verifier, signed by the node (operator).
#[utoipa::path(
    post,
    path = "/api/v1/programs",
    tag = "operator",
    request_body = DeployRequest,
    responses(
        BadInput,
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
    let prover = program_spec("prover", &request.prover)?;
    let verifier = program_spec("verifier", &request.verifier)?;
    let deployed = state
        .node
        .deploy(
            request.name,
            &prover,
            &verifier,
            Source::Rest,
            &caller.actor(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Deployed {
            hash: deployed.hash.to_hex(),
            prover: deployed.prover.to_hex(),
            verifier: deployed.verifier.to_hex(),
        }),
    ))
}

/// An input file of a workflow step: by URL, by upload, or from an earlier step's program.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Where the program finds it, under `/workspace/`.
    pub file_name: String,
    /// Where to download it (http or https)…
    #[schema(format = "uri")]
    pub url: Option<String>,
    /// …and its hex BLAKE3.
    #[schema(pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64)]
    pub checksum: Option<String>,
    /// Or: the checksum of a file uploaded to this node…
    #[schema(pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64)]
    pub upload: Option<String>,
    /// …and the name it was uploaded under.
    #[schema(
        pattern = r"^[^./\\\x00-\x1f\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]*$",
        min_length = 1
    )]
    pub upload_name: Option<String>,
    /// Or: the program hash of an earlier step that writes this file.
    #[schema(pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64)]
    pub from_program: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Program hash (hex).
    #[schema(pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64)]
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The workflow's steps, run in order.
    #[schema(min_items = 1)]
    pub steps: Vec<StepSpec>,
}

/// The core's step specs from the request's, whose shape is checked here.
fn step_specs(request: &RunRequest) -> Result<Vec<app::node::StepSpec>, ApiError> {
    let mut steps = Vec::with_capacity(request.steps.len());
    for (i, step) in request.steps.iter().enumerate() {
        let field = format!("steps[{i}]");
        let inputs = step
            .inputs
            .iter()
            .enumerate()
            .map(|(j, spec)| input(&format!("{field}.inputs[{j}]"), spec))
            .collect::<Result<Vec<_>, _>>()?;
        steps.push(app::node::StepSpec {
            program: parse_hash(&format!("{field}.program"), &step.program)?,
            args: step.args.clone(),
            inputs,
        });
    }
    Ok(steps)
}

fn input(field: &str, spec: &InputSpec) -> Result<app::node::InputSpec, ApiError> {
    let source = match (
        (&spec.url, &spec.checksum),
        (&spec.upload, &spec.upload_name),
        &spec.from_program,
    ) {
        ((Some(url), Some(checksum)), (None, None), None) => InputSource::Url {
            url: url.clone(),
            checksum: checksum.clone(),
        },
        ((None, None), (Some(checksum), Some(name)), None) => InputSource::Upload {
            checksum: checksum.clone(),
            name: name.clone(),
        },
        ((None, None), (None, None), Some(program)) => {
            InputSource::FromProgram(parse_hash(&format!("{field}.from_program"), program)?)
        }
        _ => {
            return Err(unprocessable(
                ErrorCode::InvalidParameter,
                format!(
                    "{field}: give `url` and `checksum`, or `upload` and `upload_name`, or `from_program`"
                ),
            ));
        }
    };
    Ok(app::node::InputSpec {
        file_name: spec.file_name.clone(),
        source,
    })
}

/// Start a workflow on deployed programs, signed by the node (operator).
#[utoipa::path(
    post,
    path = "/api/v1/runs",
    tag = "operator",
    request_body = RunRequest,
    responses(
        BadInput,
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
    let steps = step_specs(&request)?;
    let hash = state
        .node
        .start_run(&steps, Source::Rest, &caller.actor())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            hash: hash.to_hex(),
            new: true,
        }),
    ))
}
