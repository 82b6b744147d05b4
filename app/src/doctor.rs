//! Host readiness checks (`gevulot doctor`): the installation guide's manual steps as checks,
//! each failure with the exact fix. Everything is read below configurable roots, so tests run
//! against fixture trees of real layouts.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::gpu::Sysfs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// Works, with a caveat the operator should know.
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// A stable name, e.g. `kvm`, `vsock`, `gpu 0000:01:00.0`.
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to run or change, for warnings and failures.
    pub fix: Option<String>,
}

fn check(
    name: impl Into<String>,
    status: Status,
    detail: impl Into<String>,
    fix: Option<String>,
) -> Check {
    Check {
        name: name.into(),
        status,
        detail: detail.into(),
        fix,
    }
}

/// Who the node runs as: user id and every group id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gids: Vec<u32>,
}

impl Identity {
    /// This process's identity, from `/proc/self/status`.
    pub fn current(proc_root: &Path) -> Option<Identity> {
        let status = std::fs::read_to_string(proc_root.join("proc/self/status")).ok()?;
        let field = |name: &str| {
            status.lines().find(|l| l.starts_with(name)).map(|l| {
                l[name.len()..]
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect::<Vec<u32>>()
            })
        };
        let uid = *field("Uid:")?.first()?;
        let mut gids = field("Gid:")
            .unwrap_or_default()
            .into_iter()
            .take(1)
            .collect::<Vec<_>>();
        gids.extend(field("Groups:").unwrap_or_default());
        Some(Identity {
            name: format!("uid {uid}"),
            uid,
            gids,
        })
    }

    /// A named user, from `<root>/etc/passwd` and `<root>/etc/group`.
    pub fn lookup(root: &Path, name: &str) -> Option<Identity> {
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
        let entry = passwd.lines().find(|l| l.split(':').next() == Some(name))?;
        let fields: Vec<&str> = entry.split(':').collect();
        let uid = fields.get(2)?.parse().ok()?;
        let gid: u32 = fields.get(3)?.parse().ok()?;
        let mut gids = vec![gid];
        if let Ok(groups) = std::fs::read_to_string(root.join("etc/group")) {
            for line in groups.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.get(3)
                    .is_some_and(|members| members.split(',').any(|m| m == name))
                    && let Some(g) = f.get(2).and_then(|g| g.parse().ok())
                {
                    gids.push(g);
                }
            }
        }
        Some(Identity {
            name: name.to_string(),
            uid,
            gids,
        })
    }

    /// Whether this identity may read and write `path` by its mode bits.
    pub fn can_read_write(&self, path: &Path) -> bool {
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        let mode = meta.mode();
        self.uid == 0
            || (meta.uid() == self.uid && mode & 0o600 == 0o600)
            || (self.gids.contains(&meta.gid()) && mode & 0o060 == 0o060)
            || mode & 0o006 == 0o006
    }
}

/// What the checks look at.
#[derive(Clone, Debug)]
pub struct Host {
    /// `/` on a real host; the root of fixture trees in tests. `sys/`, `dev/`, `proc/` and `etc/`
    /// are read below it.
    pub root: PathBuf,
    pub identity: Identity,
    pub qemu: PathBuf,
    /// The hybrid vsock daemon, used when the kernel's vhost-vsock is missing.
    pub vsock_daemon: PathBuf,
    pub gpu_devices: Vec<String>,
    pub data_dir: PathBuf,
    /// Memory offered to VMs, in MiB (VFIO pins it all).
    pub vm_memory_mib: u64,
    /// `GEVULOT_VM_USER`: who QEMU runs as when the node runs as root.
    pub vm_user: String,
}

/// `program` itself when it names a path, else the first match on `PATH`.
pub fn find_program(program: &Path) -> Option<std::path::PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn on_path(program: &Path) -> bool {
    find_program(program).is_some()
}

