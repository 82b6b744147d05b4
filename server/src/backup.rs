//! `gevulot backup` and `gevulot restore`.
//!
//! A backup is a directory: `manifest.json` (every file with its size and BLAKE3), `node.key`,
//! the database (`gevulot.db`, a consistent copy made with SQLite's `VACUUM INTO` while the node
//! may run; or `database.pgdump`, `pg_dump`'s custom format), and `blobs/<blake3>`: each distinct
//! content of the data directory's `content/`, `images/` and `txfiles/` once (the node
//! hard-links one content into several places; a backup keeps it once and a restore links it
//! again). Temporary files, VM directories and logs are not part of a backup.
//!
//! A restore first checks every file of the backup against the manifest and changes nothing
//! when one differs; it writes only into an empty data directory (no node key, database or
//! files) and, for PostgreSQL, an empty database; each file is checked again as it is written.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::config::{BackupArgs, RestoreArgs};
use app::data_dir::DataDir;

const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const KEY: &str = "node.key";
const SQLITE_FILE: &str = "gevulot.db";
const PG_FILE: &str = "database.pgdump";
const BLOBS: &str = "blobs";
/// The areas of the data directory a backup holds.
const AREAS: [&str; 3] = ["content", "images", "txfiles"];

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// The release that wrote it.
    version: String,
    created_at: String,
    /// `sqlite` or `postgres`.
    database: String,
    /// The database file in the backup and its checksum.
    database_file: Entry,
    node_key: Entry,
    /// The data directory's files, by path relative to it; their contents are in `blobs/`.
    files: Vec<Entry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    path: String,
    bytes: u64,
    blake3: String,
}

pub async fn backup(args: &BackupArgs) -> anyhow::Result<()> {
    let (url, data) = args.db.resolve()?;
    let data = DataDir::new(&data.path);
    let to = &args.to;
    if to.exists()
        && std::fs::read_dir(to)
            .with_context(|| format!("cannot read {}", to.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty; back up into a new or empty directory",
            to.display()
        );
    }
    std::fs::create_dir_all(to.join(BLOBS))
        .with_context(|| format!("cannot create {}", to.display()))?;

    let key_path = args
        .node_key_file
        .clone()
        .unwrap_or_else(|| data.node_key());
    let key = std::fs::read(&key_path).with_context(|| {
        format!(
            "cannot read the node key {} (set GEVULOT_NODE_KEY_FILE if it lives elsewhere)",
            key_path.display()
        )
    })?;
    write_private(&to.join(KEY), &key)?;

    let (database, file) = if is_postgres(url.expose()) {
        pg_dump(&args.pg_dump, url.expose(), &to.join(PG_FILE))?;
        ("postgres", PG_FILE)
    } else {
        // Not migrated: a backup copies the database as it is.
        let store = app::store::Store::connect(url.expose(), &Default::default())
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    app::store::redact_url(url.expose())
                )
            })?;
        let target = to.join(SQLITE_FILE);
        let quoted = target.display().to_string().replace('\'', "''");
        let copied = store.execute_raw(&format!("VACUUM INTO '{quoted}'")).await;
        store.close().await;
        copied.context("cannot copy the SQLite database (VACUUM INTO)")?;
        ("sqlite", SQLITE_FILE)
    };

    let mut files = Vec::new();
    let mut blobs = 0usize;
    for area in AREAS {
        for path in regular_files(&data.root().join(area))? {
            let relative = path
                .strip_prefix(data.root())
                .context("a file outside the data directory")?
                .to_string_lossy()
                .into_owned();
            let blob_tmp = to.join(BLOBS).join(".incoming");
            let (bytes, digest) = copy_hashing(&path, &blob_tmp)?;
            let blob = to.join(BLOBS).join(&digest);
            if blob.exists() {
                std::fs::remove_file(&blob_tmp)?;
            } else {
                std::fs::rename(&blob_tmp, &blob)?;
                blobs += 1;
            }
            files.push(Entry {
                path: relative,
                bytes,
                blake3: digest,
            });
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        database: database.to_string(),
        database_file: entry_of(&to.join(file), file)?,
        node_key: entry_of(&to.join(KEY), KEY)?,
        files,
    };
    std::fs::write(to.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)
        .context("cannot write the manifest")?;
    println!(
        "backed up to {}: the {database} database, the node key, {} files ({blobs} distinct contents)",
        to.display(),
        manifest.files.len()
    );
    Ok(())
}

