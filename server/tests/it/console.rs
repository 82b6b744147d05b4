//! The operator console in a real browser: prepares a node (SQLite, VMs under TCG, a fixture
//! sysfs tree with a GPU), the program images and an input file, then runs the Playwright flows
//! of `e2e/console.test.mjs` in Debian's Chromium, and checks the files the browser downloaded
//! against the checksums the console showed. Screenshots land in `target/e2e-artifacts/console`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::Lab;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Chromium and playwright-core, or `None` (the test skips) outside CI.
fn browser() -> Option<PathBuf> {
    let chromium = testkit::vm::require("chromium")?;
    let ready = repo().join("e2e/node_modules/playwright-core").is_dir();
    if !ready {
        assert!(
            std::env::var("CI").is_err(),
            "e2e/node_modules is missing; scripts/test-all installs it (npm ci --prefix e2e)"
        );
        eprintln!("skipping: run `npm ci --prefix e2e` for the browser tests");
        return None;
    }
    Some(chromium)
}

#[tokio::test]
async fn console_flows_in_a_browser_with_and_without_javascript() {
    let Some(chromium) = browser() else { return };
    let Some(lab) = Lab::new().await else { return };
    lab.program_image("prover.img", "/bin/test-prover");
    lab.program_image("verifier.img", "/bin/test-verifier");
    let input = lab.dir.path().join("in.txt");
    std::fs::write(&input, b"an input uploaded through the console").expect("input");
    let sysfs = lab.dir.path().join("sysfs");
    app::gpu::fixture::workstation(&sysfs).expect("sysfs");
    // The GPU's USB-C function on vfio-pci too: the GPU is ready for passthrough.
    app::gpu::fixture::bind(&sysfs, "0000:01:00.2", "vfio-pci").expect("bind");
    let node = lab.start(&[
        ("GEVULOT_ADMIN_PASSWORD", "admin-password-1"),
        ("GEVULOT_SYSFS_ROOT", sysfs.to_str().expect("utf-8 path")),
    ]);
    // A browser opening the node's address lands on the console.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = plain
        .get(format!("{}/", node.base))
        .header("accept", "text/html")
        .send()
        .await
        .expect("get /");
    assert_eq!(r.headers()["location"], "/console");
    let out = repo().join("target/e2e-artifacts/console");
    let _ = std::fs::remove_dir_all(&out);

    let run = tokio::task::spawn_blocking({
        let (base, out) = (node.base.clone(), out.clone());
        let dir = lab.dir.path().to_path_buf();
        move || {
            Command::new("node")
                .arg("--test")
                .arg("--test-reporter=spec")
                .arg("console.test.mjs")
                .current_dir(repo().join("e2e"))
                .env("GEVULOT_E2E_BASE", base)
                .env("GEVULOT_E2E_ADMIN_PASSWORD", "admin-password-1")
                .env("GEVULOT_E2E_PROVER", dir.join("prover.img"))
                .env("GEVULOT_E2E_VERIFIER", dir.join("verifier.img"))
                .env("GEVULOT_E2E_INPUT", dir.join("in.txt"))
                .env("GEVULOT_E2E_GPU", "0000:01:00.0")
                .env("GEVULOT_E2E_OUT", &out)
                .env("GEVULOT_E2E_CHROMIUM", &chromium)
                .output()
                .expect("node runs")
        }
    })
    .await
    .expect("join");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "the browser flows failed (screenshots in {}):\n{report}\nnode log:\n{}",
        out.display(),
        node.log_text()
    );

    // The downloaded outputs are what the console said they are.
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).expect("result.json"))
            .expect("json");
    let downloads = result["downloads"].as_array().expect("downloads");
    assert_eq!(downloads.len(), 2, "one per flow: {result}");
    for d in downloads {
        let file = d["file"].as_str().expect("file");
        let bytes = std::fs::read(file).expect("downloaded file");
        assert_eq!(
            blake3::hash(&bytes).to_hex().as_str(),
            d["checksum"].as_str().expect("checksum"),
            "{file}"
        );
        assert!(String::from_utf8_lossy(&bytes).starts_with("proof:"));
    }
    for page in [
        "js-dashboard",
        "js-programs",
        "js-run-succeeded",
        "js-gpu-assigned",
        "nojs-run-cancelled",
    ] {
        assert!(out.join(format!("{page}.png")).is_file(), "{page}.png");
    }
}
