//! The retention collector: what is expired goes, what a live Run still needs stays.

use std::path::Path;
use std::time::{Duration, SystemTime};

use app::collect::{Retention, collect};
use app::data_dir::DataDir;
use app::model::{NewTask, Phase, Source, TaskKind};
use app::tx::Hash;

use crate::storage::{Db, postgres, sqlite};
use crate::support::*;

const DAY: Duration = Duration::from_secs(86_400);

/// Writes `content` at `path` and dates it `age` ago.
fn old_file(path: &Path, content: &[u8], age: Duration) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, content).expect("write");
    date(path, age);
}

fn date(path: &Path, age: Duration) {
    let f = std::fs::File::open(path).expect("open");
    f.set_modified(SystemTime::now() - age).expect("mtime");
}

/// A content file, hard-linked at `link`, both dated `age` ago.
fn content_at(data: &DataDir, link: &Path, body: &[u8], age: Duration) -> Hash {
    let checksum = Hash(*blake3::hash(body).as_bytes());
    let content = data.content_file(&checksum);
    old_file(&content, body, age);
    std::fs::create_dir_all(link.parent().expect("parent")).expect("dir");
    std::fs::hard_link(&content, link).expect("link");
    checksum
}

crate::storage::conformance!(retention_deletes_what_expired_and_keeps_what_a_live_run_needs);