pub async fn restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let from = &args.from;
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(from.join(MANIFEST))
            .with_context(|| format!("{} holds no {MANIFEST}: not a backup", from.display()))?,
    )
    .context("the manifest is not a backup manifest")?;
    if manifest.format != FORMAT {
        bail!(
            "the backup's format {} is not {FORMAT}; restore it with the release that wrote it ({})",
            manifest.format,
            manifest.version
        );
    }
    for e in &manifest.files {
        confined(&e.path)?;
    }
    // Every file of the backup is checked before anything is written.
    let mut damaged = Vec::new();
    let mut checked = std::collections::HashSet::new();
    let backup_files = [&manifest.database_file, &manifest.node_key]
        .into_iter()
        .map(|e| (from.join(&e.path), e))
        .chain(
            manifest
                .files
                .iter()
                .filter(|e| checked.insert(e.blake3.as_str()))
                .map(|e| (from.join(BLOBS).join(&e.blake3), e)),
        );
    for (path, e) in backup_files {
        match hash_file(&path) {
            Ok((bytes, digest)) if bytes == e.bytes && digest == e.blake3 => {}
            Ok(_) => damaged.push(format!("{} (its content differs)", e.path)),
            Err(_) => damaged.push(format!("{} (missing)", e.path)),
        }
    }
    if !damaged.is_empty() {
        bail!(
            "the backup is damaged, nothing was restored: {}{}",
            damaged
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if damaged.len() > 5 {
                format!(" and {} more", damaged.len() - 5)
            } else {
                String::new()
            }
        );
    }

    let (url, data) = args.db.resolve()?;
    let data = DataDir::new(&data.path);
    let key_path = args
        .node_key_file
        .clone()
        .unwrap_or_else(|| data.node_key());
    let postgres = is_postgres(url.expose());
    let sqlite_path = (!postgres).then(|| sqlite_file(url.expose())).transpose()?;
    let mut occupied: Vec<String> = Vec::new();
    if key_path.exists() {
        occupied.push(key_path.display().to_string());
    }
    if let Some(db) = &sqlite_path
        && db.exists()
    {
        occupied.push(db.display().to_string());
    }
    for area in AREAS {
        if !regular_files(&data.root().join(area))?.is_empty() {
            occupied.push(data.root().join(area).display().to_string());
        }
    }
    if !occupied.is_empty() {
        bail!(
            "the data directory already holds a node ({}); move it away, or restore into another GEVULOT_DATA_DIRECTORY",
            occupied.join(", ")
        );
    }
    match (manifest.database.as_str(), postgres) {
        ("postgres", true) => {
            pg_restore(&args.pg_restore, url.expose(), &from.join(PG_FILE))?;
            // The webhook sender's position names transactions of the server the dump was
            // taken on; on this one it would skip changes or read old ones again.
            app::store::Store::connect(url.expose(), &Default::default())
                .await
                .context("connect to the restored database")?
                .forget_webhook_cursor()
                .await
                .context("forget the webhook sender's position in the restored database")?;
        }
        ("sqlite", false) => {
            let target = sqlite_path.context("a SQLite database path")?;
            copy_verified(&from.join(SQLITE_FILE), &target, &manifest.database_file)?;
        }
        ("sqlite", true) => bail!(
            "this backup holds a SQLite database; restore it without GEVULOT_DB_URL (or with a sqlite:// one)"
        ),
        (_, _) => bail!(
            "this backup holds a PostgreSQL database; restore it with GEVULOT_DB_URL naming an empty PostgreSQL database"
        ),
    }
    copy_verified(&from.join(KEY), &key_path, &manifest.node_key)?;
    set_private(&key_path)?;
    let mut placed: HashMap<&str, PathBuf> = HashMap::new();
    for e in &manifest.files {
        let dest = data.root().join(&e.path);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        match placed.get(e.blake3.as_str()) {
            Some(first) if std::fs::hard_link(first, &dest).is_ok() => {}
            _ => {
                copy_verified(&from.join(BLOBS).join(&e.blake3), &dest, e)?;
                placed.insert(&e.blake3, dest);
            }
        }
    }
    println!(
        "restored the {} database, the node key and {} files into {} (every file checked); start the node",
        manifest.database,
        manifest.files.len(),
        data.root().display()
    );
    Ok(())
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The file of a `sqlite:` URL.
fn sqlite_file(url: &str) -> anyhow::Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .with_context(|| format!("{url:?} is neither a postgres:// nor a sqlite:// URL"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        bail!("the SQLite URL names no file");
    }
    Ok(PathBuf::from(path))
}

