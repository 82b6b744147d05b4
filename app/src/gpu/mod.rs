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
            other => names::vendor(other).unwrap_or("unknown vendor"),
        }
    }
}

/// Whether `text` is a PCI function's address as sysfs names it: `dddd:bb:dd.f`, lowercase hex
/// (domain, bus, device), function 0 to 7.
pub fn is_pci_address(text: &str) -> bool {
    let b = text.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    b.len() == 12
        && hex(0..4)
        && b[4] == b':'
        && hex(5..7)
        && b[7] == b':'
        && hex(8..10)
        && b[10] == b'.'
        && (b'0'..=b'7').contains(&b[11])
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

    /// The name operators know the GPU by (`NVIDIA GeForce RTX 4090`), from the PCI ID
    /// database; `NVIDIA device 2684` for a device it does not name.
    pub fn model(&self) -> String {
        let f = &self.function;
        match names::product(f.vendor, f.device) {
            Some(product) => format!("{} {product}", f.vendor_name()),
            None => format!("{} device {:04x}", f.vendor_name(), f.device),
        }
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

pub mod names;
mod pool;

pub use pool::{GpuAssignment, GpuStatus, PoolDecision, PoolState, pool};

pub mod fixture;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_as_sysfs_names_them() {
        for good in ["0000:01:00.0", "abcd:ef:1f.7"] {
            assert!(is_pci_address(good), "{good}");
        }
        for bad in [
            "",
            "0000:01:00.8",
            "0000:01:00",
            "0000:0A:00.0",
            "Ér",
            "0000:01:00.0 ",
            "0000-01:00.0",
            "0000:01:00.00",
        ] {
            assert!(!is_pci_address(bad), "{bad}");
        }
    }

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
        assert_eq!(g.model(), "NVIDIA H100 SXM5 80GB");
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
