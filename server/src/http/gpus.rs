//! GPU inventory and pool assignments over the core's sysfs reader (`app::gpu`) and the
//! database. Reading is public like the rest of the node's state; changing the pool needs an
//! operator.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use app::auth::Role;
use std::collections::BTreeMap;

use app::gpu::{GpuStatus, PoolState};
use app::vm::qemu::GpuPassthrough;

use super::AppState;
use super::auth::Caller;
use super::dto::rfc3339;
use super::error::{ApiError, Problem};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PciFunctionInfo {
    pub address: String,
    /// e.g. `VGA controller`, `audio device`, `USB controller`.
    pub kind: String,
    pub vendor_id: String,
    pub device_id: String,
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
    /// Absent when the address is configured but the host has no GPU there.
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

pub(crate) async fn statuses(state: &AppState) -> Result<Vec<GpuStatus>, ApiError> {
    let assignments = state.store().gpu_assignments().await?;
    let sysfs = state.sysfs.clone();
    let configured = state.resources.gpu_devices.clone();
    let busy = state
        .pipeline
        .as_ref()
        .map(|p| p.busy_gpus())
        .unwrap_or_default();
    tokio::task::spawn_blocking(move || app::gpu::pool(&sysfs, &configured, &assignments, &busy))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "GPU inventory failed",
            )
        })?
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sysfs_unavailable",
                format!("{e}; check GEVULOT_SYSFS_ROOT"),
            )
        })
}

/// The GPUs programs may get: in the pool, ready, and neither reserved nor in maintenance (a busy
/// one stays: it is free again when its task ends), each with the functions it passes through.
pub fn usable(statuses: &[GpuStatus]) -> BTreeMap<String, GpuPassthrough> {
    statuses
        .iter()
        .filter(|s| matches!(s.state, PoolState::Free | PoolState::Busy(_)))
        .filter_map(|s| {
            let gpu = s.gpu.as_ref()?;
            Some((
                s.address.clone(),
                GpuPassthrough {
                    functions: gpu
                        .passthrough_functions()
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                },
            ))
        })
        .collect()
}

/// Tells the pipeline which GPUs it may use now.
pub async fn refresh_pool(state: &AppState) -> Result<(), ApiError> {
    if let Some(pipeline) = &state.pipeline {
        pipeline.set_gpu_pool(usable(&statuses(state).await?));
    }
    Ok(())
}

/// The host's GPUs, their IOMMU groups and drivers, and the node's pool.
#[utoipa::path(
    get,
    path = "/api/v1/gpus",
    tag = "gpus",
    responses((status = 200, description = "GPUs and configured addresses", body = GpuList))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<GpuList>, ApiError> {
    let items = statuses(&state).await?.iter().map(GpuInfo::from).collect();
    Ok(Json(GpuList { items }))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolChange {
    /// `assign` (add to the pool), `release` (remove), `reserve` or `maintenance` (keep but
    /// do not schedule; needs a reason).
    pub action: String,
    pub reason: Option<String>,
}

/// Change a GPU's place in the pool (operator).
#[utoipa::path(
    put,
    path = "/api/v1/gpus/{address}",
    tag = "gpus",
    params(("address" = String, Path, description = "PCI address, e.g. 0000:01:00.0")),
    request_body = PoolChange,
    responses(
        (status = 200, description = "The GPU after the change", body = GpuInfo),
        (status = 404, description = "No GPU at that address", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown action, or no reason", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Path(address): Path<String>,
    body: Bytes,
) -> Result<Json<GpuInfo>, ApiError> {
    caller.require(Role::Operator)?;
    let change: PoolChange = super::dto::json_body(&body)?;
    let updated = apply_change(&state, &address, &change, &caller.user.username).await?;
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
    by: &str,
) -> Result<Vec<GpuStatus>, ApiError> {
    let known = statuses(state)
        .await?
        .iter()
        .any(|s| s.address == address && s.gpu.is_some());
    let stored_state = match change.action.as_str() {
        "assign" => "assigned",
        "release" => "released",
        "reserve" => "reserved",
        "maintenance" => "maintenance",
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_parameter",
                format!("action {other:?} is not one of assign, release, reserve, maintenance"),
            ));
        }
    };
    if !known && stored_state != "released" {
        return Err(ApiError::not_found(format!(
            "there is no GPU at {address} on this host (see GET /api/v1/gpus)"
        )));
    }
    let reason = change
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if matches!(stored_state, "reserved" | "maintenance") && reason.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_parameter",
            "reason: say why the GPU is set aside, for the other operators",
        ));
    }
    state
        .store()
        .set_gpu_assignment(address, stored_state, reason, by)
        .await?;
    tracing::info!(target: "gevulot", by = %by, gpu = %address, state = stored_state, "GPU pool changed");
    let updated = statuses(state).await?;
    if let Some(pipeline) = &state.pipeline {
        pipeline.set_gpu_pool(usable(&updated));
    }
    Ok(updated)
}
