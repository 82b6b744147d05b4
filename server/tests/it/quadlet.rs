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
    "AutoUpdate",
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
    let value = |section: &str, key: &str| -> Vec<String> {
        unit[section]
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let env = |name: &str| -> Option<String> {
        value("Container", "Environment")
            .iter()
            .find_map(|v| v.strip_prefix(&format!("{name}=")).map(str::to_string))
    };
    // Joining a network: both settings are there to fill in.
    assert!(env("GEVULOT_P2P_DISCOVERY_ADDR").is_some());
    assert!(env("GEVULOT_ACL_WHITELIST_URL").is_some_and(|u| u.starts_with("https://")));
    // Automatic updates need a registry image, named in full.
    assert_eq!(value("Container", "AutoUpdate"), ["registry"]);
    let image = value("Container", "Image").pop().expect("Image");
    assert!(
        image
            .split('/')
            .next()
            .is_some_and(|host| host.contains('.'))
            && image.contains(':'),
        "AutoUpdate=registry needs a fully qualified image: {image}"
    );
    // A stop gives running tasks their grace period before Podman or systemd kill the node.
    let grace: u64 = env("GEVULOT_SHUTDOWN_GRACE")
        .and_then(|g| g.parse().ok())
        .expect("GEVULOT_SHUTDOWN_GRACE");
    let podman_stop: u64 = value("Container", "PodmanArgs")
        .iter()
        .find_map(|v| {
            v.strip_prefix("--stop-timeout=")
                .and_then(|t| t.parse().ok())
        })
        .expect("--stop-timeout");
    let systemd_stop: u64 = value("Service", "TimeoutStopSec")
        .pop()
        .and_then(|t| t.parse().ok())
        .expect("TimeoutStopSec");
    assert!(
        grace < podman_stop && podman_stop < systemd_stop,
        "grace {grace} s < podman stop timeout {podman_stop} s < TimeoutStopSec {systemd_stop} s"
    );
    // The build context leaves out what the image does not need.
    let ignore = repo(".containerignore");
    for path in ["target", ".git", "node_modules"] {
        assert!(
            ignore.lines().any(|l| l.trim_matches('/') == path),
            ".containerignore leaves out {path}"
        );
    }
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
