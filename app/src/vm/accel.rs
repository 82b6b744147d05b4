//! Choosing the accelerator: `kvm`, `tcg`, or `auto`, which decides by a capability check *and*
//! a canary boot, never by the mere presence of `/dev/kvm`.
//!
//! - The capability check: `/dev/kvm` opens for reading and writing, and the host runs a real
//!   KVM (`kvm_intel`/`kvm_amd`, or vmx/svm in `/proc/cpuinfo`), not only the paravirtual
//!   `kvm_pvm` of a host that is itself a VM (ordinary guest kernels die on it).
//! - The canary: QEMU boots a 512-byte boot sector with `-accel kvm -cpu host`; the sector writes
//!   to the `isa-debug-exit` port, so QEMU exits with status 99 within milliseconds when KVM
//!   really runs guest code. (On a paravirtual KVM, QEMU aborts setting MSRs for `-cpu host`.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::qemu::Accel;

/// What the operator configured (`GEVULOT_VM_ACCEL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    Kvm,
    Tcg,
    Auto,
}

impl AccelChoice {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "kvm" => Some(Self::Kvm),
            "tcg" => Some(Self::Tcg),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }
}

/// The decision and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub accel: Accel,
    pub reason: String,
}

/// `mov al, 0x31; out 0xf4, al; hlt; jmp $-1`, padded, with the boot signature: QEMU's
/// `isa-debug-exit` turns the write into exit status `(0x31 << 1) | 1 = 99`.
fn canary_sector() -> [u8; 512] {
    let mut sector = [0u8; 512];
    sector[..7].copy_from_slice(&[0xB0, 0x31, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD]);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

const CANARY_EXIT: i32 = 99;

/// Whether the host offers a real, usable KVM (see the module docs). Reads below `root`.
pub fn capability(root: &Path) -> Result<(), String> {
    let dev = root.join("dev/kvm");
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev)
        .map_err(|e| format!("/dev/kvm cannot be opened for reading and writing ({e})"))?;
    let module = |m: &str| root.join("sys/module").join(m).exists();
    let cpuinfo = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
    let hardware = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if module("kvm_intel") || module("kvm_amd") || hardware {
        return Ok(());
    }
    if module("kvm_pvm") {
        return Err(
            "/dev/kvm is the paravirtual kvm_pvm (this host is itself a VM): ordinary guest kernels do not boot on it"
                .into(),
        );
    }
    Err("the CPU shows no hardware virtualisation (vmx/svm) and no kvm_intel/kvm_amd module is loaded".into())
}

/// Boots the canary sector with `accel`; `Ok` when it ran to its exit within `limit`.
pub async fn canary(
    qemu: &Path,
    accel: Accel,
    scratch: &Path,
    limit: Duration,
) -> Result<(), String> {
    let image: PathBuf = scratch.join("accel-canary.img");
    std::fs::create_dir_all(scratch).map_err(|e| format!("cannot write the canary image: {e}"))?;
    std::fs::write(&image, canary_sector())
        .map_err(|e| format!("cannot write the canary image: {e}"))?;
    let mut cmd = tokio::process::Command::new(qemu);
    cmd.args(["-machine", &format!("pc,accel={}", accel.as_str())]);
    if accel == Accel::Kvm {
        cmd.args(["-cpu", "host"]);
    }
    cmd.args(["-m", "32", "-nodefaults", "-display", "none", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide", image.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", qemu.display()))?;
    let output = tokio::time::timeout(limit, child.wait_with_output()).await;
    let _ = std::fs::remove_file(&image);
    match output {
        Err(_) => Err(format!("the canary did not finish within {limit:?}")),
        Ok(Err(e)) => Err(format!("the canary failed: {e}")),
        Ok(Ok(out)) if out.status.code() == Some(CANARY_EXIT) => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(format!("the canary ended with {}: {last}", out.status))
        }
    }
}

/// Decides the accelerator. `Kvm` and `Tcg` are taken as configured; `Auto` uses KVM only when
/// both the capability check and the canary pass, and says why otherwise.
pub async fn decide(choice: AccelChoice, qemu: &Path, root: &Path, scratch: &Path) -> Decision {
    match choice {
        AccelChoice::Kvm => Decision {
            accel: Accel::Kvm,
            reason: "configured".into(),
        },
        AccelChoice::Tcg => Decision {
            accel: Accel::Tcg,
            reason: "configured".into(),
        },
        AccelChoice::Auto => {
            if let Err(why) = capability(root) {
                return Decision {
                    accel: Accel::Tcg,
                    reason: format!("KVM not usable: {why}; using software emulation (slow)"),
                };
            }
            match canary(qemu, Accel::Kvm, scratch, Duration::from_secs(10)).await {
                Ok(()) => Decision {
                    accel: Accel::Kvm,
                    reason: "capability check and canary boot passed".into(),
                },
                Err(why) => Decision {
                    accel: Accel::Tcg,
                    reason: format!(
                        "the KVM canary boot failed ({why}); using software emulation (slow)"
                    ),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn capability_needs_a_real_kvm() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        assert!(
            capability(root)
                .expect_err("no /dev/kvm")
                .contains("/dev/kvm")
        );
        file(root, "dev/kvm", "");
        file(root, "sys/module/kvm_pvm/initstate", "live");
        assert!(capability(root).expect_err("pvm").contains("kvm_pvm"));
        file(
            root,
            "proc/cpuinfo",
            "processor\t: 0\nflags\t\t: fpu vme de pse vmx\n",
        );
        assert_eq!(capability(root), Ok(()));
    }

    #[test]
    fn the_canary_is_a_boot_sector() {
        let s = canary_sector();
        assert_eq!(&s[510..], &[0x55, 0xAA]);
        assert_eq!(&s[..4], &[0xB0, 0x31, 0xE6, 0xF4]);
    }
}
