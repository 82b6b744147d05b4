//! `gevulot run` as an operator starts it: against PostgreSQL after `migrate`, and with no
//! configuration at all on SQLite.

use std::time::Duration;

use crate::support::{Node, gevulot, is_root, output, stderr};

const STARTUP: Duration = Duration::from_secs(60);

/// `gevulot run` with its data in `dir` and every listener on a free loopback port.
fn run_on_loopback(dir: &std::path::Path) -> std::process::Command {
    let mut cmd = gevulot();
    cmd.arg("run")
        .env("GEVULOT_DATA_DIRECTORY", dir)
        .env("GEVULOT_JSON_RPC_LISTEN_ADDR", "127.0.0.1:0")
        .env("GEVULOT_HTTP_PORT", "0")
        .env("GEVULOT_P2P_LISTEN_ADDR", "127.0.0.1:0")
        .env("GEVULOT_HEALTHCHECK_LISTEN_ADDR", "127.0.0.1:0");
    cmd
}

#[tokio::test]
async fn migrate_then_run_on_postgres_without_leaking_secrets() {
    let url = testkit::postgres_url().await.expect("database");
    // Trust authentication accepts any password; the point is that it never shows.
    let with_password = url.replacen("postgres@", "postgres:pg-s3cret-pw@", 1);
    let out = output(gevulot().args(["migrate", "--db-url", &with_password]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("pg-s3cret-pw"));

    let dir = testkit::tempdir();
    let psk_file = dir.path().join("psk");
    std::fs::write(&psk_file, "psk-from-file-secret\n").expect("write");
    let mut cmd = run_on_loopback(dir.path());
    cmd.env("GEVULOT_DB_URL", &with_password)
        .env("GEVULOT_PSK_PASSPHRASE_FILE", &psk_file)
        .env("RUST_LOG", "warn,gevulot=debug,sqlx=error");
    let mut node = Node::spawn(cmd);
    let ready = node.wait_for("node ready", STARTUP);
    assert!(
        ready.contains("backend=\"postgres\"") || ready.contains("backend=postgres"),
        "{ready}"
    );
    assert!(
        ready.contains("***"),
        "the database URL is shown redacted: {ready}"
    );
    let log = node.terminate();
    for secret in ["pg-s3cret-pw", "psk-from-file-secret"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        dir.path().join("node.key").exists(),
        "the node key was created on first run"
    );
}

#[test]
fn rust_log_filters_like_the_original() {
    let dir = testkit::tempdir();
    let mut cmd = run_on_loopback(dir.path());
    cmd.env("RUST_LOG", "warn");
    let mut node = Node::spawn(cmd);
    // At `warn`, the default-passphrase warning shows and the info-level "node ready" does not.
    node.wait_for("well-known passphrase", STARTUP);
    std::thread::sleep(Duration::from_secs(2));
    let log = node.terminate();
    assert!(!log.contains("node ready"), "{log}");
}

/// A newcomer's first run: no configuration, not root, `/var/lib/gevulot` not writable.
#[test]
fn run_with_no_configuration_on_sqlite() {
    let home = testkit::tempdir();
    let mut cmd = if is_root() {
        // Run as an unprivileged user, as a newcomer would, from a copy of the binary that user
        // can reach whatever the checkout's directory permissions.
        let binary = home.path().join("gevulot");
        std::fs::copy(env!("CARGO_BIN_EXE_gevulot"), &binary).expect("copy the binary");
        let status = std::process::Command::new("chown")
            .args(["-R", "nobody"])
            .arg(home.path())
            .status()
            .expect("chown");
        assert!(status.success());
        // setpriv execs the node itself (no parent process in between to swallow signals).
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&binary)
            .arg("run");
        c
    } else {
        let mut c = gevulot();
        c.arg("run");
        c
    };
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GEVULOT_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", home.path())
        .env("NO_COLOR", "1");
    let mut node = Node::spawn(cmd);
    let ready = node.wait_for("node ready", STARTUP);
    let data = home.path().join(".local/share/gevulot");
    assert!(ready.contains("sqlite"), "{ready}");
    let log = node.terminate();
    assert!(
        log.contains(&data.display().to_string()),
        "the log says where data goes:\n{log}"
    );
    assert!(data.join("gevulot.db").exists());
    assert!(data.join("node.key").exists());
    assert!(data.join("log").is_dir());
}

/// An env file that writes unset values as `NAME=` (systemd, Podman): an empty `GEVULOT_*`
/// variable counts as unset, for the node's settings and the global ones alike.
#[test]
fn empty_variables_count_as_unset() {
    let dir = testkit::tempdir();
    let mut cmd = run_on_loopback(dir.path());
    cmd.env("GEVULOT_DB_URL", "")
        .env("GEVULOT_LOG_FORMAT", "")
        .env("GEVULOT_CPUS", "")
        .env("GEVULOT_MAX_VM_RUN_TIME", "")
        .env("NO_COLOR", "1");
    let mut node = Node::spawn(cmd);
    let ready = node.wait_for("node ready", STARTUP);
    assert!(ready.contains("sqlite"), "{ready}");
    node.terminate();
    assert!(dir.path().join("gevulot.db").exists());
    // An empty value given as a flag is still what the operator typed, and refused.
    let out = output(gevulot().args(["run", "--db-url", ""]));
    assert!(!out.status.success(), "{}", stderr(&out));
}

/// On start, leftovers of a killed node's VMs are cleaned up (the orphan reaping itself, with a
/// real QEMU, is tested in app/tests/it/vm.rs).
#[test]
fn run_cleans_vm_leftovers_on_start() {
    let dir = testkit::tempdir();
    let stale = dir.path().join("vms/old-task");
    std::fs::create_dir_all(stale.join("workspace")).expect("mkdir");
    std::fs::write(stale.join("qemu.pid"), "999999999").expect("pid");
    let cmd = run_on_loopback(dir.path());
    let mut node = Node::spawn(cmd);
    node.wait_for("node ready", STARTUP);
    assert!(!stale.exists(), "the leftover VM directory is removed");
    node.terminate();
}

/// `GEVULOT_LOG_FORMAT=json`: every line is one JSON object; the ready line carries its fields and
/// the lines of an HTTP request carry the request's id.
#[test]
fn json_log_lines_carry_their_fields_and_the_request_id() {
    let dir = testkit::tempdir();
    let mut cmd = run_on_loopback(dir.path());
    cmd.env("GEVULOT_NODE_NO_EXECUTION", "true")
        .env("GEVULOT_ADMIN_PASSWORD", "first-admin-password")
        .env("GEVULOT_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,tower_http=debug");
    let mut node = Node::spawn(cmd);
    let ready = node.wait_for("node ready", STARTUP);
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("the ready line is JSON");
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["target"], "gevulot");
    let addr = ready["json_rpc_listen_addr"]
        .as_str()
        .expect("the listen address is a field")
        .to_string();
    let (status, _) = crate::support::raw_http(
        addr.parse().expect("addr"),
        "GET /api/v1/node HTTP/1.1",
        &[],
    );
    assert_eq!(status, 200);
    let answered = node.wait_for("/api/v1/node", STARTUP);
    let answered: serde_json::Value = serde_json::from_str(&answered).expect("JSON");
    let id = answered["span"]["request_id"]
        .as_str()
        .expect("the request's id is in its span");
    assert!(!id.is_empty());
    let log = node.terminate();
    for line in log.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()),
            "not a JSON object: {line}"
        );
    }
}
