//! Files fetched on arrival: a Deploy's images and a Run's inputs start downloading when the
//! transaction is stored, not when a task needs them, so a client that serves a file only
//! briefly is done with at once; each file's state shows in the status API; a dead URL shows as
//! failed within seconds and the Run on it fails with the reason; the image of a program this
//! node can never run is not fetched at all, and says so.

use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use serde_json::Value;

use crate::support::*;

/// The files a transaction names and where each stands on `base`.
async fn files(base: &str, hash: &app::tx::Hash) -> Vec<Value> {
    get(&format!(
        "{base}/api/v1/transactions/{}/status",
        hash.to_hex()
    ))
    .await["files"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until every file `hash` names is in `state`; returns them.
async fn files_in(base: &str, hash: &app::tx::Hash, state: &str) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let f = files(base, hash).await;
        if !f.is_empty() && f.iter().all(|f| f["state"] == state) {
            return f;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not all {state}: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn files_are_fetched_when_their_transaction_arrives() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let later = lab.serve("later.txt", b"an input only the second step reads".to_vec());
    let node = lab.start(&[]);
    let user = SecretKey::generate().expect("key");
    let prover = program("prover", &prover_img, 256, 1);
    let verifier = program("verifier", &verifier_img, 256, 1);
    let d = deploy(&user, "arrival", prover.clone(), verifier.clone());
    accepted(&node.base, &d).await;

    // Both images are fetched without any Run asking; then their server goes away.
    let images = files_in(&node.base, &d.hash, "ready").await;
    let names: Vec<&str> = images.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["prover.img", "verifier.img"]);
    let listed = get(&format!(
        "{}/api/v1/programs/{}",
        node.base,
        prover.hash.to_hex()
    ))
    .await;
    assert_eq!(listed["image"]["state"], "ready", "{listed}");
    lab.unserve("prover.img");
    lab.unserve("verifier.img");

    // The second step's input is fetched while the first step has not even finished.
    let r = run(
        &user,
        vec![
            step(&prover, &["--nonce", "3"], vec![]),
            step(
                &verifier,
                &[],
                vec![
                    output_of(&prover, "/workspace/proof.dat"),
                    input("/workspace/later.txt", &later),
                ],
            ),
        ],
    );
    accepted(&node.base, &r).await;
    let inputs = files_in(&node.base, &r.hash, "ready").await;
    assert_eq!(inputs[0]["name"], "/workspace/later.txt");
    let steps = tasks(&node.base, &r.hash).await;
    assert!(
        steps.len() < 2 || steps[1]["phase"] == "queued",
        "the second step had not started: {steps:?}"
    );
    lab.unserve("later.txt");
    let done = all_end(&node.base, &r.hash, 240).await;
    assert_eq!(phases(&done), ["succeeded", "succeeded"], "{done:?}");

    // A dead URL: the failed fetch shows within seconds, and a Run on the program fails with the
    // reason.
    let gone = Image {
        url: format!("{}/never-served.img", lab.base),
        checksum: prover_img.checksum.clone(),
    };
    let dead = program("dead", &gone, 256, 1);
    let other = program(
        "dead-verifier",
        &Image {
            url: format!("{}/never-served-either.img", lab.base),
            checksum: "ab".repeat(32),
        },
        256,
        1,
    );
    // The prover image's content is already here (same checksum): only the other one fails.
    let d2 = deploy(&user, "dead", dead.clone(), other.clone());
    accepted(&node.base, &d2).await;
    let start = Instant::now();
    let failed = loop {
        let f = files(&node.base, &d2.hash).await;
        if let Some(failed) = f.iter().find(|f| f["state"] == "failed") {
            break failed.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no failed fetch: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["name"], "dead-verifier.img", "{failed}");
    let reason = failed["error"].as_str().expect("a reason").to_string();
    assert!(
        reason.contains("never-served-either.img") && reason.contains("404"),
        "{reason}"
    );
    let r2 = run(&user, vec![step(&other, &[], vec![])]);
    accepted(&node.base, &r2).await;
    let ended = all_end(&node.base, &r2.hash, 120).await;
    assert_eq!(phases(&ended), ["failed"], "{ended:?}");
    let error = ended[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("404"), "{error}");
}

/// An image of a program this node can never run (it asks for a GPU the node does not have) is
/// not fetched on arrival: the status API, the program's page in the REST API and the console
/// say so and why, while the other image of the same Deploy is fetched as usual.
#[tokio::test]
async fn an_image_this_node_can_never_run_is_not_fetched() {
    let Some(lab) = Lab::new().await else { return };
    let gpu_img = lab.serve("gpu.img", b"an image only a GPU node would run".to_vec());
    let cpu_img = lab.serve("cpu.img", b"an image any node runs".to_vec());
    let node = lab.start(&[("GEVULOT_ADMIN_PASSWORD", "arrival-admin-pass")]);
    let user = SecretKey::generate().expect("key");
    let mut prover = program("gpu", &gpu_img, 256, 1);
    if let Some(r) = prover.resource_requirements.as_mut() {
        r.gpus = 1;
    }
    prover.hash = prover.compute_hash();
    let verifier = program("cpu", &cpu_img, 256, 1);
    let d = deploy(&user, "gpu-only", prover.clone(), verifier.clone());
    accepted(&node.base, &d).await;

    let start = Instant::now();
    let images = loop {
        let f = files(&node.base, &d.hash).await;
        if f.len() == 2 && f[1]["state"] == "ready" {
            break f;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the verifier's image was not fetched: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(images[0]["name"], "gpu.img", "{images:?}");
    assert_eq!(images[0]["state"], "not_needed", "{images:?}");
    let reason = images[0]["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("1 GPUs") && reason.contains("offers at most 0"),
        "{reason}"
    );
    assert!(images[1].get("reason").is_none(), "{images:?}");

    let listed = get(&format!(
        "{}/api/v1/programs/{}",
        node.base,
        prover.hash.to_hex()
    ))
    .await;
    assert_eq!(listed["image"]["state"], "not_needed", "{listed}");
    assert_eq!(listed["image"]["reason"], reason, "{listed}");
    let c = reqwest::Client::new();
    let (cookie, _) = sign_in(&c, &node.base, "admin", "arrival-admin-pass").await;
    let page = c
        .get(format!(
            "{}/console/programs/{}",
            node.base,
            prover.hash.to_hex()
        ))
        .header("cookie", cookie)
        .send()
        .await
        .expect("console")
        .text()
        .await
        .expect("page");
    assert!(
        page.contains("not fetched: this node can never run"),
        "{page}"
    );
    // Still not fetched afterwards: nothing fetches it behind the status's back.
    assert_eq!(files(&node.base, &d.hash).await[0]["state"], "not_needed");
}
