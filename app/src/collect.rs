//! The retention collector: deletes what the node keeps only for a while — the files of finished
//! Runs and their results, program images not used for a while, per-VM logs, the phase history
//! of long-ended tasks, expired console sessions, old webhook deliveries, and downloaded content
//! nothing links to any more — and never what a live Run (one with a task not ended, or not
//! planned yet) or its programs need. It reports what it freed, per area.
//!
//! What is old is told by modification time: a Run's or a result's directory by when it was
//! written, an image by when a task last used it (the pipeline touches it), content by when it
//! was downloaded. Operator uploads (`txfiles/<blake3>/`) are never collected.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::data_dir::DataDir;
use crate::store::{Store, StoreError, now_ms};
use crate::tx::{Hash, Payload, ProgramData};

/// How long each kind of thing is kept (`None`: forever).
#[derive(Clone, Debug, Default)]
pub struct Retention {
    /// The input and output files of finished Runs and their results (`txfiles/<hash>/`).
    pub outputs: Option<Duration>,
    /// Program images no task used for this long (`images/`, and their content).
    pub images: Option<Duration>,
    /// Per-VM logs, in `vm_log_dir`.
    pub vm_logs: Option<Duration>,
    pub vm_log_dir: Option<PathBuf>,
    /// The phase history of ended tasks (the task keeps its final phase).
    pub task_history: Option<Duration>,
    /// Finished webhook deliveries in the delivery log.
    pub webhook_log: Option<Duration>,
}

/// Files and bytes deleted in one area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freed {
    pub files: u64,
    pub bytes: u64,
}

impl Freed {
    fn add(&mut self, other: Freed) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// What one pass deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub outputs: Freed,
    pub images: Freed,
    pub vm_logs: Freed,
    /// Downloaded content no Run, result or image links to any more.
    pub content: Freed,
    pub history_rows: u64,
    /// Expired console sessions (they last `GEVULOT_SESSION_HOURS`).
    pub sessions: u64,
    /// Finished webhook deliveries past their retention.
    pub deliveries: u64,
    pub took: Duration,
}

impl Collected {
    pub fn bytes(&self) -> u64 {
        self.outputs.bytes + self.images.bytes + self.vm_logs.bytes + self.content.bytes
    }

    pub fn files(&self) -> u64 {
        self.outputs.files + self.images.files + self.vm_logs.files + self.content.files
    }
}

/// What live Runs need: their directories and their results', their programs, and the content
/// (by BLAKE3) of their inputs and programs' images.
#[derive(Debug, Default)]
struct Needed {
    dirs: HashSet<Hash>,
    programs: HashSet<Hash>,
    checksums: HashSet<String>,
}

async fn needed(store: &Store) -> Result<Needed, StoreError> {
    let mut needed = Needed::default();
    let live = store.runs_to_plan().await?;
    needed.dirs.extend(live.iter().copied());
    needed.dirs.extend(store.results_under(&live).await?);
    for stored in store.transactions_among(&live).await? {
        let Payload::Run { workflow } = &stored.tx.payload else {
            continue;
        };
        for step in &workflow.steps {
            needed.programs.insert(step.program);
            for input in &step.inputs {
                if let ProgramData::Input { checksum, .. } = input {
                    needed.checksums.insert(checksum.to_ascii_lowercase());
                }
            }
        }
    }
    for program in &needed.programs {
        if let Some(p) = store.get_program(program).await? {
            needed
                .checksums
                .insert(p.image_file_checksum.to_ascii_lowercase());
        }
    }
    Ok(needed)
}

