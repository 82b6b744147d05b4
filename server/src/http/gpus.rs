//! GPU inventory and pool assignments over the core's sysfs reader (`app::gpu`) and the
//! database. Reading is public like the rest of the node's state; changing the pool needs an
//! operator.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use app::auth::Role;
use app::gpu::{GpuStatus, PoolDecision, PoolState};

use super::AppState;
use super::auth::Caller;
use super::dto::rfc3339;
use super::error::{ApiError, ApiPath, BadInput, ErrorCode, Problem};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PciFunctionInfo {
    pub address: String,
    /// e.g. `VGA controller`, `audio device`, `USB controller`.
    pub kind: String,
    pub vendor_id: String,
    pub device_id: String,
    /// The device's name in the PCI ID database, e.g. `AD102 High Definition Audio Controller`.
    pub name: Option<String>,
    pub driver: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GpuProblem {
    pub address: String,
    pub message: String,
    /// The command that fixes it.
    pub fix: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GpuInfo {
    /// PCI address, e.g. `0000:01:00.0`.
    pub address: String,
    /// The name operators know it by (`NVIDIA GeForce RTX 4090`, from the PCI ID database);
    /// absent when the address is configured but the host has no GPU there.
    pub model: Option<String>,
    pub driver: Option<String>,
    pub iommu_group: Option<String>,
    pub numa_node: Option<u32>,
    /// Every function of the IOMMU group; a VM using the GPU gets all of them.
    pub group: Vec<PciFunctionInfo>,
    pub in_pool: bool,
    /// `free`, `busy`, `reserved`, `maintenance`, `not_ready` or `not_in_pool`.
    pub state: String,
    /// The task running on it, when busy.
    pub task: Option<i64>,
    /// Why it is reserved or in maintenance.
    pub reason: Option<String>,
    /// What keeps it from being passed through, each with its fix.
    pub problems: Vec<GpuProblem>,
    /// Who last changed its pool state through the API, and when.
    pub updated_by: Option<String>,
    pub updated_at: Option<String>,
}

impl From<&GpuStatus> for GpuInfo {
    fn from(s: &GpuStatus) -> Self {
        let g = s.gpu.as_ref();
        let problems = match &s.state {
            PoolState::NotReady(p) => p.clone(),
            _ => g.map(|g| g.problems.clone()).unwrap_or_default(),
        };
        Self {
            address: s.address.clone(),
            model: g.map(app::gpu::Gpu::model),
            driver: g.and_then(|g| g.function.driver.clone()),
            iommu_group: g.and_then(|g| g.function.iommu_group.clone()),
            numa_node: g.and_then(|g| g.function.numa_node),
            group: g
                .map(|g| {
                    g.group
                        .iter()
                        .map(|f| PciFunctionInfo {
                            address: f.address.clone(),
                            kind: f.kind().to_string(),
                            vendor_id: format!("{:04x}", f.vendor),
                            device_id: format!("{:04x}", f.device),
                            name: app::gpu::names::device(f.vendor, f.device).map(str::to_string),
                            driver: f.driver.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            in_pool: s.in_pool,
            state: s.state.as_str().to_string(),
            task: match s.state {
                PoolState::Busy(t) => Some(t),
                _ => None,
            },
            reason: match &s.state {
                PoolState::Reserved(r) | PoolState::Maintenance(r) => Some(r.clone()),
                _ => None,
            },
            problems: problems
                .into_iter()
                .map(|p| GpuProblem {
                    address: p.address,
                    message: p.message,
                    fix: p.fix,
                })
                .collect(),
            updated_by: s.assignment.as_ref().map(|a| a.updated_by.clone()),
            updated_at: s.assignment.as_ref().map(|a| rfc3339(a.updated_at_ms)),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GpuList {
    pub items: Vec<GpuInfo>,
}

/// The host's GPUs, their IOMMU groups and drivers, and the node's pool.
#[utoipa::path(
    get,
    path = "/api/v1/gpus",
    tag = "gpus",
    responses((status = 200, description = "GPUs and configured addresses", body = GpuList))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<GpuList>, ApiError> {
    let items = state.node.gpus().await?.iter().map(GpuInfo::from).collect();
    Ok(Json(GpuList { items }))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolChange {
    /// `assign` (add to the pool), `release` (remove), `reserve` or `maintenance` (keep but
    /// do not schedule; needs a reason).
    #[schema(value_type = PoolAction)]
    pub action: String,
    /// Why (shown on the GPUs page and in the audit log); `reserve` and `maintenance` need one.
    pub reason: Option<String>,
}

/// What a pool change does (the document's enumeration of `PoolChange.action`).
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
#[expect(
    dead_code,
    reason = "it only describes a value in the OpenAPI document"
)]
pub enum PoolAction {
    Assign,
    Release,
    Reserve,
    Maintenance,
}

/// Change a GPU's place in the pool (operator).
#[utoipa::path(
    put,
    path = "/api/v1/gpus/{address}",
    tag = "gpus",
    params(("address" = String, Path, pattern = r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", description = "PCI address, e.g. 0000:01:00.0")),
    request_body = PoolChange,
    responses(
        BadInput,
        (status = 200, description = "The GPU after the change", body = GpuInfo),
        (status = 404, description = "No GPU at that address", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown action, or no reason", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(address): ApiPath<String>,
    body: Bytes,
) -> Result<Json<GpuInfo>, ApiError> {
    caller.require(Role::Operator)?;
    let change: PoolChange = super::dto::json_body(&body)?;
    let updated = apply_change(&state, &address, &change, &caller.actor()).await?;
    let info = updated
        .iter()
        .find(|s| s.address == address)
        .map(GpuInfo::from)
        .ok_or_else(|| ApiError::not_found(format!("there is no GPU at {address}")))?;
    Ok(Json(info))
}

/// Changes a GPU's place in the pool (the REST API's and the console's change); returns the
/// statuses after the change.
pub async fn apply_change(
    state: &AppState,
    address: &str,
    change: &PoolChange,
    by: &app::model::Actor,
) -> Result<Vec<GpuStatus>, ApiError> {
    let Some(decision) = PoolDecision::from_action(&change.action) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidParameter,
            format!(
                "action {:?} is not one of assign, release, reserve, maintenance",
                change.action
            ),
        ));
    };
    Ok(state
        .node
        .change_gpu(address, decision, change.reason.as_deref(), by)
        .await?)
}
