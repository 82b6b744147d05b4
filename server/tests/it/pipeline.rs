//! The prover pipeline end to end: a real `gevulot run`, program images built from the VM
//! fixtures and served over HTTP by the test, real VMs under TCG with the hybrid vsock, and the
//! results read back through JSON-RPC, REST and the file server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use app::tx::{Hash, Payload, Transaction};

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn json_rpc_run_yields_a_verified_proof_with_downloadable_output() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let data = lab.serve("in.txt", b"the witness".to_vec());
    let node = lab.start(&[]);
    let user = SecretKey::generate().expect("key");
    let prover = program("prover", &prover_img, 512, 1);
    let verifier = program("verifier", &verifier_img, 512, 1);
    let d = deploy(&user, "test", prover.clone(), verifier.clone());
    let r = send_rpc(&node.base, &d).await;
    assert_eq!(r["result"], json!({"Ok": null}), "{r}");
    let run_tx = run(
        &user,
        vec![
            step(
                &prover,
                &["--nonce", "1"],
                vec![input("/workspace/in.txt", &data)],
            ),
            step(
                &verifier,
                &[],
                vec![output_of(&prover, "/workspace/proof.dat")],
            ),
        ],
    );
    let r = send_rpc(&node.base, &run_tx).await;
    assert_eq!(r["result"], json!({"Ok": null}), "{r}");

    let done = all_end(&node.base, &run_tx.hash, 240).await;
    assert_eq!(phases(&done), ["succeeded", "succeeded"], "{done:?}");
    assert_eq!(done[0]["kind"], "proof");
    assert_eq!(done[1]["kind"], "verification");
    assert_eq!(done[0]["attempt"], 1);
    // Each task's timeline, phase by phase.
    let timeline: Vec<&str> = done[0]["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| e["phase"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        timeline,
        [
            "queued",
            "downloading",
            "waiting_for_resources",
            "booting",
            "running",
            "submitting",
            "succeeded"
        ]
    );
    // The VM's console is there for operators.
    assert!(
        done[0]["log_tail"].as_str().is_some_and(|t| !t.is_empty()),
        "{done:?}"
    );

    // The original tree method: Run → Proof → Verification.
    let tree = rpc(&node.base, "getTransactionTree", json!([run_tx.hash])).await;
    let root = &tree["result"]["Ok"]["Root"];
    let proof_node = &root["children"][0]["Node"];
    assert!(proof_node.is_object(), "{tree}");
    let proof_hash =
        Hash(serde_json::from_value::<[u8; 32]>(proof_node["hash"].clone()).expect("proof hash"));
    assert!(proof_node["children"][0]["Leaf"].is_object(), "{tree}");

    // The Proof, signed by the node, with the proof bytes and an output file to download.
    let proof = rpc(&node.base, "getTransaction", json!([proof_hash])).await;
    let proof = &proof["result"]["Ok"];
    let info = rpc(&node.base, "gevulot_nodeInfo", json!([])).await;
    assert_eq!(proof["author"], info["result"]["public_key"], "{proof}");
    let payload = &proof["payload"]["Proof"];
    assert_eq!(payload["parent"], run_tx.hash.to_hex());
    assert_eq!(payload["prover"], prover.hash.to_hex());
    let file = &payload["files"][0];
    assert_eq!(file["vm_path"], "/workspace/proof.dat");
    let url = file["url"].as_str().expect("url");
    assert!(url.starts_with(&node.file_base_url), "{url}");
    assert_eq!(
        blake3_of(url).await,
        file["checksum"].as_str().expect("checksum")
    );
    // The proof names the input it was made from.
    let proof_bytes = base64_decode(payload["proof"].as_str().expect("proof"));
    let expected = format!("proof:{}:--nonce 1", blake3::hash(b"the witness").to_hex());
    assert_eq!(String::from_utf8_lossy(&proof_bytes), expected);
    // The image and the input are served at the original's paths, as peers ask for them.
    let files = format!("http://{}", node.files);
    assert_eq!(
        blake3_of(&format!("{files}/images/{}/prover.img", prover.hash)).await,
        prover_img.checksum
    );
    assert_eq!(
        blake3_of(&format!("{files}/txfiles/{}/workspace/in.txt", run_tx.hash)).await,
        data.checksum
    );
    // The metrics saw both VMs boot and run, and both tasks succeed (they follow the node's
    // events, so they may trail the status by a moment).
    let series = [
        "gevulot_vm_boot_seconds_count 2",
        "gevulot_vm_run_seconds_count 2",
        "gevulot_tasks_ended_total{phase=\"succeeded\"} 2",
        "gevulot_tasks_ended_total{phase=\"failed\"} 0",
    ];
    let start = std::time::Instant::now();
    loop {
        let metrics = node.metrics_text().await;
        if series.iter().all(|s| metrics.contains(s)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{series:?} not all in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits through REST (`POST /api/v1/transactions`); returns the HTTP status and body.
pub async fn send_rest(base: &str, tx: &Transaction) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/transactions"))
        .json(tx)
        .send()
        .await
        .expect("submit");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn cancel(key: &SecretKey, run: &Transaction) -> Transaction {
    Transaction::new_signed(Payload::Cancel { parent: run.hash }, nonce(), key)
}

fn ended_with(tasks: &[Value], index: usize, phase: &str) -> bool {
    tasks.get(index).is_some_and(|t| t["phase"] == phase)
}

fn ms(t: &Value, field: &str) -> String {
    t[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {t}"))
        .to_string()
}

#[tokio::test]
async fn rest_three_step_workflow_chains_outputs() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let data = lab.serve("in.txt", b"first input".to_vec());
    let node = lab.start(&[]);
    let user = SecretKey::generate().expect("key");
    // Two deployments of the same images: one content, stored once.
    let (p1, v1) = (
        program("p1", &prover_img, 256, 1),
        program("v1", &verifier_img, 256, 1),
    );
    let (p2, v2) = (
        program("p2", &prover_img, 256, 1),
        program("v2", &verifier_img, 256, 1),
    );
    for d in [
        deploy(&user, "one", p1.clone(), v1),
        deploy(&user, "two", p2.clone(), v2.clone()),
    ] {
        assert_eq!(send_rest(&node.base, &d).await.0, 201);
    }
    let run_tx = run(
        &user,
        vec![
            step(&p1, &[], vec![input("/workspace/in.txt", &data)]),
            step(
                &p2,
                &["second"],
                vec![output_of(&p1, "/workspace/proof.dat")],
            ),
            step(&v2, &[], vec![output_of(&p2, "/workspace/proof.dat")]),
        ],
    );
    let (status, body) = send_rest(&node.base, &run_tx).await;
    assert_eq!(status, 201, "{body}");
    let done = all_end(&node.base, &run_tx.hash, 300).await;
    assert_eq!(
        phases(&done),
        ["succeeded", "succeeded", "succeeded"],
        "{done:?}"
    );
    let kinds: Vec<&str> = done
        .iter()
        .map(|t| t["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["proof", "proof", "verification"]);
    // Steps ran one after another.
    assert!(ms(&done[1], "started_at") >= ms(&done[0], "finished_at"));
    assert!(ms(&done[2], "started_at") >= ms(&done[1], "finished_at"));

    // The tree: two Proofs of the Run, the second verified.
    let tree = get(&format!(
        "{}/api/v1/transactions/{}/tree",
        node.base, run_tx.hash
    ))
    .await;
    assert_eq!(tree["kind"], "run");
    let proofs = tree["children"].as_array().expect("children");
    assert_eq!(proofs.len(), 2, "{tree}");
    let verified: Vec<&Value> = proofs
        .iter()
        .filter(|p| p["children"].as_array().is_some_and(|c| c.len() == 1))
        .collect();
    assert_eq!(verified.len(), 1, "{tree}");
    assert_eq!(verified[0]["children"][0]["kind"], "verification");

    // The second proof was made from the first one's output file.
    let mut outputs = HashMap::new();
    for p in proofs {
        let hash = p["hash"].as_str().expect("hash");
        let d = get(&format!("{}/api/v1/transactions/{hash}", node.base)).await;
        let payload = &d["output_form"]["payload"]["Proof"];
        let prover = payload["prover"].as_str().expect("prover").to_string();
        let file = &payload["files"][0];
        let url = file["url"].as_str().expect("url");
        assert_eq!(
            blake3_of(url).await,
            file["checksum"].as_str().expect("checksum")
        );
        let bytes = reqwest::get(url)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        outputs.insert(prover, bytes);
    }
    let first = &outputs[&p1.hash.to_hex()];
    let second = String::from_utf8_lossy(&outputs[&p2.hash.to_hex()]).to_string();
    assert_eq!(
        second,
        format!("proof:{}:second", blake3::hash(first).to_hex())
    );
    // Listed among the node's files.
    let files = get(&format!("{}/api/v1/files", node.base)).await;
    assert_eq!(files["items"].as_array().map(Vec::len), Some(2), "{files}");
}

#[tokio::test]
async fn a_run_waits_for_its_program_and_a_bad_checksum_fails_cleanly() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let node = lab.start(&[]);
    let user = SecretKey::generate().expect("key");
    let prover = program("late", &prover_img, 256, 1);
    let verifier = program("late-verifier", &verifier_img, 256, 1);
    let run_tx = run(
        &user,
        vec![
            step(&prover, &[], vec![]),
            step(
                &verifier,
                &[],
                vec![output_of(&prover, "/workspace/proof.dat")],
            ),
        ],
    );
    // Accepted before its programs exist, and visibly waiting for them.
    accepted(&node.base, &run_tx).await;
    let waiting = wait_tasks(
        &node.base,
        &run_tx.hash,
        Duration::from_secs(30),
        "waiting for the program",
        |t| ended_with(t, 0, "waiting_for_program"),
    )
    .await;
    let note = waiting[0]["error"].as_str().expect("what it waits for");
    assert!(note.contains(&prover.hash.to_hex()), "{note}");
    // Deployed later: it runs.
    accepted(&node.base, &deploy(&user, "late", prover.clone(), verifier)).await;
    let done = all_end(&node.base, &run_tx.hash, 240).await;
    assert_eq!(phases(&done), ["succeeded", "succeeded"], "{done:?}");

    // An image whose content does not match its checksum: the task fails with that reason, and
    // nothing of it is kept or served.
    let wrong = Image {
        url: prover_img.url.clone(),
        checksum: blake3::hash(b"something else").to_hex().to_string(),
    };
    let bad = program("bad", &wrong, 256, 1);
    let bad_verifier = program("bad-verifier", &verifier_img, 256, 1);
    accepted(&node.base, &deploy(&user, "bad", bad.clone(), bad_verifier)).await;
    let bad_run = run(&user, vec![step(&bad, &[], vec![])]);
    accepted(&node.base, &bad_run).await;
    let failed = all_end(&node.base, &bad_run.hash, 60).await;
    assert_eq!(phases(&failed), ["failed"]);
    let reason = failed[0]["error"].as_str().expect("reason");
    assert!(
        reason.contains("BLAKE3") && reason.contains(&wrong.checksum),
        "{reason}"
    );
    assert_eq!(failed[0]["attempt"], 0, "no VM was booted");
    // Asked for it, the download server tries its source again and refuses the content too.
    let r = reqwest::get(format!("http://{}/images/{}/bad.img", node.files, bad.hash))
        .await
        .expect("request");
    assert_eq!(r.status(), 502);
    let text = r.text().await.expect("text");
    assert!(text.contains("sent other content"), "{text}");
    assert!(
        !node
            .data
            .path()
            .join("content")
            .join(&wrong.checksum)
            .exists()
    );
}

#[tokio::test]
async fn cancel_during_boot_and_during_run_frees_the_resources() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let node = lab.start(&[("GEVULOT_ADMIN_PASSWORD", "admin-password-1")]);
    let user = SecretKey::generate().expect("key");
    let prover = program("slow", &prover_img, 512, 2);
    let verifier = program("slow-verifier", &verifier_img, 256, 1);
    assert_eq!(
        send_rpc(
            &node.base,
            &deploy(&user, "slow", prover.clone(), verifier.clone())
        )
        .await["result"],
        json!({"Ok": null})
    );
    let slow = |n: &str| {
        run(
            &user,
            vec![
                step(&prover, &["--sleep-ms", "600000", "--nonce", n], vec![]),
                step(
                    &verifier,
                    &[],
                    vec![output_of(&prover, "/workspace/proof.dat")],
                ),
            ],
        )
    };
    let usage =
        || async { get(&format!("{}/api/v1/node/resources", node.base)).await["usage"].clone() };
    let idle = json!({"free_cpus": 4, "free_mem_mib": 4096, "free_gpus": 0, "running_tasks": 0, "waiting_tasks": 0});
    let wait_idle = || async {
        let start = Instant::now();
        loop {
            let u = usage().await;
            if u == idle {
                return;
            }
            assert!(
                // Freed as the VM is killed: seconds, with a wide margin for a loaded machine.
                start.elapsed() < Duration::from_secs(30),
                "resources still held: {u}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // During boot, by the Run's author over JSON-RPC; someone else may not.
    let first = slow("1");
    accepted(&node.base, &first).await;
    wait_tasks(
        &node.base,
        &first.hash,
        Duration::from_secs(60),
        "booting",
        |t| ended_with(t, 0, "booting"),
    )
    .await;
    let stranger = SecretKey::generate().expect("key");
    let refused = send_rpc(&node.base, &cancel(&stranger, &first)).await;
    let refusal = refused["result"]["Err"]["InvalidRequest"]
        .as_str()
        .unwrap_or_default();
    assert!(refusal.contains("only the author"), "{refused}");
    assert_eq!(usage().await["running_tasks"], 1);
    // The metrics show the VM and what it holds.
    let metrics = node.metrics_text().await;
    for series in [
        "gevulot_vms_running 1",
        "gevulot_cpus_in_use 2",
        "gevulot_memory_in_use_bytes 536870912",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    accepted(&node.base, &cancel(&user, &first)).await;
    let ended = all_end(&node.base, &first.hash, 15).await;
    assert_eq!(phases(&ended), ["cancelled", "cancelled"], "{ended:?}");
    wait_idle().await;

    // While the program runs, by an operator through REST.
    let second = slow("2");
    assert_eq!(send_rest(&node.base, &second).await.0, 201);
    wait_tasks(
        &node.base,
        &second.hash,
        Duration::from_secs(120),
        "running",
        |t| ended_with(t, 0, "running"),
    )
    .await;
    let c = reqwest::Client::new();
    let token = api_token(&c, &node.base, "admin", "admin-password-1").await;
    let r = c
        .post(format!(
            "{}/api/v1/transactions/{}/cancel",
            node.base, second.hash
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status(), 201);
    let ended = all_end(&node.base, &second.hash, 15).await;
    assert_eq!(phases(&ended), ["cancelled", "cancelled"], "{ended:?}");
    assert!(
        ended[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Cancel transaction")
    );
    wait_idle().await;
    // No VM of this node is left: its directory goes once the task's driver has cleaned up,
    // just after the resources are freed.
    let vms = node.data.path().join("vms");
    let left = || std::fs::read_dir(&vms).map(|d| d.count()).unwrap_or(0);
    let start = Instant::now();
    while left() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a VM directory is left: {:?}",
            std::fs::read_dir(&vms).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deadlines_end_hung_programs_and_crashes_are_retried_then_fail() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let crash_img = lab.program_image("crash.img", "/bin/test-crash");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let node = lab.start(&[
        ("GEVULOT_MAX_VM_RUN_TIME", "20"),
        ("GEVULOT_TASK_MAX_ATTEMPTS", "2"),
    ]);
    let user = SecretKey::generate().expect("key");
    let hung = program("hung", &prover_img, 256, 1);
    let crash = program("crash", &crash_img, 256, 1);
    let verifier = program("v", &verifier_img, 256, 1);
    for d in [
        deploy(&user, "hung", hung.clone(), verifier.clone()),
        deploy(&user, "crash", crash.clone(), verifier),
    ] {
        accepted(&node.base, &d).await;
    }
    let hung_run = run(&user, vec![step(&hung, &["--sleep-ms", "600000"], vec![])]);
    let crash_run = run(&user, vec![step(&crash, &[], vec![])]);
    for r in [&hung_run, &crash_run] {
        accepted(&node.base, r).await;
    }
    let crashed = all_end(&node.base, &crash_run.hash, 180).await;
    assert_eq!(phases(&crashed), ["failed"]);
    assert_eq!(crashed[0]["attempt"], 2, "retried once, then given up");
    let reason = crashed[0]["error"].as_str().expect("reason");
    assert!(
        reason.contains("failed 2 times") && reason.contains("panic"),
        "{reason}"
    );
    // The retry is in the timeline, with why.
    let retry = crashed[0]["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .find(|e| e["phase"] == "queued" && e["note"].is_string())
        .cloned()
        .expect("a retry");
    assert!(
        retry["note"]
            .as_str()
            .is_some_and(|n| n.contains("retrying in")),
        "{retry}"
    );

    let timed_out = all_end(&node.base, &hung_run.hash, 180).await;
    assert_eq!(phases(&timed_out), ["timed_out"]);
    assert_eq!(timed_out[0]["attempt"], 1, "a deadline is not retried");
    let reason = timed_out[0]["error"].as_str().expect("reason");
    assert!(reason.contains("GEVULOT_MAX_VM_RUN_TIME"), "{reason}");
}

#[tokio::test]
async fn tasks_that_cannot_fit_together_wait_while_a_small_one_passes() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    // 2 CPUs and 2048 MiB: one big task (1536 MiB) at a time, a small one beside it.
    let node = lab.start(&[("GEVULOT_CPUS", "2"), ("GEVULOT_MEM_GB", "2")]);
    let user = SecretKey::generate().expect("key");
    let big = program("big", &prover_img, 1536, 1);
    let small = program("small", &prover_img, 256, 1);
    let huge = program("huge", &prover_img, 4096, 1);
    let verifier = program("v", &verifier_img, 256, 1);
    for d in [
        deploy(&user, "big", big.clone(), verifier.clone()),
        deploy(&user, "small", small.clone(), verifier.clone()),
        deploy(&user, "huge", huge.clone(), verifier),
    ] {
        accepted(&node.base, &d).await;
    }
    // More than any node of the network has: refused at once with the reason, no task made.
    let never = run(&user, vec![step(&huge, &[], vec![])]);
    accepted(&node.base, &never).await;
    let refused = wait_placement(&node.base, &never.hash, Duration::from_secs(30), |p| {
        p["outcome"] == "unplaceable"
    })
    .await;
    let reason = refused["reason"].as_str().expect("reason");
    assert!(
        reason.contains("4096 MiB") && reason.contains("2048 MiB"),
        "{reason}"
    );
    assert!(tasks(&node.base, &never.hash).await.is_empty());

    let big1 = run(
        &user,
        vec![step(&big, &["--sleep-ms", "3000", "--nonce", "1"], vec![])],
    );
    let big2 = run(
        &user,
        vec![step(&big, &["--sleep-ms", "3000", "--nonce", "2"], vec![])],
    );
    let small1 = run(&user, vec![step(&small, &[], vec![])]);
    for r in [&big1, &big2, &small1] {
        accepted(&node.base, r).await;
    }
    let mut ended = Vec::new();
    for r in [&big1, &big2, &small1] {
        let t = all_end(&node.base, &r.hash, 300).await;
        assert_eq!(phases(&t), ["succeeded"], "{t:?}");
        ended.push(t[0].clone());
    }
    let (b1, b2, s) = (&ended[0], &ended[1], &ended[2]);
    assert!(
        ms(b2, "started_at") >= ms(b1, "finished_at"),
        "the big ones ran one after another: {b1} {b2}"
    );
    assert!(
        ms(s, "started_at") < ms(b2, "started_at"),
        "the small one passed the waiting big one: {s} {b2}"
    );
}

#[tokio::test]
async fn a_node_killed_mid_run_finishes_the_run_after_restart() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let node = lab.start(&[]);
    let user = SecretKey::generate().expect("key");
    let prover = program("prover", &prover_img, 256, 1);
    let verifier = program("verifier", &verifier_img, 256, 1);
    assert_eq!(
        send_rpc(
            &node.base,
            &deploy(&user, "p", prover.clone(), verifier.clone())
        )
        .await["result"],
        json!({"Ok": null})
    );
    let run_tx = run(
        &user,
        vec![
            step(&prover, &["--sleep-ms", "5000"], vec![]),
            step(
                &verifier,
                &[],
                vec![output_of(&prover, "/workspace/proof.dat")],
            ),
        ],
    );
    // A second run, acknowledged just before the kill.
    let queued = run(&user, vec![step(&prover, &["--nonce", "2"], vec![])]);
    accepted(&node.base, &run_tx).await;
    wait_tasks(
        &node.base,
        &run_tx.hash,
        Duration::from_secs(120),
        "running",
        |t| ended_with(t, 0, "running"),
    )
    .await;
    accepted(&node.base, &queued).await;
    let before = get(&format!("{}/api/v1/node", node.base)).await;

    let data = node.kill();
    let node = lab.start_in(data, &[]);
    let done = all_end(&node.base, &run_tx.hash, 240).await;
    assert_eq!(phases(&done), ["succeeded", "succeeded"], "{done:?}");
    assert_eq!(
        done[0]["attempt"], 2,
        "the interrupted boot counts as an attempt"
    );
    let other = all_end(&node.base, &queued.hash, 240).await;
    assert_eq!(phases(&other), ["succeeded"]);
    // Nothing acknowledged was lost, and each step has exactly one result.
    let after = get(&format!("{}/api/v1/node", node.base)).await;
    let count = |v: &Value| v["transactions"].as_i64().expect("transactions");
    assert_eq!(count(&after), count(&before) + 3, "{before} {after}");
    let tree = get(&format!(
        "{}/api/v1/transactions/{}/tree",
        node.base, run_tx.hash
    ))
    .await;
    assert_eq!(tree["children"].as_array().map(Vec::len), Some(1), "{tree}");
}

#[tokio::test]
async fn a_program_that_never_comes_ends_the_wait_with_the_reason() {
    // No VM is needed: the task never gets past waiting for its program.
    let node = Running::start_with(None, &[("GEVULOT_PROGRAM_WAIT", "2")]);
    let user = SecretKey::generate().expect("key");
    let image = Image {
        url: "http://127.0.0.1:9/never.img".into(),
        checksum: "ab".repeat(32),
    };
    let missing = program("never-deployed", &image, 256, 1);
    let run_tx = run(&user, vec![step(&missing, &[], vec![])]);
    accepted(&node.base, &run_tx).await;
    let ended = all_end(&node.base, &run_tx.hash, 30).await;
    assert_eq!(phases(&ended), ["failed"]);
    let reason = ended[0]["error"].as_str().expect("reason");
    assert!(
        reason.contains(&missing.hash.to_hex()) && reason.contains("not deployed within 2 s"),
        "{reason}"
    );
    let timeline: Vec<&str> = ended[0]["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| e["phase"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(timeline, ["queued", "waiting_for_program", "failed"]);
}

#[tokio::test]
async fn a_download_shows_its_progress_and_can_be_cancelled() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    // 4 MiB at 640 KiB/s: several seconds of download to watch.
    let big = lab.serve("big-input.bin", vec![7u8; 4 << 20]);
    let slow_input = Image {
        url: format!("{}/slow/big-input.bin", lab.base),
        checksum: big.checksum,
    };
    let node = lab.start(&[]);
    let user = SecretKey::generate().expect("key");
    let prover = program("prover", &prover_img, 256, 1);
    let verifier = program("verifier", &verifier_img, 256, 1);
    accepted(&node.base, &deploy(&user, "p", prover.clone(), verifier)).await;
    let run_tx = run(
        &user,
        vec![step(
            &prover,
            &[],
            vec![input("/workspace/big.bin", &slow_input)],
        )],
    );
    accepted(&node.base, &run_tx).await;
    let downloading = wait_tasks(
        &node.base,
        &run_tx.hash,
        Duration::from_secs(60),
        "download progress",
        // (The image comes first, quickly; then the slow input.)
        |t| {
            t.first().is_some_and(|t| {
                t["progress"]["total_bytes"] == 4 << 20
                    && t["progress"]["received_bytes"].as_u64().unwrap_or(0) > 0
            })
        },
    )
    .await;
    let progress = &downloading[0]["progress"];
    assert_eq!(downloading[0]["phase"], "downloading");
    assert_eq!(progress["total_bytes"], 4 << 20, "{progress}");
    assert!(progress["received_bytes"].as_u64().unwrap_or(0) < 4 << 20);
    // Cancelled while downloading: nothing half-downloaded is kept under its checksum.
    accepted(&node.base, &cancel(&user, &run_tx)).await;
    let ended = all_end(&node.base, &run_tx.hash, 15).await;
    assert_eq!(phases(&ended), ["cancelled"]);
    assert!(
        !node
            .data
            .path()
            .join("content")
            .join(&slow_input.checksum)
            .exists()
    );
}

/// An executing node and a relay in one network: the executor runs the Run, once; the relay
/// stores the Run, the Proof and the Verification as they cross the network, runs nothing
/// itself, and its file list sends clients to the producer for the files it does not hold. A
/// node that joins later fetches the images from its peers, and runs a Run once the first
/// executor is gone.
#[tokio::test]
async fn results_and_files_cross_the_network() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let fast = ("GEVULOT_P2P_ANNOUNCE_INTERVAL_SECS", "1");
    let a = lab.start(&[fast]);
    let a_p2p = a.p2p.to_string();
    let b = lab.start(&[
        fast,
        ("GEVULOT_P2P_DISCOVERY_ADDR", &a_p2p),
        ("GEVULOT_NODE_NO_EXECUTION", "true"),
    ]);
    let connected = "gevulot_peers_connected 1";
    let start = Instant::now();
    while !(a.metrics_text().await.contains(connected)
        && b.metrics_text().await.contains(connected))
    {
        assert!(start.elapsed() < Duration::from_secs(30), "a and b connect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let user = SecretKey::generate().expect("key");
    let prover = program("prover", &prover_img, 256, 1);
    let verifier = program("verifier", &verifier_img, 256, 1);
    accepted(
        &a.base,
        &deploy(&user, "p", prover.clone(), verifier.clone()),
    )
    .await;
    let run_tx = run(
        &user,
        vec![
            step(&prover, &["--nonce", "7"], vec![]),
            step(
                &verifier,
                &[],
                vec![output_of(&prover, "/workspace/proof.dat")],
            ),
        ],
    );
    accepted(&a.base, &run_tx).await;
    let done = all_end(&a.base, &run_tx.hash, 240).await;
    assert_eq!(phases(&done), ["succeeded", "succeeded"], "{done:?}");

    // b ends up with the same tree, through gossip alone.
    let tree_on = |base: String| {
        let hash = run_tx.hash;
        async move { rpc(&base, "getTransactionTree", json!([hash])).await["result"].clone() }
    };
    let a_tree = tree_on(a.base.clone()).await;
    assert!(
        a_tree["Ok"]["Root"]["children"][0]["Node"].is_object(),
        "{a_tree}"
    );
    let start = Instant::now();
    while tree_on(b.base.clone()).await != a_tree {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "b has the whole tree"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ... and ran none of it: no task, no VM, no second Proof.
    assert!(tasks(&b.base, &run_tx.hash).await.is_empty());
    let b_node = get(&format!("{}/api/v1/node", b.base)).await;
    let a_node = get(&format!("{}/api/v1/node", a.base)).await;
    assert_eq!(b_node["transactions"], a_node["transactions"]);

    // The Proof's output file: b's file list sends clients to a, which serves it. (The original
    // output form names the answering node's server, as the original did.)
    let proof_hash = Hash(
        serde_json::from_value::<[u8; 32]>(
            a_tree["Ok"]["Root"]["children"][0]["Node"]["hash"].clone(),
        )
        .expect("proof hash"),
    );
    let on_a = rpc(&a.base, "getTransaction", json!([proof_hash])).await;
    let file = &on_a["result"]["Ok"]["payload"]["Proof"]["files"][0];
    let url = file["url"].as_str().expect("url");
    assert!(url.starts_with(&a.file_base_url), "{url} is on a");
    assert_eq!(
        blake3_of(url).await,
        file["checksum"].as_str().expect("checksum")
    );
    let on_b = rpc(&b.base, "getTransaction", json!([proof_hash])).await;
    assert_eq!(
        on_b["result"]["Ok"]["payload"]["Proof"]["files"][0]["url"],
        url.replacen(&a.file_base_url, &b.file_base_url, 1)
    );
    let files = get(&format!("{}/api/v1/files", b.base)).await;
    let listed = files["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|f| f["tx"] == proof_hash.to_hex())
        .expect("b lists the proof's file")
        .clone();
    assert_eq!(listed["url"], url, "{listed}");
    assert_eq!(listed["size"], Value::Null, "b does not hold it");

    // Asked at its own download port, b fetches the file from a, checks it and serves it.
    let through_b = url.replacen(&a.file_base_url, &b.file_base_url, 1);
    assert_eq!(
        blake3_of(&through_b).await,
        file["checksum"].as_str().expect("checksum")
    );

    // The images' URLs die. A node that joins now gets the Deploy through the catch-up, fetches
    // the images from its peers (which serve them at the original's path), and runs a Run.
    lab.unserve("prover.img");
    lab.unserve("verifier.img");
    let b_fetched = b.metrics_text().await;
    assert!(
        b_fetched.contains("gevulot_file_fetches_total{outcome=\"fetched\"} 1"),
        "the proof's file from a:\n{b_fetched}"
    );
    let c = lab.start(&[fast, ("GEVULOT_P2P_DISCOVERY_ADDR", &a_p2p)]);
    // c knows the Deploy only once the catch-up brought it: until then the program is a 404.
    let ready = |base: String, program: Hash| async move {
        get_known(&format!("{base}/api/v1/programs/{}", program.to_hex()))
            .await
            .is_some_and(|p| p["image"]["state"] == "ready")
    };
    let start = Instant::now();
    while !(ready(c.base.clone(), prover.hash).await && ready(c.base.clone(), verifier.hash).await)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "c fetches both images from its peers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // a goes: the next Run can only be placed on c.
    let _a_data = a.kill_for_good();
    let again = run(
        &user,
        vec![
            step(&prover, &["--nonce", "8"], vec![]),
            step(
                &verifier,
                &[],
                vec![output_of(&prover, "/workspace/proof.dat")],
            ),
        ],
    );
    accepted(&c.base, &again).await;
    let done = all_end(&c.base, &again.hash, 240).await;
    assert_eq!(phases(&done), ["succeeded", "succeeded"], "{done:?}");
    let fetched = c.metrics_text().await;
    assert!(
        fetched.contains("gevulot_file_fetches_total{outcome=\"fetched\"} 2"),
        "two images from peers:\n{fetched}"
    );
}
