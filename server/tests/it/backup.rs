//! Backup and restore: a backup of a running node, the data directory wiped, the backup
//! restored, and the node back with every transaction, file and its key, answering the same.
//! A damaged backup restores nothing; a restore never overwrites a node.

use std::path::Path;

use reqwest::Client;
use serde_json::{Value, json};

use crate::support::*;

/// What a node answers that must survive a backup and restore.
async fn answers(node: &Running, hashes: &[String], file_url: &str) -> Vec<String> {
    let mut out = Vec::new();
    for hash in hashes {
        let r = rpc(&node.base, "getTransaction", json!([hash])).await;
        out.push(r.to_string());
    }
    let list = get(&format!("{}/api/v1/transactions?limit=100", node.base)).await;
    out.push(list["items"].to_string());
    let info = get(&format!("{}/api/v1/node", node.base)).await;
    out.push(format!("{} {}", info["public_key"], info["transactions"]));
    let bytes = reqwest::get(file_url)
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    out.push(blake3::hash(&bytes).to_hex().to_string());
    out
}

/// A node with transactions, a deploy and an uploaded file; returns the node, the hashes and
/// the file's URL.
async fn busy_node(db: Option<&str>) -> (Running, Vec<String>, String) {
    let node = Running::start_with(db, &[("GEVULOT_ADMIN_PASSWORD", "backup-admin-pass")]);
    let mut hashes = Vec::new();
    for name in ["deploy", "run", "empty"] {
        let v = testkit::vector(name);
        let r = Client::new()
            .post(format!("{}/api/v1/transactions", node.base))
            .header("content-type", "application/json")
            .body(v["input_json"].as_str().expect("json").to_string())
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 201, "{name}");
        hashes.push(v["hash_hex"].as_str().expect("hash").to_string());
    }
    let c = Client::new();
    let token = api_token(&c, &node.base, "admin", "backup-admin-pass").await;
    let upload: Value = c
        .post(format!("{}/api/v1/uploads?name=input.bin", node.base))
        .bearer_auth(&token)
        .body(
            (0..200_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        )
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    let url = upload["url"].as_str().expect("url").to_string();
    (node, hashes, url)
}

fn gevulot_in(data: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = gevulot();
    cmd.args(args).env("GEVULOT_DATA_DIRECTORY", data);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output(&mut cmd)
}

/// The file of the upload in a restored data directory is where the node serves it.
fn served_url(node: &Running, old: &str) -> String {
    let path = old.splitn(4, '/').nth(3).expect("a path");
    format!("{}/{path}", node.file_base_url)
}

#[tokio::test]
async fn backup_wipe_restore_on_sqlite() {
    let (node, hashes, file) = busy_node(None).await;
    let before = answers(&node, &hashes, &file).await;
    let backups = testkit::tempdir();
    let backup = backups.path().join("b");
    let backup_str = backup.display().to_string();
    // While the node runs.
    let out = gevulot_in(node.data.path(), &["backup", "--to", &backup_str], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("sqlite database"), "{}", stdout(&out));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).expect("manifest"))
            .expect("json");
    let files = manifest["files"].as_array().expect("files");
    assert!(files.iter().any(|f| {
        f["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("content/"))
    }));
    assert!(files.iter().any(|f| {
        f["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("txfiles/"))
    }));
    // A backup is never written over.
    let again = gevulot_in(node.data.path(), &["backup", "--to", &backup_str], &[]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));

    let (data, _) = node.stop();
    // Wipe.
    for entry in std::fs::read_dir(data.path()).expect("data") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("wipe");
        } else {
            std::fs::remove_file(&path).expect("wipe");
        }
    }

    // A damaged backup restores nothing.
    let damaged = backups.path().join("damaged");
    std::fs::create_dir_all(damaged.join("blobs")).expect("dir");
    for entry in walk(&backup) {
        let rel = entry.strip_prefix(&backup).expect("inside");
        std::fs::copy(&entry, damaged.join(rel)).expect("copy");
    }
    let blob = damaged
        .join("blobs")
        .join(files[0]["blake3"].as_str().expect("blake3"));
    let mut bytes = std::fs::read(&blob).expect("blob");
    bytes[0] ^= 1;
    std::fs::write(&blob, bytes).expect("damage");
    let out = gevulot_in(
        data.path(),
        &["restore", "--from", &damaged.display().to_string()],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("damaged, nothing was restored"),
        "{}",
        stderr(&out)
    );
    assert!(
        std::fs::read_dir(data.path())
            .expect("data")
            .next()
            .is_none(),
        "a refused restore wrote something"
    );

    let out = gevulot_in(data.path(), &["restore", "--from", &backup_str], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A restore never overwrites a node.
    let twice = gevulot_in(data.path(), &["restore", "--from", &backup_str], &[]);
    assert!(!twice.status.success());
    assert!(
        stderr(&twice).contains("already holds a node"),
        "{}",
        stderr(&twice)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.path().join("node.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let node = Running::start_in(data, None, &[]);
    let file = served_url(&node, &file);
    assert_eq!(answers(&node, &hashes, &file).await, before);
}

#[tokio::test]
async fn backup_and_restore_on_postgres() {
    let (cluster, url) = testkit::own_cluster_database().await.expect("database");
    let (node, hashes, file) = busy_node(Some(&url)).await;
    let before = answers(&node, &hashes, &file).await;
    // The webhook sender's position names this server's transactions (the node's own sender may
    // keep a later one meanwhile): a restore forgets it.
    let source = app::store::Store::connect(&url, &Default::default())
        .await
        .expect("connect");
    let position = app::store::ChangeCursor { xid: 5, seq: 5 };
    source
        .enqueue_deliveries(&[], Some(position))
        .await
        .expect("a position");
    let backups = testkit::tempdir();
    let backup = backups.path().join("b").display().to_string();
    let dump = cluster.tool("pg_dump").display().to_string();
    let out = gevulot_in(
        node.data.path(),
        &["backup", "--to", &backup],
        &[("GEVULOT_DB_URL", &url), ("GEVULOT_PG_DUMP", &dump)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("postgres database"),
        "{}",
        stdout(&out)
    );
    drop(node.stop());

    let (_, fresh) = testkit::own_cluster_database().await.expect("database");
    let data = testkit::tempdir();
    let restore = cluster.tool("pg_restore").display().to_string();
    let out = gevulot_in(
        data.path(),
        &["restore", "--from", &backup],
        &[("GEVULOT_DB_URL", &fresh), ("GEVULOT_PG_RESTORE", &restore)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = app::store::Store::connect(&fresh, &Default::default())
        .await
        .expect("connect");
    assert_eq!(restored.webhook_cursor().await.expect("read"), None);
    let node = Running::start_in(data, Some(&fresh), &[]);
    let file = served_url(&node, &file);
    assert_eq!(answers(&node, &hashes, &file).await, before);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
