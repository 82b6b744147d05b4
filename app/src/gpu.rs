//! GPU inventory from sysfs, read through a configurable root so tests can use fixture trees.
//!
//! A GPU is a PCI function of class `0x0300` (VGA) or `0x0302` (3D controller). Passthrough
//! hands a VM its whole IOMMU group, so each GPU comes with every function in its group (audio,
//! USB-C controller, or a foreign device sharing the group), and is ready only when every one of
//! them is bound to `vfio-pci` (PCI bridges excepted). Each problem carries the exact fix, in the
//! installation guide's words (`driverctl set-override … vfio-pci`).

use std::path::{Path, PathBuf};

/// A PCI function as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// `0000:01:00.0`
    pub address: String,
    /// The 24-bit class code, e.g. `0x030000`.
    pub class: u32,
    pub vendor: u16,
    pub device: u16,
    /// The bound driver, e.g. `vfio-pci`, `nvidia`, `snd_hda_intel`.
    pub driver: Option<String>,
    pub iommu_group: Option<String>,
    /// `None` when sysfs says -1 (no NUMA information).
    pub numa_node: Option<u32>,
}

impl PciFunction {
    pub fn is_gpu(&self) -> bool {
        matches!(self.class >> 8, 0x0300 | 0x0302)
    }

    /// PCI-to-PCI bridges may stay with their host driver inside a group.
    fn is_bridge(&self) -> bool {
        self.class >> 8 == 0x0604
    }

    /// A short description of the function's class.
    pub fn kind(&self) -> &'static str {
        match self.class >> 8 {
            0x0300 => "VGA controller",
            0x0302 => "3D controller",
            0x0403 => "audio device",
            0x0c03 => "USB controller",
            0x0c80 => "serial bus controller",
            0x0200 => "network controller",
            0x0604 => "PCI bridge",
            _ => "PCI device",
        }
    }

    pub fn vendor_name(&self) -> &'static str {
        match self.vendor {
            0x10de => "NVIDIA",
            0x1002 => "AMD",
            0x8086 => "Intel",
            _ => "unknown vendor",
        }
    }
}

/// Why a GPU cannot be passed through, with the command that fixes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The function the problem is about.
    pub address: String,
    pub message: String,
    pub fix: String,
}

/// A GPU with its IOMMU group and readiness for passthrough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu {
    pub function: PciFunction,
    /// Every function of the GPU's IOMMU group, the GPU included, by address.
    pub group: Vec<PciFunction>,
    /// Empty when the GPU can be passed through.
    pub problems: Vec<Problem>,
}

impl Gpu {
    pub fn address(&self) -> &str {
        &self.function.address
    }

