//! The typed VM spec and the QEMU command line it becomes (`qemu-system-x86_64`, q35).
//!
//! What every VM gets: the accelerator chosen by the caller (never guessed from `/dev/kvm`), the
//! CPUs and memory (MiB) the program asked for, the program image (a read-only virtio-SCSI raw disk
//! or a direct-boot kernel + initramfs), `/workspace` shared over 9p with `mount_tag=0`, one vsock
//! device (kernel vhost-vsock with a CID, or the hybrid vhost-user vsock over a Unix socket), the
//! functions of the GPUs allocated to *this* VM and no others (each GPU's IOMMU group behind its
//! own PCIe root port), no network device, the serial console into a per-VM log file, QMP on a
//! per-VM Unix socket, a pid file, and a pvpanic device so guest panics are reported over QMP.

use std::path::PathBuf;

/// How QEMU executes guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation (`-cpu host`).
    Kvm,
    /// Software emulation (`-cpu max`): slow, works anywhere.
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the VM boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    /// A raw bootable disk image, attached read-only.
    Disk { image: PathBuf },
    /// A kernel bundle, unpacked: the kernel, its initramfs and extra arguments.
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
}

/// How the guest reaches the node's vsock service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vsock {
    /// The kernel's vhost-vsock (`/dev/vhost-vsock`), guest context id `cid` (≥ 3).
    Kernel { cid: u32 },
    /// vhost-user vsock served by a `vhost-device-vsock` daemon on this socket (hybrid vsock:
    /// the host side is a Unix socket). Needs shared guest memory.
    Hybrid { socket: PathBuf },
}

/// One GPU allocated to the VM: every function of its IOMMU group (bridges excluded), the
/// GPU's own function first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuPassthrough {
    pub functions: Vec<String>,
}

/// Everything that decides a VM's command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSpec {
    /// A short unique name (the task's id), used in `-name` and nowhere security-relevant.
    pub name: String,
    pub accel: Accel,
    pub cpus: u64,
    pub mem_mib: u64,
    pub boot: Boot,
    /// The host directory shared as `/workspace`.
    pub workspace: PathBuf,
    pub vsock: Vsock,
    pub gpus: Vec<GpuPassthrough>,
    pub serial_log: PathBuf,
    pub qmp_socket: PathBuf,
    pub pid_file: PathBuf,
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

