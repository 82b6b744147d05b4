//! Parsers of outside input that had no property test: a published whitelist (any text), the
//! networks webhooks may reach (an operator's setting), and the host's sysfs files (any bytes).
//! None may panic; what is valid is read back exactly. Bounded: a few hundred cases each.

use std::net::IpAddr;

use app::crypto::SecretKey;
use app::webhooks::Allowed;
use proptest::prelude::*;

/// A line of a published whitelist: a key, a comment, blank, or garbage.
fn list_line() -> impl Strategy<Value = (String, Option<String>)> {
    prop_oneof![
        any::<[u8; 32]>().prop_filter_map("a valid secret key", |b| {
            let key = SecretKey::from_bytes(&b).ok()?.public_key().to_hex();
            Some((format!("  {key} "), Some(key)))
        }),
        "#[^\n]{0,40}".prop_map(|c| (c, None)),
        Just((String::new(), None)),
        "[^\n#]{1,80}".prop_map(|g| (g, None)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_whitelist_keeps_every_key_and_names_every_bad_line(
        lines in proptest::collection::vec(list_line(), 0..24)
    ) {
        let text = lines.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>().join("\n");
        let (keys, bad) = app::acl::parse_list(&text);
        for (_, key) in &lines {
            if let Some(key) = key {
                prop_assert!(keys.iter().any(|k| &k.to_hex() == key));
            }
        }
        for n in bad {
            let (line, key) = &lines[n - 1];
            prop_assert!(key.is_none(), "line {n} ({line:?}) is a key");
            prop_assert!(!line.trim().is_empty() && !line.trim().starts_with('#'));
        }
    }

    #[test]
    fn any_text_as_allowed_networks_never_panics(text in "\\PC{0,80}") {
        let _ = Allowed::parse(&text);
    }

    #[test]
    fn allowed_networks_are_read_back(
        nets in proptest::collection::vec((any::<[u8; 4]>(), 8u8..=32), 1..5)
    ) {
        let text = nets
            .iter()
            .map(|(a, p)| format!("{}.{}.{}.{}/{p}", a[0], a[1], a[2], a[3]))
            .collect::<Vec<_>>()
            .join(" , ");
        let allowed = Allowed::parse(&text).expect("valid networks");
        prop_assert_eq!(allowed.nets().len(), nets.len());
        for (a, _) in &nets {
            // The network's own address is inside it, whatever its kind.
            prop_assert!(allowed.permits(IpAddr::from(*a)));
        }
    }

    #[test]
    fn sysfs_files_with_any_content_never_panic(
        class in proptest::collection::vec(any::<u8>(), 0..24),
        vendor in proptest::collection::vec(any::<u8>(), 0..24),
        device in proptest::collection::vec(any::<u8>(), 0..24),
        numa in proptest::collection::vec(any::<u8>(), 0..24),
    ) {
        let root = testkit::tempdir();
        app::gpu::fixture::workstation(root.path()).expect("fixture");
        let dir = root.path().join("sys/bus/pci/devices/0000:01:00.0");
        for (file, bytes) in [("class", &class), ("vendor", &vendor), ("device", &device), ("numa_node", &numa)] {
            std::fs::write(dir.join(file), bytes).expect("write");
        }
        let sysfs = app::gpu::Sysfs::new(root.path());
        let gpus = sysfs.gpus().expect("readable");
        for g in &gpus {
            let _ = (g.model(), g.function.kind(), g.ready(), g.passthrough_functions(), g.address());
        }
        let _ = sysfs.gpu("0000:01:00.0");
    }
}