    pub fn model(&self) -> String {
        format!(
            "{} device {:04x}",
            self.function.vendor_name(),
            self.function.device
        )
    }

    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }

    /// The functions QEMU gets `-device vfio-pci,host=…` for: the whole group but bridges.
    pub fn passthrough_functions(&self) -> Vec<&str> {
        self.group
            .iter()
            .filter(|f| !f.is_bridge())
            .map(|f| f.address.as_str())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("cannot read the PCI devices in {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Reads sysfs below `root` (`/` on a real host).
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

fn read_hex(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

fn link_name(path: &Path) -> Option<String> {
    std::fs::read_link(path)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn devices_dir(&self) -> PathBuf {
        self.root.join("sys/bus/pci/devices")
    }

    /// One PCI function, or `None` when sysfs has no such device.
    pub fn function(&self, address: &str) -> Option<PciFunction> {
        let dir = self.devices_dir().join(address);
        let class = read_hex(&dir.join("class"))?;
        let numa_node = std::fs::read_to_string(dir.join("numa_node"))
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .and_then(|n| u32::try_from(n).ok());
        Some(PciFunction {
            address: address.to_string(),
            class,
            vendor: read_hex(&dir.join("vendor")).and_then(|v| u16::try_from(v).ok())?,
            device: read_hex(&dir.join("device")).and_then(|v| u16::try_from(v).ok())?,
            driver: link_name(&dir.join("driver")),
            iommu_group: link_name(&dir.join("iommu_group")),
            numa_node,
        })
    }

    /// Every function of an IOMMU group, sorted by address.
    pub fn group_members(&self, group: &str) -> Vec<PciFunction> {
        let dir = self
            .root
            .join("sys/kernel/iommu_groups")
            .join(group)
            .join("devices");
        let mut members: Vec<PciFunction> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| self.function(&e.file_name().to_string_lossy()))
            .collect();
        members.sort_by(|a, b| a.address.cmp(&b.address));
        members
    }

    /// Every GPU on the host, sorted by address.
    pub fn gpus(&self) -> Result<Vec<Gpu>, SysfsError> {
        let dir = self.devices_dir();
        let entries = std::fs::read_dir(&dir).map_err(|source| SysfsError::Read {
            path: dir.display().to_string(),
            source,
        })?;
        let mut gpus: Vec<Gpu> = entries
            .flatten()
            .filter_map(|e| self.function(&e.file_name().to_string_lossy()))
            .filter(PciFunction::is_gpu)
            .map(|f| self.describe(f))
            .collect();
        gpus.sort_by(|a, b| a.function.address.cmp(&b.function.address));
        Ok(gpus)
    }

    /// The GPU at `address`, if it is one.
    pub fn gpu(&self, address: &str) -> Option<Gpu> {
        self.function(address)
            .filter(PciFunction::is_gpu)
            .map(|f| self.describe(f))
    }

    fn describe(&self, function: PciFunction) -> Gpu {
        let mut problems = Vec::new();
        let group = match &function.iommu_group {
            Some(g) => self.group_members(g),
            None => {
                problems.push(Problem {
                    address: function.address.clone(),
                    message: "the GPU is in no IOMMU group: the IOMMU is off, so it cannot be passed through".into(),
                    fix: "enable VT-d/AMD-Vi in the firmware and boot with `intel_iommu=on iommu=pt` (or `amd_iommu=on iommu=pt`) on the kernel command line".into(),
                });
                vec![function.clone()]
            }
        };
        for member in &group {
            if member.is_bridge() || member.driver.as_deref() == Some("vfio-pci") {
                continue;
            }
            let is_gpu = member.address == function.address;
            let foreign = !is_gpu
                && member.address.rsplit_once('.').map(|(s, _)| s)
                    != function.address.rsplit_once('.').map(|(s, _)| s);
            let bound = match &member.driver {
                Some(d) => format!("is bound to {d}"),
                None => "has no driver".to_string(),
            };
            let mut fix = format!("sudo driverctl set-override {} vfio-pci", member.address);
            match member.driver.as_deref() {
                Some("nouveau") => fix.push_str(
                    " (and keep nouveau away: `blacklist nouveau` in /etc/modprobe.d/nvidia.conf)",
                ),
                Some("nvidia") => fix.push_str(&format!(
                    " (and let vfio-pci claim it at boot: `options vfio-pci ids={:04x}:{:04x}` and \
                     `softdep nvidia pre: vfio-pci` in /etc/modprobe.d/vfio.conf)",
                    member.vendor, member.device
                )),
                _ => {}
            }
            let what = if is_gpu {
                "the GPU".to_string()
            } else if foreign {
                format!(
                    "{} {} ({}), another device in the GPU's IOMMU group,",
                    member.vendor_name(),
                    member.kind(),
                    member.address
                )
            } else {
                format!("its {} function {}", member.kind(), member.address)
            };
            let message = if foreign {
                format!(
                    "{what} {bound}; a VM gets the whole group, so it must be bound to vfio-pci too (or moved to another slot)"
                )
            } else {
                format!("{what} {bound}, not vfio-pci")
            };
            problems.push(Problem {
                address: member.address.clone(),
                message,
                fix,
            });
        }
        Gpu {
            function,
            group,
            problems,
        }
    }
}

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

/// Builds fixture sysfs trees for tests (real layouts: a GPU with audio and USB functions, a
/// group with a foreign device, a host without IOMMU).
pub mod fixture {
    use std::path::Path;

    /// One function to write: address, class, vendor, device, driver, IOMMU group, NUMA node.
    pub type Spec<'a> = (
        &'a str,
        u32,
        u16,
        u16,
        Option<&'a str>,
        Option<&'a str>,
        i32,
    );

    pub fn write(root: &Path, functions: &[Spec<'_>]) -> std::io::Result<()> {
        let devices = root.join("sys/bus/pci/devices");
        let drivers = root.join("sys/bus/pci/drivers");
        let groups = root.join("sys/kernel/iommu_groups");
        std::fs::create_dir_all(&devices)?;
        for (address, class, vendor, device, driver, group, numa) in functions {
            let dir = devices.join(address);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("class"), format!("0x{class:06x}\n"))?;
            std::fs::write(dir.join("vendor"), format!("0x{vendor:04x}\n"))?;
            std::fs::write(dir.join("device"), format!("0x{device:04x}\n"))?;
            std::fs::write(dir.join("numa_node"), format!("{numa}\n"))?;
            if let Some(driver) = driver {
                std::fs::create_dir_all(drivers.join(driver))?;
                symlink(&drivers.join(driver), &dir.join("driver"))?;
            }
            if let Some(group) = group {
                let g = groups.join(group);
                std::fs::create_dir_all(g.join("devices"))?;
                symlink(&g, &dir.join("iommu_group"))?;
                symlink(&dir, &g.join("devices").join(address))?;
            }
        }
        Ok(())
    }

    /// Rebinds a fixture function to `driver` (as `driverctl set-override` would on a host).
    pub fn bind(root: &Path, address: &str, driver: &str) -> std::io::Result<()> {
        let link = root
            .join("sys/bus/pci/devices")
            .join(address)
            .join("driver");
        let target = root.join("sys/bus/pci/drivers").join(driver);
        std::fs::create_dir_all(&target)?;
        let _ = std::fs::remove_file(&link);
        symlink(&target, &link)
    }

    #[cfg(unix)]
    fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    #[cfg(not(unix))]
    fn symlink(_: &Path, _: &Path) -> std::io::Result<()> {
        Err(std::io::Error::other("symlinks need unix"))
    }

    /// A workstation: an RTX 4090 with audio and USB-C functions in IOMMU group 12, all on
    /// vfio-pci but the USB controller (still on xhci_hcd); a second GPU that shares group 13
    /// with a network card; the host's own VGA on nouveau.
    pub fn workstation(root: &Path) -> std::io::Result<()> {
        write(
            root,
            &[
                (
                    "0000:01:00.0",
                    0x030000,
                    0x10de,
                    0x2684,
                    Some("vfio-pci"),
                    Some("12"),
                    0,
                ),
                (
                    "0000:01:00.1",
                    0x040300,
                    0x10de,
                    0x22ba,
                    Some("vfio-pci"),
                    Some("12"),
                    0,
                ),
                (
                    "0000:01:00.2",
                    0x0c0330,
                    0x10de,
                    0x1ada,
                    Some("xhci_hcd"),
                    Some("12"),
                    0,
                ),
                (
                    "0000:02:00.0",
                    0x030200,
                    0x10de,
                    0x2330,
                    Some("vfio-pci"),
                    Some("13"),
                    1,
                ),
                (
                    "0000:04:00.0",
                    0x020000,
                    0x8086,
                    0x1533,
                    Some("igb"),
                    Some("13"),
                    1,
                ),
                (
                    "0000:03:00.0",
                    0x030000,
                    0x10de,
                    0x1eb8,
                    Some("nouveau"),
                    Some("14"),
                    -1,
                ),
                (
                    "0000:00:1f.3",
                    0x040300,
                    0x8086,
                    0xa348,
                    Some("snd_hda_intel"),
                    Some("9"),
                    -1,
                ),
            ],
        )
    }

    /// A cloud VM as measured on one: an H100 (3D controller) on the nvidia driver, no IOMMU.
    pub fn cloud_vm_without_iommu(root: &Path) -> std::io::Result<()> {
        write(
            root,
            &[(
                "0000:00:06.0",
                0x030200,
                0x10de,
                0x2330,
                Some("nvidia"),
                None,
                -1,
            )],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workstation_inventory() {
        let tmp = tempfile::tempdir().expect("tmp");
        fixture::workstation(tmp.path()).expect("fixture");
        let sysfs = Sysfs::new(tmp.path());
        let gpus = sysfs.gpus().expect("inventory");
        let addresses: Vec<&str> = gpus.iter().map(Gpu::address).collect();
        assert_eq!(addresses, ["0000:01:00.0", "0000:02:00.0", "0000:03:00.0"]);

        let rtx = &gpus[0];
        assert_eq!(rtx.function.numa_node, Some(0));
        assert_eq!(
            rtx.passthrough_functions(),
            ["0000:01:00.0", "0000:01:00.1", "0000:01:00.2"]
        );
        assert_eq!(rtx.problems.len(), 1, "{:?}", rtx.problems);
        assert_eq!(rtx.problems[0].address, "0000:01:00.2");
        assert!(
            rtx.problems[0]
                .message
                .contains("USB controller function 0000:01:00.2 is bound to xhci_hcd"),
            "{:?}",
            rtx.problems
        );
        assert_eq!(
            rtx.problems[0].fix,
            "sudo driverctl set-override 0000:01:00.2 vfio-pci"
        );

        let h100 = &gpus[1];
        assert!(
            h100.problems[0]
                .message
                .contains("another device in the GPU's IOMMU group"),
            "{:?}",
            h100.problems
        );
        assert!(h100.problems[0].message.contains("igb"));

        let host = &gpus[2];
        assert!(host.problems[0].message.contains("nouveau"));
        assert!(host.problems[0].fix.contains("blacklist nouveau"));
        assert_eq!(host.function.numa_node, None);
    }

    #[test]
    fn pool_membership_and_states() {
        let tmp = tempfile::tempdir().expect("tmp");
        fixture::workstation(tmp.path()).expect("fixture");
        let sysfs = Sysfs::new(tmp.path());
        let decision = |address: &str, state: PoolDecision, reason: Option<&str>| GpuAssignment {
            address: address.into(),
            state,
            reason: reason.map(str::to_string),
            updated_by: "ops".into(),
            updated_at_ms: 0,
        };
        let configured = vec!["0000:01:00.0".to_string(), "0000:0a:00.0".to_string()];
        let statuses = pool(&sysfs, &configured, &[], &Default::default()).expect("pool");
        let state = |s: &[GpuStatus], a: &str| {
            s.iter()
                .find(|g| g.address == a)
                .map(|g| (g.in_pool, g.state.as_str()))
                .expect("listed")
        };
        assert_eq!(
            state(&statuses, "0000:01:00.0"),
            (true, "not_ready"),
            "its USB function is on xhci_hcd"
        );
        assert_eq!(
            state(&statuses, "0000:0a:00.0"),
            (true, "not_ready"),
            "configured but absent"
        );
        assert_eq!(state(&statuses, "0000:02:00.0"), (false, "not_in_pool"));

        // Fix the USB binding in the fixture: the GPU becomes free.
        fixture::bind(tmp.path(), "0000:01:00.2", "vfio-pci").expect("bind");
        let statuses = pool(&sysfs, &configured, &[], &Default::default()).expect("pool");
        assert_eq!(state(&statuses, "0000:01:00.0"), (true, "free"));

        // API decisions override the configuration.
        let decisions = [
            decision(
                "0000:01:00.0",
                PoolDecision::Maintenance,
                Some("fan replacement"),
            ),
            decision("0000:0a:00.0", PoolDecision::Released, None),
        ];
        let statuses = pool(&sysfs, &configured, &decisions, &Default::default()).expect("pool");
        assert_eq!(state(&statuses, "0000:01:00.0"), (true, "maintenance"));
        assert_eq!(state(&statuses, "0000:0a:00.0"), (false, "not_in_pool"));
        let rtx = statuses
            .iter()
            .find(|g| g.address == "0000:01:00.0")
            .expect("rtx");
        assert_eq!(rtx.state, PoolState::Maintenance("fan replacement".into()));
    }

    #[test]
    fn cloud_vm_without_iommu() {
        let tmp = tempfile::tempdir().expect("tmp");
        fixture::cloud_vm_without_iommu(tmp.path()).expect("fixture");
        let gpus = Sysfs::new(tmp.path()).gpus().expect("inventory");
        assert_eq!(gpus.len(), 1);
        let g = &gpus[0];
        assert_eq!(g.model(), "NVIDIA device 2330");
        assert!(!g.ready());
        assert!(g.problems[0].fix.contains("intel_iommu=on"));
        assert!(g.problems[1].message.contains("bound to nvidia"));
        assert!(
            g.problems[1].fix.contains("options vfio-pci ids=10de:2330"),
            "{:?}",
            g.problems[1]
        );
    }

    #[test]
    fn missing_sysfs_is_an_error_and_unknown_addresses_are_none() {
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(Sysfs::new(tmp.path()).gpus().is_err());
        fixture::workstation(tmp.path()).expect("fixture");
        let sysfs = Sysfs::new(tmp.path());
        assert!(sysfs.gpu("0000:09:00.0").is_none());
        assert!(
            sysfs.gpu("0000:01:00.1").is_none(),
            "an audio function is not a GPU"
        );
    }
}
