//! Hostile programs: each attacks the node from inside its VM (a symlink to a host file as
//! output, a workspace written full, a fork-and-allocate bomb, a flood of guest requests,
//! oversized and malformed messages). The node stays healthy, each task fails with a precise
//! reason, nothing outside the VM's directory changes, and an honest Run still succeeds after.

use app::crypto::SecretKey;

use crate::support::*;

#[tokio::test]
async fn hostile_programs_fail_precisely_and_the_node_stays_healthy() {
    let Some(lab) = Lab::new().await else { return };
    let hostile_img = lab.program_image("hostile.img", "/bin/test-hostile");
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let node = lab.start(&[
        ("GEVULOT_MAX_WORKSPACE_MB", "32"),
        ("GEVULOT_TASK_MAX_ATTEMPTS", "1"),
        ("GEVULOT_MAX_VM_RUN_TIME", "120"),
    ]);
    let user = SecretKey::generate().expect("key");
    let hostile = program("hostile", &hostile_img, 256, 1);
    let prover = program("prover", &prover_img, 256, 1);
    let verifier = program("verifier", &verifier_img, 256, 1);
    accepted(
        &node.base,
        &deploy(&user, "h", hostile.clone(), verifier.clone()),
    )
    .await;
    accepted(&node.base, &deploy(&user, "p", prover.clone(), verifier)).await;
    let outside = std::fs::read_dir(node.data.path())
        .expect("data")
        .map(|e| e.expect("entry").file_name())
        .collect::<std::collections::BTreeSet<_>>();

    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["symlink"],
            &["symbolic link", "not a regular file", "checksum"],
        ),
        (&["fill", "256"], &["GEVULOT_MAX_WORKSPACE_MB"]),
        (
            &["fork-bomb"],
            &["without a result", "Out of memory", "longer than", "failed"],
        ),
        (&["flood"], &["more than 1000 requests"]),
        (&["malformed"], &["reported that the task failed"]),
    ];
    let runs: Vec<_> = cases
        .iter()
        .map(|(args, _)| run(&user, vec![step(&hostile, args, vec![])]))
        .collect();
    for r in &runs {
        accepted(&node.base, r).await;
    }
    let mut figures = testkit::bench::Figures::new("fault-hostile-guests");
    let mut report = String::new();
    for ((args, expected), r) in cases.iter().zip(&runs) {
        let ended = all_end(&node.base, &r.hash, 400).await;
        let task = &ended[0];
        assert!(
            task["phase"] == "failed" || task["phase"] == "timed_out",
            "{args:?}: {task}"
        );
        let reason = task["error"].as_str().unwrap_or_default();
        eprintln!("{args:?} -> {}: {reason}", task["phase"]);
        assert!(
            expected.iter().any(|e| reason.contains(e)),
            "{args:?}: the reason {reason:?} is not one of {expected:?}"
        );
        // The outcome: the task ended (failed or timed out) with its precise reason.
        figures.add(
            &format!(
                "{}: task {} with its reason",
                args.join(" "),
                task["phase"].as_str().unwrap_or("?")
            ),
            1.0,
            "tasks",
        );
        report.push_str(&format!("{args:?} -> {}: {reason}\n", task["phase"]));
    }
    // Counted by why, for the dashboard.
    let metrics = node.metrics_text().await;
    for line in [
        r#"gevulot_task_failures_total{reason="limits"} 3"#,
        r#"gevulot_task_failures_total{reason="program"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    // Healthy: ready, resources all free, and an honest Run succeeds.
    let ready = reqwest::get(format!("http://{}/readyz", node.health))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let usage = get(&format!("{}/api/v1/node/resources", node.base)).await["usage"].clone();
    assert_eq!(usage["running_tasks"], 0, "{usage}");
    // Its proof, sent inline, is over tonic's 4 MiB default and within GEVULOT_MAX_PROOF_BYTES.
    let honest = run(
        &user,
        vec![step(
            &prover,
            &["--nonce", "honest", "--proof-mib", "6"],
            vec![],
        )],
    );
    accepted(&node.base, &honest).await;
    let done = all_end(&node.base, &honest.hash, 240).await;
    assert_eq!(phases(&done), ["succeeded"], "{done:?}");
    let tree = get(&format!(
        "{}/api/v1/transactions/{}/tree",
        node.base, honest.hash
    ))
    .await;
    let proof_hash = tree["children"][0]["hash"].as_str().expect("a Proof");
    let proof = get(&format!("{}/api/v1/transactions/{proof_hash}", node.base)).await;
    let proof = base64_decode(
        proof["output_form"]["payload"]["Proof"]["proof"]
            .as_str()
            .expect("proof"),
    );
    assert_eq!(proof.len(), 6 << 20, "the whole proof is stored");
    // Nothing new outside the node's own areas, and no VM directory left behind.
    let after = std::fs::read_dir(node.data.path())
        .expect("data")
        .map(|e| e.expect("entry").file_name())
        .collect::<std::collections::BTreeSet<_>>();
    let new: Vec<_> = after.difference(&outside).collect();
    assert!(
        new.iter()
            .all(|n| ["txfiles", "images", "content", "vms", "tmp"]
                .iter()
                .any(|a| n.to_string_lossy() == *a)),
        "new entries in the data directory: {new:?}"
    );
    let vms = std::fs::read_dir(node.data.path().join("vms"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(vms, 0, "VM directories left behind");
    figures
        .add(
            "node ready, resources free, an honest Run proven after",
            1.0,
            "checks",
        )
        .write(&report);
}