impl Host {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn kvm(&self) -> Check {
        let dev = self.path("dev/kvm");
        if !dev.exists() {
            return check(
                "kvm",
                Status::Fail,
                "/dev/kvm does not exist: no hardware virtualisation (VMs would run under slow TCG emulation)",
                Some("enable VT-x/AMD-V in the firmware and load the module: `sudo modprobe kvm_intel` (or `kvm_amd`)".into()),
            );
        }
        if !self.identity.can_read_write(&dev) {
            return check(
                "kvm",
                Status::Fail,
                format!(
                    "{} cannot open /dev/kvm for reading and writing",
                    self.identity.name
                ),
                Some(format!(
                    "sudo usermod -aG kvm {}  (then log in again)",
                    self.identity.name
                )),
            );
        }
        if self.path("sys/module/kvm_pvm").exists()
            && !self.path("sys/module/kvm_intel").exists()
            && !self.path("sys/module/kvm_amd").exists()
        {
            return check(
                "kvm",
                Status::Warn,
                "/dev/kvm is the paravirtual kvm_pvm (this host is itself a VM): ordinary guest kernels do not boot on it",
                Some("run with GEVULOT_VM_ACCEL=tcg, or use a bare-metal host with kvm_intel/kvm_amd".into()),
            );
        }
        check("kvm", Status::Pass, "/dev/kvm is usable", None)
    }

    pub fn vsock(&self) -> Check {
        let dev = self.path("dev/vhost-vsock");
        if dev.exists() {
            if self.identity.can_read_write(&dev) {
                return check(
                    "vsock",
                    Status::Pass,
                    "/dev/vhost-vsock is usable (kernel vsock)",
                    None,
                );
            }
            return check(
                "vsock",
                Status::Fail,
                format!("{} cannot open /dev/vhost-vsock", self.identity.name),
                Some(format!(
                    "add a udev rule `KERNEL==\"vhost-vsock\", GROUP=\"kvm\", MODE=\"0660\"` and `sudo usermod -aG kvm {}`",
                    self.identity.name
                )),
            );
        }
        if on_path(&self.vsock_daemon) {
            return check(
                "vsock",
                Status::Warn,
                format!(
                    "no /dev/vhost-vsock; using the hybrid vsock daemon {} (slower, fine for tests)",
                    self.vsock_daemon.display()
                ),
                Some("sudo modprobe vhost_vsock && echo vhost_vsock | sudo tee /etc/modules-load.d/vhost-vsock.conf".into()),
            );
        }
        check(
            "vsock",
            Status::Fail,
            "no /dev/vhost-vsock and no vhost-device-vsock daemon: programs cannot reach the node",
            Some("sudo modprobe vhost_vsock && echo vhost_vsock | sudo tee /etc/modules-load.d/vhost-vsock.conf".into()),
        )
    }

    /// Each configured GPU: every function of its IOMMU group on vfio-pci, and its VFIO device
    /// file usable by the node's user.
    pub fn gpus(&self) -> Vec<Check> {
        let sysfs = Sysfs::new(&self.root);
        let mut out = Vec::new();
        for address in &self.gpu_devices {
            let name = format!("gpu {address}");
            let Some(gpu) = sysfs.gpu(address) else {
                out.push(check(
                    name,
                    Status::Fail,
                    format!("there is no GPU at {address}"),
                    Some("check the address with `lspci -D -d ::0300` and `lspci -D -d ::0302`, then fix GEVULOT_GPU_DEVICES".into()),
                ));
                continue;
            };
            if !gpu.ready() {
                for p in &gpu.problems {
                    out.push(check(
                        name.clone(),
                        Status::Fail,
                        p.message.clone(),
                        Some(p.fix.clone()),
                    ));
                }
                continue;
            }
            let group = gpu.function.iommu_group.clone().unwrap_or_default();
            let dev = self.path(&format!("dev/vfio/{group}"));
            if !dev.exists() {
                out.push(check(
                    name,
                    Status::Fail,
                    format!("/dev/vfio/{group} does not exist although the group is on vfio-pci"),
                    Some("sudo modprobe vfio-pci vfio_iommu_type1 (and list them in /etc/modules-load.d/vfio.conf)".into()),
                ));
                continue;
            }
            if !self.identity.can_read_write(&dev)
                || !self.identity.can_read_write(&self.path("dev/vfio/vfio"))
            {
                out.push(check(
                    name,
                    Status::Fail,
                    format!("{} cannot open /dev/vfio/{group} (or /dev/vfio/vfio)", self.identity.name),
                    Some(format!(
                        "add /etc/udev/rules.d/99-vfio.rules with `SUBSYSTEM==\"vfio\", OWNER=\"root\", GROUP=\"kvm\"`, run `sudo udevadm trigger`, and `sudo usermod -aG kvm {}`",
                        self.identity.name
                    )),
                ));
                continue;
            }
            out.push(check(
                name,
                Status::Pass,
                format!(
                    "{} in IOMMU group {group}: {} on vfio-pci",
                    gpu.model(),
                    gpu.passthrough_functions().join(", ")
                ),
                None,
            ));
        }
        out
    }