impl VmSpec {
    /// The arguments after the QEMU binary, in a fixed order (snapshot-tested).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        let mem = format!("{}M", self.mem_mib);
        let hybrid = matches!(self.vsock, Vsock::Hybrid { .. });
        push(&[
            "-name",
            &format!("gevulot-{},process=gevulot-{}", self.name, self.name),
        ]);
        let machine = if hybrid {
            format!("q35,accel={},memory-backend=mem", self.accel.as_str())
        } else {
            format!("q35,accel={}", self.accel.as_str())
        };
        push(&["-machine", &machine]);
        push(&[
            "-cpu",
            match self.accel {
                Accel::Kvm => "host",
                Accel::Tcg => "max",
            },
        ]);
        push(&["-smp", &self.cpus.to_string(), "-m", &mem]);
        if hybrid {
            // vhost-user needs the guest's memory shared with the vsock daemon.
            push(&[
                "-object",
                &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
            ]);
        }
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-vga",
            "none",
            "-nic",
            "none",
            "-no-reboot",
        ]);
        // QEMU's seccomp filter: a guest that takes over the emulator still cannot spawn
        // processes, gain privileges, change resource limits or use obsolete system calls.
        push(&[
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        ]);
        push(&["-serial", &format!("file:{}", path(&self.serial_log))]);
        push(&[
            "-qmp",
            &format!("unix:{},server=on,wait=off", path(&self.qmp_socket)),
        ]);
        push(&["-pidfile", &path(&self.pid_file)]);
        push(&["-device", "pvpanic", "-device", "virtio-rng-pci"]);
        match &self.boot {
            Boot::Disk { image } => {
                push(&["-device", "virtio-scsi-pci,id=scsi0"]);
                push(&[
                    "-drive",
                    &format!(
                        "file={},format=raw,if=none,id=image,readonly=on",
                        path(image)
                    ),
                ]);
                push(&["-device", "scsi-hd,bus=scsi0.0,drive=image"]);
            }
            Boot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                push(&["-kernel", &path(kernel), "-initrd", &path(initrd)]);
                let append = if cmdline.is_empty() {
                    "console=ttyS0 panic=-1".to_string()
                } else {
                    format!("console=ttyS0 panic=-1 {cmdline}")
                };
                push(&["-append", &append]);
            }
        }
        // `mapped-file`: the guest's owners, modes, device nodes and symbolic links are kept in
        // metadata files QEMU keeps beside them; on the host every file it creates is a plain
        // file or directory of QEMU's user, never setuid, a device node or a link.
        push(&[
            "-virtfs",
            &format!(
                "local,path={},mount_tag=0,security_model=mapped-file,multidevs=remap,id=workspace",
                path(&self.workspace)
            ),
        ]);
        match &self.vsock {
            Vsock::Kernel { cid } => {
                push(&["-device", &format!("vhost-vsock-pci,guest-cid={cid}")]);
            }
            Vsock::Hybrid { socket } => {
                push(&[
                    "-chardev",
                    &format!("socket,id=vsock,path={}", path(socket)),
                ]);
                push(&["-device", "vhost-user-vsock-pci,chardev=vsock"]);
            }
        }
        for (i, gpu) in self.gpus.iter().enumerate() {
            let port = format!("gpu{i}");
            push(&[
                "-device",
                &format!("pcie-root-port,id={port},chassis={},slot=0", 10 + i),
            ]);
            for (f, function) in gpu.functions.iter().enumerate() {
                let multifunction = if f == 0 && gpu.functions.len() > 1 {
                    ",multifunction=on"
                } else {
                    ""
                };
                push(&[
                    "-device",
                    &format!("vfio-pci,host={function},bus={port},addr=00.{f}{multifunction}"),
                ]);
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(name: &str) -> VmSpec {
        let dir = PathBuf::from(format!("/var/lib/gevulot/vms/{name}"));
        VmSpec {
            name: name.to_string(),
            accel: Accel::Kvm,
            cpus: 4,
            mem_mib: 8192,
            boot: Boot::Disk {
                image: "/var/lib/gevulot/images/8e20b790/prover.img".into(),
            },
            workspace: dir.join("workspace"),
            vsock: Vsock::Kernel { cid: 3 },
            gpus: vec![],
            serial_log: format!("/var/lib/gevulot/log/{name}/console.log").into(),
            qmp_socket: dir.join("qmp.sock"),
            pid_file: dir.join("qemu.pid"),
        }
    }

    /// Compares with `app/tests/snapshots/<name>.txt`; `UPDATE_SNAPSHOTS=1` rewrites it.
    fn check(name: &str, spec: &VmSpec) {
        let actual = spec.args().join("\n") + "\n";
        let file = format!("{}/tests/snapshots/{name}.txt", env!("CARGO_MANIFEST_DIR"));
        if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
            std::fs::write(&file, &actual).expect("write snapshot");
        }
        let expected = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            actual, expected,
            "QEMU command line for {name} changed; if deliberate, run with UPDATE_SNAPSHOTS=1"
        );
    }

    #[test]
    fn no_gpu() {
        check("qemu-no-gpu", &base("t1"));
    }

    #[test]
    fn one_gpu_with_its_audio_function() {
        let mut spec = base("t2");
        spec.gpus = vec![GpuPassthrough {
            functions: vec!["0000:01:00.0".into(), "0000:01:00.1".into()],
        }];
        check("qemu-one-gpu-with-audio", &spec);
        let args = spec.args().join(" ");
        assert!(args.contains("vfio-pci,host=0000:01:00.0,bus=gpu0,addr=00.0,multifunction=on"));
        assert!(args.contains("vfio-pci,host=0000:01:00.1,bus=gpu0,addr=00.1"));
    }

    #[test]
    fn two_gpus_for_two_vms_each_gets_only_its_own() {
        let mut a = base("t3");
        a.gpus = vec![GpuPassthrough {
            functions: vec![
                "0000:01:00.0".into(),
                "0000:01:00.1".into(),
                "0000:01:00.2".into(),
            ],
        }];
        let mut b = base("t4");
        b.vsock = Vsock::Kernel { cid: 4 };
        b.gpus = vec![GpuPassthrough {
            functions: vec!["0000:41:00.0".into(), "0000:41:00.1".into()],
        }];
        check("qemu-two-vms-first", &a);
        check("qemu-two-vms-second", &b);
        let (a, b) = (a.args().join(" "), b.args().join(" "));
        assert!(a.contains("0000:01:00.2") && !a.contains("0000:41:00"));
        assert!(b.contains("0000:41:00.1") && !b.contains("0000:01:00"));
    }

    #[test]
    fn kernel_vsock() {
        let mut spec = base("t5");
        spec.vsock = Vsock::Kernel { cid: 17 };
        check("qemu-kernel-vsock", &spec);
        assert!(
            spec.args()
                .contains(&"vhost-vsock-pci,guest-cid=17".to_string())
        );
        assert!(!spec.args().join(" ").contains("memory-backend"));
    }

    #[test]
    fn hybrid_vsock_with_a_kernel_bundle_under_tcg() {
        let mut spec = base("t6");
        spec.accel = Accel::Tcg;
        spec.mem_mib = 512;
        spec.cpus = 1;
        spec.boot = Boot::Kernel {
            kernel: "/var/lib/gevulot/vms/t6/vmlinux".into(),
            initrd: "/var/lib/gevulot/vms/t6/initrd.img".into(),
            cmdline: "quiet".into(),
        };
        spec.vsock = Vsock::Hybrid {
            socket: "/var/lib/gevulot/vms/t6/vhost-user-vsock.sock".into(),
        };
        check("qemu-hybrid-vsock", &spec);
        let args = spec.args().join(" ");
        assert!(args.contains("memory-backend-memfd,id=mem,size=512M,share=on"));
        assert!(args.contains("q35,accel=tcg,memory-backend=mem"));
        assert!(args.contains("-cpu max"));
    }

    #[test]
    fn never_a_network_device() {
        let args = base("t7").args();
        assert!(args.windows(2).any(|w| w[0] == "-nic" && w[1] == "none"));
        assert!(args.contains(&"-nodefaults".to_string()));
        assert!(
            !args
                .iter()
                .any(|a| a.contains("netdev") || a.contains("virtio-net"))
        );
    }
}