/// One pass of the collector.
pub async fn collect(
    store: &Store,
    data: &DataDir,
    retention: &Retention,
) -> Result<Collected, StoreError> {
    let started = Instant::now();
    let now = SystemTime::now();
    let cutoff = |keep: Option<Duration>| keep.and_then(|k| now.checked_sub(k));
    let needed = needed(store).await?;
    let mut collected = Collected::default();

    if let Some(before) = cutoff(retention.outputs) {
        let root = data.root().join("txfiles");
        let candidates = blocking(move || old_hash_dirs(&root, before)).await;
        let candidates: Vec<(Hash, PathBuf)> = candidates
            .into_iter()
            .filter(|(h, _)| !needed.dirs.contains(h))
            .collect();
        let hashes: Vec<Hash> = candidates.iter().map(|(h, _)| *h).collect();
        // Only transactions' directories: uploads are named by their content and stay.
        let known = store.known_transactions(&hashes).await?;
        let doomed: Vec<PathBuf> = candidates
            .into_iter()
            .filter(|(h, _)| known.contains(h))
            .map(|(_, p)| p)
            .collect();
        collected.outputs = blocking(move || {
            let mut freed = Freed::default();
            for dir in doomed {
                freed.add(remove_tree(&dir));
            }
            freed
        })
        .await;
    }
    if let Some(before) = cutoff(retention.images) {
        let root = data.root().join("images");
        let programs = needed.programs.clone();
        collected.images = blocking(move || old_images(&root, &programs, before)).await;
    }
    if let (Some(before), Some(dir)) = (cutoff(retention.vm_logs), retention.vm_log_dir.clone()) {
        collected.vm_logs = blocking(move || old_files(&dir, before)).await;
    }
    // Content nothing links to any more, once it is as old as the shorter of the two periods.
    let content_keep = match (retention.outputs, retention.images) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(before) = cutoff(content_keep) {
        let root = data.content();
        let checksums = needed.checksums;
        collected.content = blocking(move || unlinked_content(&root, &checksums, before)).await;
    }
    if let Some(keep) = retention.task_history {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        collected.history_rows = store
            .delete_phase_history_before(now_ms().saturating_sub(keep_ms))
            .await?;
    }
    if let Some(keep) = retention.webhook_log {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        collected.deliveries = store
            .delete_deliveries_before(now_ms().saturating_sub(keep_ms))
            .await?;
    }
    collected.sessions = store.delete_expired_sessions().await?;
    collected.took = started.elapsed();
    Ok(collected)
}

/// Runs filesystem work off the async threads (a panic there frees nothing).
async fn blocking<T: Default + Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap_or_default()
}

fn older_than(meta: &std::fs::Metadata, before: SystemTime) -> bool {
    meta.modified().is_ok_and(|m| m < before)
}

/// `txfiles/<hash>/` directories last changed before `before`.
fn old_hash_dirs(root: &Path, before: SystemTime) -> Vec<(Hash, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let hash = Hash::from_hex(e.file_name().to_str()?)?;
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            (meta.is_dir() && older_than(&meta, before)).then(|| (hash, e.path()))
        })
        .collect()
}

/// Removes `dir` and everything in it; returns what went.
fn remove_tree(dir: &Path) -> Freed {
    let mut freed = Freed::default();
    let mut pending = vec![dir.to_path_buf()];
    let mut dirs = Vec::new();
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        dirs.push(d);
        for e in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(e.path());
            } else if std::fs::remove_file(e.path()).is_ok() {
                freed.files += 1;
                // A file linked elsewhere too frees nothing yet.
                if meta.nlink() <= 1 {
                    freed.bytes += meta.len();
                }
            }
        }
    }
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    freed
}

/// Images of programs no live Run uses, last used before `before`.
fn old_images(root: &Path, live: &HashSet<Hash>, before: SystemTime) -> Freed {
    let mut freed = Freed::default();
    let Ok(programs) = std::fs::read_dir(root) else {
        return freed;
    };
    for program in programs.flatten() {
        let Some(hash) = program.file_name().to_str().and_then(Hash::from_hex) else {
            continue;
        };
        if live.contains(&hash) {
            continue;
        }
        let dir = program.path();
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for f in files.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(f.path()) else {
                continue;
            };
            if meta.is_file() && older_than(&meta, before) && std::fs::remove_file(f.path()).is_ok()
            {
                freed.files += 1;
                if meta.nlink() <= 1 {
                    freed.bytes += meta.len();
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
    freed
}

/// Files below `dir` last changed before `before`.
fn old_files(dir: &Path, before: SystemTime) -> Freed {
    let mut freed = Freed::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(e.path());
            } else if older_than(&meta, before) && std::fs::remove_file(e.path()).is_ok() {
                freed.files += 1;
                freed.bytes += meta.len();
            }
        }
    }
    freed
}

/// Content files no image, input or output links to (one link left), not needed by a live Run,
/// downloaded before `before`.
fn unlinked_content(root: &Path, needed: &HashSet<String>, before: SystemTime) -> Freed {
    let mut freed = Freed::default();
    let Ok(entries) = std::fs::read_dir(root) else {
        return freed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_ascii_lowercase();
        if needed.contains(&name) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_file()
            && meta.nlink() == 1
            && older_than(&meta, before)
            && std::fs::remove_file(e.path()).is_ok()
        {
            freed.files += 1;
            freed.bytes += meta.len();
        }
    }
    freed
}