    /// VFIO pins guest memory: the locked-memory limit must cover it.
    pub fn memlock(&self) -> Check {
        let limits = std::fs::read_to_string(self.path("proc/self/limits")).unwrap_or_default();
        let soft = limits
            .lines()
            .find(|l| l.starts_with("Max locked memory"))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string));
        let needed = self.vm_memory_mib * 1024 * 1024;
        let fix = Some("run the container with `--ulimit memlock=-1:-1` (quadlet: `PodmanArgs=--ulimit=memlock=-1:-1`), or `LimitMEMLOCK=infinity` in the systemd unit".to_string());
        match soft.as_deref() {
            Some("unlimited") => check("memlock", Status::Pass, "locked memory is unlimited", None),
            Some(n) => match n.parse::<u64>() {
                Ok(bytes) if bytes >= needed => check(
                    "memlock",
                    Status::Pass,
                    format!("locked memory limit {bytes} bytes covers the VMs' memory"),
                    None,
                ),
                Ok(bytes) => check(
                    "memlock",
                    if self.gpu_devices.is_empty() {
                        Status::Warn
                    } else {
                        Status::Fail
                    },
                    format!(
                        "locked memory is limited to {bytes} bytes; VFIO passthrough pins all of a VM's memory ({needed} bytes offered)"
                    ),
                    fix,
                ),
                Err(_) => check(
                    "memlock",
                    Status::Warn,
                    format!("cannot read the locked memory limit ({n})"),
                    fix,
                ),
            },
            None => check(
                "memlock",
                Status::Warn,
                "cannot read /proc/self/limits",
                fix,
            ),
        }
    }

    pub fn qemu(&self) -> Check {
        let out = Command::new(&self.qemu).arg("--version").output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let first = text.lines().next().unwrap_or("").trim().to_string();
                check("qemu", Status::Pass, first, None)
            }
            _ => check(
                "qemu",
                Status::Fail,
                format!("{} does not run", self.qemu.display()),
                Some("sudo apt-get install qemu-system-x86 (or set GEVULOT_QEMU_PATH)".into()),
            ),
        }
    }

    /// Free space in the data directory (`df`), warning under 10 GiB.
    pub fn disk(&self) -> Check {
        let out = Command::new("df")
            .args(["-Pk"])
            .arg(&self.data_dir)
            .output();
        let free_kib = out.ok().and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(3)
                        .and_then(|n| n.parse::<u64>().ok())
                })
        });
        match free_kib {
            Some(kib) if kib >= 10 * 1024 * 1024 => check(
                "disk",
                Status::Pass,
                format!("{} GiB free in {}", kib / (1024 * 1024), self.data_dir.display()),
                None,
            ),
            Some(kib) => check(
                "disk",
                Status::Warn,
                format!("only {} MiB free in {}", kib / 1024, self.data_dir.display()),
                Some("free space or point GEVULOT_DATA_DIRECTORY at a larger disk (program images and proofs need room)".into()),
            ),
            None => check(
                "disk",
                Status::Fail,
                format!("cannot find the free space of {}", self.data_dir.display()),
                Some("create the data directory, or set GEVULOT_DATA_DIRECTORY".into()),
            ),
        }
    }

    /// Every host check (the database check is the caller's: it needs the async store).
    pub fn run(&self) -> Vec<Check> {
        let mut checks = vec![self.kvm(), self.vsock()];
        checks.extend(self.gpus());
        checks.push(self.memlock());
        checks.push(self.qemu());
        checks.push(crate::vm::confine::check(
            &self.root,
            &self.identity,
            &self.vm_user,
        ));
        checks.push(self.disk());
        checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(root: &Path, rel: &str, mode: u32, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn nobody() -> Identity {
        // A user that owns nothing in the fixture and is in group 993 ("kvm").
        Identity {
            name: "gevulot".into(),
            uid: 64_000,
            gids: vec![64_000, 993],
        }
    }

    fn host(root: &Path) -> Host {
        Host {
            root: root.to_path_buf(),
            identity: nobody(),
            qemu: "/nonexistent/qemu-system-x86_64".into(),
            vsock_daemon: "/nonexistent/vhost-device-vsock".into(),
            gpu_devices: vec!["0000:01:00.0".into()],
            data_dir: root.to_path_buf(),
            vm_memory_mib: 65536,
            vm_user: "gevulot-vm".into(),
        }
    }

    #[test]
    fn failures_the_installation_guide_warns_about() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        crate::gpu::fixture::workstation(root).expect("fixture");
        // /dev/kvm owned by root:root 0600, /dev/vfio/12 likewise: wrong group permissions.
        file(root, "dev/kvm", 0o600, "");
        file(root, "dev/vfio/vfio", 0o666, "");
        file(root, "dev/vfio/12", 0o600, "");
        file(
            root,
            "proc/self/limits",
            0o644,
            "Limit                     Soft Limit           Hard Limit           Units\nMax locked memory         65536                65536                bytes\n",
        );
        let h = host(root);
        let checks = h.run();
        let by = |name: &str| {
            checks
                .iter()
                .filter(|c| c.name == name)
                .cloned()
                .collect::<Vec<_>>()
        };

        let kvm = &by("kvm")[0];
        assert_eq!(kvm.status, Status::Fail);
        assert!(
            kvm.fix
                .as_deref()
                .is_some_and(|f| f.contains("usermod -aG kvm gevulot"))
        );

        assert_eq!(by("vsock")[0].status, Status::Fail);
        assert!(
            by("vsock")[0]
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("modprobe vhost_vsock"))
        );

        // The USB controller function still on xhci_hcd.
        let gpu = by("gpu 0000:01:00.0");
        assert_eq!(gpu.len(), 1);
        assert!(gpu[0].detail.contains("xhci_hcd"));
        assert_eq!(
            gpu[0].fix.as_deref(),
            Some("sudo driverctl set-override 0000:01:00.2 vfio-pci")
        );

        let memlock = &by("memlock")[0];
        assert_eq!(memlock.status, Status::Fail);
        assert!(
            memlock
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("memlock=-1:-1"))
        );

        assert_eq!(by("qemu")[0].status, Status::Fail);

        // Now bind the USB function to vfio-pci: the remaining failure is the group permission.
        crate::gpu::fixture::bind(root, "0000:01:00.2", "vfio-pci").expect("bind");
        let gpu = h.gpus();
        assert_eq!(gpu[0].status, Status::Fail);
        assert!(
            gpu[0].detail.contains("cannot open /dev/vfio/12"),
            "{gpu:?}"
        );
        assert!(
            gpu[0]
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("99-vfio.rules"))
        );
    }

    #[test]
    fn a_prepared_host_passes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        crate::gpu::fixture::write(
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
            ],
        )
        .expect("fixture");
        file(root, "dev/kvm", 0o666, "");
        file(root, "dev/vhost-vsock", 0o666, "");
        file(root, "dev/vfio/vfio", 0o666, "");
        file(root, "dev/vfio/12", 0o666, "");
        file(root, "sys/module/kvm_intel/initstate", 0o644, "live\n");
        file(
            root,
            "proc/self/limits",
            0o644,
            "Max locked memory         unlimited            unlimited            bytes\n",
        );
        let checks = host(root).run();
        for c in &checks {
            if c.name != "qemu" && c.name != "disk" {
                assert_eq!(c.status, Status::Pass, "{c:?}");
            }
        }
        let gpu = checks
            .iter()
            .find(|c| c.name == "gpu 0000:01:00.0")
            .expect("gpu");
        assert!(
            gpu.detail
                .contains("0000:01:00.0, 0000:01:00.1 on vfio-pci"),
            "{gpu:?}"
        );
    }

    #[test]
    fn paravirtual_kvm_is_a_warning_with_the_tcg_fix() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        file(root, "dev/kvm", 0o666, "");
        file(root, "sys/module/kvm_pvm/initstate", 0o644, "live\n");
        let kvm = host(root).kvm();
        assert_eq!(kvm.status, Status::Warn);
        assert!(kvm.fix.as_deref().is_some_and(|f| f.contains("tcg")));
    }

    #[test]
    fn identities_from_passwd_and_group() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        file(
            root,
            "etc/passwd",
            0o644,
            "root:x:0:0::/root:/bin/sh\ngevulot:x:990:990::/var/lib/gevulot:/usr/sbin/nologin\n",
        );
        file(
            root,
            "etc/group",
            0o644,
            "root:x:0:\nkvm:x:993:gevulot,qemu\ngevulot:x:990:\n",
        );
        let id = Identity::lookup(root, "gevulot").expect("user");
        assert_eq!((id.uid, id.gids.clone()), (990, vec![990, 993]));
        assert!(Identity::lookup(root, "nobody-here").is_none());
        file(root, "dev/vfio/12", 0o660, "");
        // Owned by the test runner's uid/gid, so only the mode's "other" bits could grant access.
        assert!(!id.can_read_write(&root.join("dev/vfio/12")));
    }
}
