//! The data directory's filesystem fills: first while an input downloads, then while a program
//! writes its outputs. Each task says so and waits for space (no attempt is burned, no Run
//! fails), nothing half-written is ever served, and once space returns both Runs are proven with
//! exact files. The filesystem is a small tmpfs mounted for the test (it needs root, as CI has);
//! the database lives elsewhere, as PostgreSQL does in production.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use app::tx::Hash;
use serde_json::Value;

use crate::support::*;

/// A tmpfs of `mib` MiB, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Tmpfs {
        assert!(
            is_root(),
            "the disk-full test mounts a tmpfs and needs root (CI runs as root)"
        );
        let dir = testkit::tempdir();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {}",
            dir.path().display()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        app::data_dir::DataDir::new(self.path())
            .space()
            .expect("statvfs")
            .free_bytes
    }

    /// Fills the filesystem with a ballast file until `leave` bytes are free (again, while the
    /// node frees space of its own meanwhile).
    fn fill(&self, leave: u64) {
        let leave = leave.div_ceil(1 << 20) << 20;
        let path = self.path().join("ballast");
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..20 {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("ballast");
            while file.write_all(&chunk).is_ok() {}
            let _ = file.flush();
            let len = std::fs::metadata(&path).expect("ballast").len();
            file.set_len(len.saturating_sub(leave)).expect("truncate");
            let free = self.free();
            if free >= leave && free < leave + (2 << 20) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("cannot leave {leave} bytes free: {} free", self.free());
    }

    fn release(&self) {
        std::fs::remove_file(self.path().join("ballast")).expect("ballast removed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Every file under `dir` whose name is `name`, at any depth.
fn find(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map_while(Result::ok)
    {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

/// Waits until a task of `run` waits for space, and returns its reason.
async fn waits_for_space(base: &str, run: &Hash, step: usize) -> String {
    let tasks = wait_tasks(
        base,
        run,
        Duration::from_secs(300),
        "a task waits for disk space",
        |t| {
            t.get(step).is_some_and(|t: &Value| {
                t["phase"] == "waiting_for_resources"
                    && t["error"].as_str().is_some_and(|e| e.contains("full"))
            })
        },
    )
    .await;
    tasks[step]["error"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn a_full_disk_makes_tasks_wait_and_nothing_half_written_is_served() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let image_bytes = std::fs::metadata(lab.dir.path().join("prover.img"))
        .expect("image")
        .len();
    let content: Vec<u8> = (0..8u32 << 20).map(|i| (i % 253) as u8).collect();
    let big_input = lab.serve("big.in", content);

    let fs = Tmpfs::mount(640);
    let data = tempfile::tempdir_in(fs.path()).expect("data directory");
    let db_dir = testkit::tempdir();
    let db = format!("sqlite://{}/gevulot.db", db_dir.path().display());
    let mut env = lab.node_env();
    env.push(("GEVULOT_MIN_FREE_MB", "0".into()));
    env.push(("GEVULOT_TASK_MAX_ATTEMPTS", "2".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node = Running::start_in(data, Some(&db), &env);
    let files = format!("http://{}", node.files);

    let user = SecretKey::generate().expect("key");
    let prover = program("prover", &prover_img, 512, 1);
    let verifier = program("verifier", &verifier_img, 512, 1);
    accepted(
        &node.base,
        &deploy(&user, "d", prover.clone(), verifier.clone()),
    )
    .await;
    // A first Run with room to spare: the images are fetched and the pipeline works.
    let warm = prove_and_verify(&user, &prover, &verifier, &[], vec![]);
    accepted(&node.base, &warm).await;
    assert_eq!(
        phases(&all_end(&node.base, &warm.hash, 300).await),
        ["succeeded", "succeeded"]
    );

    // 1. The disk fills while an input downloads.
    fs.fill(2 << 20);
    let r1 = prove_and_verify(
        &user,
        &prover,
        &verifier,
        &[],
        vec![input("/workspace/big.in", &big_input)],
    );
    accepted(&node.base, &r1).await;
    let reason = waits_for_space(&node.base, &r1.hash, 0).await;
    assert!(reason.contains("no space left on device"), "{reason}");
    let served = reqwest::get(format!("{files}/txfiles/{}/workspace/big.in", r1.hash))
        .await
        .expect("file server");
    // The file server fetches a file it lacks from where the transaction says; with the disk
    // full that fails, and it says so rather than serving part of it.
    let status = served.status().as_u16();
    let body = served.text().await.unwrap_or_default();
    assert!(matches!(status, 404 | 502 | 503), "{status}: {body}");
    println!("the input while the disk is full: {status} {body}");
    assert!(
        find(
            node.data.path(),
            &format!(".{}.partial", big_input.checksum)
        )
        .is_empty(),
        "the partial download is removed"
    );
    let released = Instant::now();
    fs.release();
    let done = all_end(&node.base, &r1.hash, 300).await;
    assert_eq!(phases(&done), ["succeeded", "succeeded"], "{done:?}");
    let input_recovery = released.elapsed();
    assert_eq!(
        blake3_of(&format!("{files}/txfiles/{}/workspace/big.in", r1.hash)).await,
        big_input.checksum
    );

    // 2. The disk fills while the program writes its outputs (its VM has room to boot).
    fs.fill(image_bytes + (8 << 20));
    let r2 = prove_and_verify(&user, &prover, &verifier, &["--output-mib", "16"], vec![]);
    accepted(&node.base, &r2).await;
    let reason = waits_for_space(&node.base, &r2.hash, 0).await;
    assert!(
        reason.contains("was full when the attempt ended"),
        "{reason}"
    );
    assert!(
        find(&node.data.path().join("txfiles"), "big.bin").is_empty(),
        "no output of the failed attempt is where files are served"
    );
    let released = Instant::now();
    fs.release();
    let done = all_end(&node.base, &r2.hash, 300).await;
    assert_eq!(phases(&done), ["succeeded", "succeeded"], "{done:?}");
    let output_recovery = released.elapsed();
    let tree = get(&format!(
        "{}/api/v1/transactions/{}/tree",
        node.base, r2.hash
    ))
    .await;
    let proof = tree["children"][0]["hash"].as_str().expect("a Proof");
    let proof = get(&format!("{}/api/v1/transactions/{proof}", node.base)).await;
    let big = proof["output_form"]["payload"]["Proof"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["vm_path"] == "/workspace/big.bin")
        .cloned()
        .unwrap_or_else(|| panic!("big.bin is an output: {proof}"));
    let expected: Vec<u8> = (0..16usize << 20).map(|i| (i % 251) as u8).collect();
    let expected = blake3::hash(&expected).to_hex().to_string();
    assert_eq!(big["checksum"], expected.as_str());
    assert_eq!(blake3_of(big["url"].as_str().expect("url")).await, expected);
    let ready = reqwest::get(format!("http://{}/readyz", node.health))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);

    let report = format!(
        "disk full: 2 tasks waited for space (a download, an output), 0 half-written files served; \
         proven {:.1} s and {:.1} s after space returned\n",
        input_recovery.as_secs_f64(),
        output_recovery.as_secs_f64()
    );
    print!("{report}");
    testkit::bench::Figures::new("fault-disk-full")
        .add(
            "tasks that waited for space (download, output)",
            2.0,
            "tasks",
        )
        .add("half-written files served", 0.0, "files")
        .add("Runs failed by the full disk", 0.0, "runs")
        .add(
            "space back -> Run proven (input download)",
            input_recovery.as_secs_f64(),
            "s",
        )
        .add(
            "space back -> Run proven (outputs)",
            output_recovery.as_secs_f64(),
            "s",
        )
        .write(&report);
}
