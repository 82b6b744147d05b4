//! `run -h`, `generate key`, `show public-key`, `peer`, `migrate`.

use app::crypto::PublicKey;
use app::store::Store;

use crate::support::{gevulot, output, stderr, stdout};

/// Every directive of the product's configuration table, and the ones this node adds.
const DIRECTIVES: &[&str] = &[
    "GEVULOT_DATA_DIRECTORY",
    "GEVULOT_DB_URL",
    "GEVULOT_JSON_RPC_LISTEN_ADDR",
    "GEVULOT_HTTP_PORT",
    "GEVULOT_P2P_LISTEN_ADDR",
    "GEVULOT_P2P_ADVERTISED_LISTEN_ADDR",
    "GEVULOT_P2P_DISCOVERY_ADDR",
    "GEVULOT_PSK_PASSPHRASE",
    "GEVULOT_ACL_WHITELIST_URL",
    "GEVULOT_NODE_KEY_FILE",
    "GEVULOT_NODE_NO_EXECUTION",
    "GEVULOT_PROVIDER",
    "GEVULOT_QEMU_PATH",
    "GEVULOT_VSOCK_LISTEN_PORT",
    "GEVULOT_CPUS",
    "GEVULOT_MEM_GB",
    "GEVULOT_GPU_DEVICES",
    "GEVULOT_HEALTHCHECK_LISTEN_ADDR",
    "GEVULOT_METRICS_LISTEN_ADDR",
    "GEVULOT_LOG_DIRECTORY",
    // Added by this node.
    "GEVULOT_DB_URL_FILE",
    "GEVULOT_DB_MAX_CONNECTIONS",
    "GEVULOT_PSK_PASSPHRASE_FILE",
    "GEVULOT_ACL_MODE",
    "GEVULOT_MAX_PROOF_BYTES",
    "GEVULOT_MAX_UPLOAD_BYTES",
    "GEVULOT_VM_ACCEL",
    "GEVULOT_SYSFS_ROOT",
    "GEVULOT_SECURE_COOKIES",
    "GEVULOT_ADMIN_PASSWORD",
    "GEVULOT_VSOCK_MODE",
    "GEVULOT_VSOCK_DAEMON",
    "GEVULOT_MAX_VM_RUN_TIME",
    "GEVULOT_TASK_MAX_ATTEMPTS",
    "GEVULOT_TASK_RETRY_DELAY",
    "GEVULOT_PROGRAM_WAIT",
    "GEVULOT_MAX_TASKS_PER_PROGRAM",
    "GEVULOT_MAX_FILE_BYTES",
    "GEVULOT_DOWNLOAD_CONCURRENCY",
    "GEVULOT_RATE_LIMIT",
    "GEVULOT_CONCURRENCY_LIMIT",
    "GEVULOT_FILES_RATE_LIMIT",
    "GEVULOT_FILES_CONCURRENCY_LIMIT",
    "GEVULOT_P2P_MAX_PEERS",
    "GEVULOT_MIN_FREE_MB",
];

#[test]
fn run_help_lists_every_directive() {
    let out = output(gevulot().args(["run", "-h"]));
    assert!(out.status.success());
    let help = stdout(&out);
    for directive in DIRECTIVES {
        assert!(
            help.contains(&format!("[env: {directive}")),
            "{directive} missing from `run -h`:\n{help}"
        );
    }
    // Secret values from the environment are never echoed by the help.
    let out = output(
        gevulot()
            .args(["run", "-h"])
            .env("GEVULOT_PSK_PASSPHRASE", "do-not-show-me"),
    );
    assert!(!stdout(&out).contains("do-not-show-me"));
}

#[test]
fn generate_and_show_key() {
    let dir = testkit::tempdir();
    let path = dir.path().join("keys/node.key");
    let out = output(gevulot().args(["generate", "key", "--key-file"]).arg(&path));
    assert!(out.status.success(), "{}", stderr(&out));
    let public = stdout(&out).trim().to_string();
    assert!(PublicKey::from_hex(&public).is_ok(), "{public}");
    let bytes = std::fs::read(&path).expect("key file");
    assert_eq!(bytes.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Refuses to overwrite, and says so.
    let again = output(gevulot().args(["generate", "key", "--key-file"]).arg(&path));
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read(&path).expect("key file"),
        bytes,
        "the key is unchanged"
    );
    let shown = output(
        gevulot()
            .args(["show", "public-key", "--key-file"])
            .arg(&path),
    );
    assert!(shown.status.success());
    assert_eq!(stdout(&shown).trim(), public);
    // The environment variable names the key file too.
    let shown = output(
        gevulot()
            .args(["show", "public-key"])
            .env("GEVULOT_NODE_KEY_FILE", &path),
    );
    assert_eq!(stdout(&shown).trim(), public);
    // A missing key file is an error with the fix.
    let missing = output(
        gevulot()
            .args(["show", "public-key", "--key-file"])
            .arg(dir.path().join("nope")),
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("gevulot generate key"),
        "{}",
        stderr(&missing)
    );
}

async fn peer_commands(url: &str) {
    let key = app::crypto::SecretKey::from_bytes(&[3u8; 32])
        .expect("key")
        .public_key();
    let hex = key.to_hex();
    let run = |action: &str| output(gevulot().args(["peer", &hex, action, "--db-url", url]));
    let out = run("whitelist");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("{hex}: whitelisted"));
    assert_eq!(
        stdout(&run("whitelist")).trim(),
        format!("{hex}: already whitelisted")
    );
    let store = Store::connect(url, &Default::default())
        .await
        .expect("connect");
    assert!(store.acl_contains(&key).await.expect("query"));
    assert_eq!(
        stdout(&run("deny")).trim(),
        format!("{hex}: removed from the whitelist")
    );
    assert_eq!(
        stdout(&run("deny")).trim(),
        format!("{hex}: was not on the whitelist")
    );
    assert!(!store.acl_contains(&key).await.expect("query"));
    let bad = output(gevulot().args(["peer", "04abc", "whitelist", "--db-url", url]));
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("130 hexadecimal characters"),
        "{}",
        stderr(&bad)
    );
}

#[tokio::test]
async fn peer_on_sqlite() {
    let dir = testkit::tempdir();
    peer_commands(&testkit::sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn peer_on_postgres() {
    peer_commands(&testkit::postgres_url().await.expect("database")).await;
}

#[tokio::test]
async fn migrate_reports_and_is_idempotent() {
    let dir = testkit::tempdir();
    let url = testkit::sqlite_url(dir.path());
    for _ in 0..2 {
        let out = output(gevulot().args(["migrate", "--db-url", &url]));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            "database schema is up to date (sqlite)"
        );
    }
    let bad = output(gevulot().args(["migrate", "--db-url", "mysql://u:pw@h/db"]));
    assert!(!bad.status.success());
    let err = stderr(&bad);
    assert!(
        err.contains("unsupported database URL") && !err.contains("pw@"),
        "{err}"
    );
}
