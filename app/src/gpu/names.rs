//! Names operators recognise for PCI devices, from the PCI ID database (`pci.ids`, embedded:
//! every vendor and the devices of the GPU vendors; `scripts/trim-pci-ids` regenerates it from
//! Debian's `pci.ids` package). "NVIDIA GeForce RTX 4090" instead of "NVIDIA device 2684".

use std::collections::HashMap;
use std::sync::OnceLock;

const PCI_IDS: &str = include_str!("pci.ids");

struct Database {
    vendors: HashMap<u16, &'static str>,
    devices: HashMap<(u16, u16), &'static str>,
}

fn database() -> &'static Database {
    static DB: OnceLock<Database> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = Database {
            vendors: HashMap::new(),
            devices: HashMap::new(),
        };
        let mut vendor = None;
        for line in PCI_IDS.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (indented, rest) = match line.strip_prefix('\t') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let Some((id, name)) = rest.split_once("  ") else {
                continue;
            };
            let Ok(id) = u16::from_str_radix(id, 16) else {
                continue;
            };
            if indented {
                if let Some(v) = vendor {
                    db.devices.insert((v, id), name.trim());
                }
            } else {
                vendor = Some(id);
                db.vendors.insert(id, name.trim());
            }
        }
        db
    })
}

/// The vendor's name in the database, e.g. `NVIDIA Corporation`.
pub fn vendor(vendor: u16) -> Option<&'static str> {
    database().vendors.get(&vendor).copied()
}

/// The device's name in the database, e.g. `AD102 [GeForce RTX 4090]`.
pub fn device(vendor: u16, device: u16) -> Option<&'static str> {
    database().devices.get(&(vendor, device)).copied()
}

/// The name a product is sold under: the bracketed part of the database's name when it has one
/// (`AD102 [GeForce RTX 4090]` → `GeForce RTX 4090`), else the whole name.
pub fn product(vendor: u16, device_id: u16) -> Option<&'static str> {
    let name = device(vendor, device_id)?;
    let bracketed = name
        .split_once('[')
        .and_then(|(_, rest)| rest.rsplit_once(']'))
        .map(|(inside, _)| inside.trim())
        .filter(|inside| !inside.is_empty());
    Some(bracketed.unwrap_or(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_by_their_product_names() {
        assert_eq!(product(0x10de, 0x2684), Some("GeForce RTX 4090"));
        assert_eq!(product(0x10de, 0x2204), Some("GeForce RTX 3090"));
        assert_eq!(product(0x10de, 0x2330), Some("H100 SXM5 80GB"));
        assert_eq!(product(0x1002, 0x744c), Some("Radeon RX 7900 XT/7900 XTX"));
        assert_eq!(device(0x10de, 0x2684), Some("AD102 [GeForce RTX 4090]"));
        assert_eq!(vendor(0x10de), Some("NVIDIA Corporation"));
        assert_eq!(vendor(0x8086), Some("Intel Corporation"));
        // Not in the database: no name.
        assert_eq!(product(0x10de, 0xffff), None);
        assert_eq!(product(0x1234, 0x1111), None);
    }
}