/// A manifest path must stay inside one of the backed-up areas.
fn confined(path: &str) -> anyhow::Result<()> {
    let mut parts = Path::new(path).components();
    let ok = matches!(parts.next(), Some(Component::Normal(first)) if AREAS.iter().any(|a| first == *a))
        && parts.all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        bail!("the manifest names {path:?}, outside the data directory's areas: not restored");
    }
    Ok(())
}

/// The regular files below `dir` (links and other kinds are left out), sorted.
fn regular_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", d.display())),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    Ok(found)
}

fn entry_of(path: &Path, name: &str) -> anyhow::Result<Entry> {
    let (bytes, blake3) = hash_file(path)?;
    Ok(Entry {
        path: name.to_string(),
        bytes,
        blake3,
    })
}

fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let (checksum, bytes) = app::hash::Hash::blake3_of_file(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok((bytes, checksum.to_hex()))
}

/// Copies `from` to `to` (replaced), hashing as it reads; returns the size and BLAKE3.
fn copy_hashing(from: &Path, to: &Path) -> anyhow::Result<(u64, String)> {
    let mut input =
        std::fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut output =
        std::fs::File::create(to).with_context(|| format!("cannot write {}", to.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = input.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n])?;
        bytes += n as u64;
    }
    output.sync_all()?;
    Ok((bytes, hasher.finalize().to_hex().to_string()))
}

/// Copies `from` to `to` through a temporary name, and keeps it only when its size and BLAKE3
/// are the manifest's.
fn copy_verified(from: &Path, to: &Path, expected: &Entry) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".restoring");
    let tmp = PathBuf::from(tmp);
    let (bytes, digest) = copy_hashing(from, &tmp)?;
    if bytes != expected.bytes || digest != expected.blake3 {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "{} changed while it was restored; run the restore again",
            expected.path
        );
    }
    std::fs::rename(&tmp, to).with_context(|| format!("cannot write {}", to.display()))?;
    Ok(())
}

fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))?;
    set_private(path)
}

fn set_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))
}

/// A PostgreSQL URL without its password, and the password (for `PGPASSWORD`): the password
/// never appears in a process list.
fn split_password(url: &str) -> anyhow::Result<(String, Option<String>)> {
    let mut parsed = url::Url::parse(url).context("the database URL does not parse")?;
    let password = parsed.password().map(|p| {
        url::form_urlencoded::parse(format!("p={p}").as_bytes())
            .next()
            .map_or_else(|| p.to_string(), |(_, v)| v.into_owned())
    });
    let _ = parsed.set_password(None);
    Ok((parsed.to_string(), password))
}

fn run_pg(program: &Path, url: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let (url, password) = split_password(url)?;
    let mut cmd = Command::new(program);
    cmd.args(args).arg("--dbname").arg(&url);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().with_context(|| {
        format!(
            "cannot run {} (install PostgreSQL's client tools, or name the program with GEVULOT_PG_DUMP / GEVULOT_PG_RESTORE)",
            program.display()
        )
    })?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn pg_dump(program: &Path, url: &str, file: &Path) -> anyhow::Result<()> {
    run_pg(
        program,
        url,
        &[
            "--format=custom".as_ref(),
            "--file".as_ref(),
            file.as_os_str(),
        ],
    )
}

fn pg_restore(program: &Path, url: &str, file: &Path) -> anyhow::Result<()> {
    run_pg(
        program,
        url,
        &[
            "--exit-on-error".as_ref(),
            "--no-owner".as_ref(),
            file.as_os_str(),
        ],
    )
    .context("restore into an empty PostgreSQL database (create it first; the node migrates it when it starts)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_stay_in_the_areas() {
        assert!(confined("content/abc").is_ok());
        assert!(confined("txfiles/a/b/c.dat").is_ok());
        for bad in [
            "../x",
            "/etc/passwd",
            "vms/x",
            "content/../../x",
            "node.key",
        ] {
            assert!(confined(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_leave_the_url() {
        let (url, password) =
            split_password("postgres://gevulot:s%40cret@db.example:5432/gevulot").expect("url");
        assert_eq!(url, "postgres://gevulot@db.example:5432/gevulot");
        assert_eq!(password.as_deref(), Some("s@cret"));
        assert_eq!(
            sqlite_file("sqlite:///var/lib/gevulot/gevulot.db?mode=rwc").expect("path"),
            PathBuf::from("/var/lib/gevulot/gevulot.db")
        );
    }
}
