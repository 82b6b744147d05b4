//! Fixture sysfs trees for tests (real layouts: a GPU with audio and USB functions, a group with
//! a foreign device, a host without IOMMU).

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
