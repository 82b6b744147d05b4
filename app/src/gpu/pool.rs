//! The node's GPU pool: operators' decisions and what the host and the running tasks make of
//! each GPU.

use super::{Gpu, Problem, Sysfs, SysfsError};

/// An operator's decision about a GPU's place in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolDecision {
    /// Added to the pool.
    Assigned,
    /// Taken out of the pool.
    Released,
    /// Kept in the pool but not scheduled (a reason is required).
    Reserved,
    /// Kept in the pool but under maintenance (a reason is required).
    Maintenance,
}

impl PoolDecision {
    pub const ALL: [PoolDecision; 4] = [
        PoolDecision::Assigned,
        PoolDecision::Released,
        PoolDecision::Reserved,
        PoolDecision::Maintenance,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolDecision::Assigned => "assigned",
            PoolDecision::Released => "released",
            PoolDecision::Reserved => "reserved",
            PoolDecision::Maintenance => "maintenance",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == text)
    }

    /// The verb an operator uses for it (`assign`, `release`, `reserve`, `maintenance`).
    pub fn action(self) -> &'static str {
        match self {
            PoolDecision::Assigned => "assign",
            PoolDecision::Released => "release",
            PoolDecision::Reserved => "reserve",
            PoolDecision::Maintenance => "maintenance",
        }
    }

    pub fn from_action(action: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.action() == action)
    }

    /// Whether the operator must say why.
    pub fn needs_reason(self) -> bool {
        matches!(self, PoolDecision::Reserved | PoolDecision::Maintenance)
    }
}

/// A pool decision about a GPU, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuAssignment {
    pub address: String,
    pub state: PoolDecision,
    pub reason: Option<String>,
    pub updated_by: String,
    pub updated_at_ms: i64,
}

/// Where a GPU stands for scheduling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolState {
    /// In the pool and ready; nothing runs on it.
    Free,
    /// In the pool, given to this task (id).
    Busy(i64),
    /// In the pool, set aside by an operator.
    Reserved(String),
    /// In the pool, under maintenance.
    Maintenance(String),
    /// In the pool but unusable: the reasons, each with its fix.
    NotReady(Vec<Problem>),
    /// Not in the node's pool.
    NotInPool,
}

impl PoolState {
    pub fn as_str(&self) -> &'static str {
        match self {
            PoolState::Free => "free",
            PoolState::Busy(_) => "busy",
            PoolState::Reserved(_) => "reserved",
            PoolState::Maintenance(_) => "maintenance",
            PoolState::NotReady(_) => "not_ready",
            PoolState::NotInPool => "not_in_pool",
        }
    }
}

/// A GPU (or a configured address) with its pool state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuStatus {
    pub address: String,
    /// `None` when the address is configured but sysfs has no GPU there.
    pub gpu: Option<Gpu>,
    pub in_pool: bool,
    pub state: PoolState,
    /// The last pool decision made through the API.
    pub assignment: Option<GpuAssignment>,
}

/// The host's GPUs and configured addresses with their pool state: in the pool when configured
/// (`GEVULOT_GPU_DEVICES`) or assigned through the API, unless released through the API; `busy`
/// maps the GPUs running tasks hold to their task.
pub fn pool(
    sysfs: &Sysfs,
    configured: &[String],
    assignments: &[GpuAssignment],
    busy: &std::collections::HashMap<String, i64>,
) -> Result<Vec<GpuStatus>, SysfsError> {
    let mut gpus = sysfs.gpus()?;
    let mut addresses: Vec<String> = gpus.iter().map(|g| g.function.address.clone()).collect();
    for a in configured
        .iter()
        .chain(assignments.iter().map(|a| &a.address))
    {
        if !addresses.contains(a) {
            addresses.push(a.clone());
        }
    }
    addresses.sort();
    let mut out = Vec::with_capacity(addresses.len());
    for address in addresses {
        let gpu = gpus
            .iter()
            .position(|g| g.function.address == address)
            .map(|i| gpus.swap_remove(i));
        let assignment = assignments.iter().find(|a| a.address == address).cloned();
        let decided = assignment.as_ref().map(|a| a.state);
        let in_pool = match decided {
            Some(PoolDecision::Released) => false,
            Some(_) => true,
            None => configured.contains(&address),
        };
        let reason = || {
            assignment
                .as_ref()
                .and_then(|a| a.reason.clone())
                .unwrap_or_default()
        };
        let state = if !in_pool {
            PoolState::NotInPool
        } else {
            match (&gpu, decided) {
                (None, _) => PoolState::NotReady(vec![Problem {
                    address: address.clone(),
                    message: format!("there is no GPU at {address} on this host"),
                    fix: "check the address with `lspci -D -d ::0300` and `lspci -D -d ::0302`, then fix GEVULOT_GPU_DEVICES".into(),
                }]),
                (Some(g), _) if !g.ready() => PoolState::NotReady(g.problems.clone()),
                (Some(_), _) if busy.contains_key(&address) => PoolState::Busy(busy[&address]),
                (Some(_), Some(PoolDecision::Reserved)) => PoolState::Reserved(reason()),
                (Some(_), Some(PoolDecision::Maintenance)) => PoolState::Maintenance(reason()),
                (Some(_), _) => PoolState::Free,
            }
        };
        out.push(GpuStatus {
            address,
            gpu,
            in_pool,
            state,
            assignment,
        });
    }
    Ok(out)
}
