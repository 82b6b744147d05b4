//! The Containerfile and the Podman quadlet units, checked against the node's real directives
//! (Debian 12's Podman has no quadlet generator to try them with).

use std::collections::BTreeMap;

use crate::support::{gevulot, output, stdout};

fn repo(path: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `[Section]` → `(key, value)` lines of a systemd-style unit.
fn sections(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        out.entry(current.clone())
            .or_default()
            .push((k.to_string(), v.to_string()));
    }
    out
}

/// Keys of quadlet's [Container] section (podman-systemd.unit(5)) that these units may use.
const CONTAINER_KEYS: &[&str] = &[
    "AddDevice",
    "ContainerName",
    "Environment",
    "Exec",
    "HealthCmd",
    "HealthInterval",
    "HealthStartPeriod",
    "Image",
    "Network",
    "PodmanArgs",
    "Secret",
    "SecurityLabelDisable",
    "Volume",
];

fn run_help() -> String {
    let out = output(gevulot().args(["run", "-h"]));
    assert!(out.status.success());
    stdout(&out)
}

#[test]
fn node_unit_uses_only_real_directives() {
    let help = run_help();
    let unit = sections(&repo("quadlet/gevulot-node.container"));
    let container = &unit["Container"];
    let mut gevulot_vars = 0;
    for (key, value) in container {
        assert!(
            CONTAINER_KEYS.contains(&key.as_str()),
            "[Container] {key} is not a quadlet key"
        );
        if key == "Environment" {
            let (name, _) = value.split_once('=').expect("NAME=value");
            if name.starts_with("GEVULOT_") {
                gevulot_vars += 1;
                assert!(
                    help.contains(&format!("[env: {name}")),
                    "{name} is not a directive of `gevulot run`"
                );
            } else {
                assert_eq!(name, "RUST_LOG", "unexpected variable {name}");
            }
        }
        if key == "HealthCmd" {
            assert_eq!(value, "gevulot healthcheck");
        }
    }
    assert!(gevulot_vars >= 10, "{gevulot_vars}");
    // Every secret mounted is read through a *_FILE directive.
    for (key, value) in container.iter().filter(|(k, _)| k == "Secret") {
        let target = value.split("target=").nth(1).expect("a target");
        assert!(
            container
                .iter()
                .any(|(k, v)| k == "Environment" && v.ends_with(&format!("_FILE={target}"))),
            "{key}={value} is mounted but no *_FILE directive reads it"
        );
    }
    assert!(
        container
            .iter()
            .any(|(k, v)| k == "PodmanArgs" && v.contains("memlock=-1:-1"))
    );
    assert_eq!(
        unit["Unit"]
            .iter()
            .find(|(k, _)| k == "Requires")
            .map(|(_, v)| v.as_str()),
        Some("gevulot-postgres.service")
    );
    // The health command is a real command of the binary.
    assert!(
        output(gevulot().args(["healthcheck", "--help"]))
            .status
            .success()
    );
}

#[test]
fn postgres_unit_and_containerfile_fit_the_node() {
    let pg = sections(&repo("quadlet/gevulot-postgres.container"));
    for (key, _) in &pg["Container"] {
        assert!(
            CONTAINER_KEYS.contains(&key.as_str()),
            "[Container] {key} is not a quadlet key"
        );
    }
    let file = repo("quadlet/Containerfile");
    let help = run_help();
    for line in file.lines().filter(|l| l.contains("GEVULOT_")) {
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("GEVULOT_") {
                assert!(
                    help.contains(&format!("[env: {word}")),
                    "Containerfile sets {word}, which is not a directive"
                );
            }
        }
    }
    assert!(file.contains("cargo build --release --locked -p server --bin gevulot"));
    assert!(file.contains(r#"HEALTHCHECK"#) && file.contains(r#""gevulot", "healthcheck""#));
    assert!(file.contains(r#"ENTRYPOINT ["gevulot"]"#));
    assert!(file.contains("qemu-system-x86") && file.contains("vhost-device-vsock"));
}