async fn retention_deletes_what_expired_and_keeps_what_a_live_run_needs(db: Db) {
    let store = &db.store;
    let dir = testkit::tempdir();
    let data = DataDir::new(dir.path());
    let k = key(3);
    let deploy_a = deploy(&k, "a", "a-verifier", 1);
    let deploy_b = deploy(&k, "b", "b-verifier", 2);
    let (a, b) = (program("a").hash, program("b").hash);
    for tx in [&deploy_a, &deploy_b] {
        store
            .insert_transaction(tx, Source::Rpc)
            .await
            .expect("deploy");
    }
    // A finished Run with its Proof, and a live one (its task queued) on program a.
    let done = run(&k, &[b], 3);
    let done_proof = proof(&k, done.hash, b, 4);
    let live = run(&k, &[a], 5);
    for tx in [&done, &done_proof, &live] {
        store
            .insert_transaction(tx, Source::Rpc)
            .await
            .expect("insert");
    }
    let tasks = store
        .create_tasks(&[
            NewTask {
                tx: done.hash,
                step_index: 0,
                program: b,
                kind: TaskKind::Proof,
            },
            NewTask {
                tx: live.hash,
                step_index: 0,
                program: a,
                kind: TaskKind::Proof,
            },
        ])
        .await
        .expect("tasks");
    store
        .set_task_phase(tasks[0].id, Phase::Succeeded, None)
        .await
        .expect("end");

    let old = 40 * DAY;
    // The finished Run's input and its Proof's output, linked to content.
    let done_input = data.run_input(&done.hash, "/workspace/a.txt");
    let done_content = content_at(&data, &done_input, b"old input", old);
    let out_checksum = Hash([7; 32]);
    let done_output = data.output_file(&done_proof.hash, &out_checksum, "proof.dat");
    old_file(&done_output, b"old proof output", old);
    date(
        &data
            .root()
            .join(format!("txfiles/{}", done_proof.hash.to_hex())),
        old,
    );
    date(
        &data.root().join(format!("txfiles/{}", done.hash.to_hex())),
        old,
    );
    // The live Run's input, as old: kept. Content it needs but nothing links yet: kept.
    let live_input = data.run_input(&live.hash, "/workspace/a.txt");
    let live_content = content_at(&data, &live_input, b"live input", old);
    date(
        &data.root().join(format!("txfiles/{}", live.hash.to_hex())),
        old,
    );
    let waiting = blake3::hash(b"b.txt");
    old_file(
        &data.content().join(waiting.to_hex().as_str()),
        b"b.txt",
        old,
    );
    // Images: b's unused for long (goes), a's used by the live Run (stays).
    let image_b = data.image(&b, "b.img");
    let b_content = content_at(&data, &image_b, b"image b", old);
    let image_a = data.image(&a, "a.img");
    content_at(&data, &image_a, b"image a", old);
    // An operator upload, as old: never collected.
    let upload = data.upload(&Hash([9; 32]), "kept.bin");
    old_file(&upload, b"upload", old);
    date(upload.parent().expect("dir"), old);
    // VM logs: an old one and a new one.
    let logs = dir.path().join("log/vms");
    old_file(&logs.join("task-1.log"), b"old log", old);
    old_file(&logs.join("task-2.log"), b"new log", Duration::ZERO);
    // Recent content nothing links to: kept until it is old.
    old_file(
        &data.content().join("f".repeat(64)),
        b"recent",
        Duration::ZERO,
    );

    // Console sessions: one expired, one live.
    let user = store
        .create_user("sam", "$argon2id$placeholder", "viewer")
        .await
        .expect("user")
        .expect("new");
    let now = app::store::now_ms();
    for (digest, expires) in [("expired", now - 1), ("live", now + 60_000)] {
        store
            .insert_session(digest, user.id, "csrf", expires)
            .await
            .expect("session");
    }

    let retention = Retention {
        outputs: Some(30 * DAY),
        images: Some(30 * DAY),
        vm_logs: Some(14 * DAY),
        vm_log_dir: Some(logs.clone()),
        task_history: Some(30 * DAY),
        webhook_log: Some(30 * DAY),
    };
    let collected = collect(store, &data, &retention).await.expect("collect");

    for gone in [
        &done_input,
        &done_output,
        &image_b,
        &data.content_file(&done_content),
        &data.content_file(&b_content),
        &logs.join("task-1.log"),
    ] {
        assert!(
            !gone.exists(),
            "{} should have been collected",
            gone.display()
        );
    }
    for kept in [
        &live_input,
        &data.content_file(&live_content),
        &data.content().join(waiting.to_hex().as_str()),
        &image_a,
        &upload,
        &logs.join("task-2.log"),
        &data.content().join("f".repeat(64)),
    ] {
        assert!(kept.exists(), "{} should have been kept", kept.display());
    }
    assert_eq!(collected.outputs.files, 2, "{collected:?}");
    assert_eq!(collected.images.files, 1, "{collected:?}");
    assert_eq!(collected.vm_logs.files, 1, "{collected:?}");
    assert_eq!(collected.content.files, 2, "{collected:?}");
    assert_eq!(collected.sessions, 1, "{collected:?}");
    assert!(store.session("live").await.expect("query").is_some());
    assert_eq!(
        collected.bytes(),
        (b"old input".len() + b"old proof output".len() + b"image b".len() + b"old log".len())
            as u64,
        "{collected:?}"
    );
    // The finished task's phase history goes once it ended long enough ago; the task stays.
    assert_eq!(collected.history_rows, 0, "it ended just now");
    store
        .execute_raw(&format!(
            "UPDATE tasks SET finished_at = 1 WHERE id = {}",
            tasks[0].id
        ))
        .await
        .expect("age the task");
    let aged = collect(store, &data, &retention).await.expect("collect");
    assert!(aged.history_rows >= 2, "{aged:?}");
    assert!(
        store
            .task_timelines(&done.hash)
            .await
            .expect("timeline")
            .is_empty()
    );
    assert!(
        !store
            .task_timelines(&live.hash)
            .await
            .expect("timeline")
            .is_empty()
    );
    assert_eq!(
        store.tasks_for_tx(&done.hash).await.expect("task")[0].phase,
        Phase::Succeeded
    );
    // A second pass finds nothing more.
    let again = collect(store, &data, &retention).await.expect("collect");
    assert_eq!(again.files(), 0, "{again:?}");
}
