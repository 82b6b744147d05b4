//! Draining and stopping with real VMs: a drained node lets its running VM finish and starts
//! nothing new until resumed (also after a restart); SIGTERM gives running tasks a grace period,
//! then stops their VMs, and the next start resumes them.

use std::time::Duration;

use app::crypto::SecretKey;
use serde_json::Value;

use crate::support::*;

fn phase_of(tasks: &[Value], index: usize) -> &str {
    tasks
        .get(index)
        .and_then(|t| t["phase"].as_str())
        .unwrap_or("")
}

#[tokio::test]
async fn a_drained_node_finishes_its_running_vm_and_starts_nothing_new() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let node = lab.start(&[("GEVULOT_ADMIN_PASSWORD", "drain-admin-pass")]);
    let user = SecretKey::generate().expect("key");
    let prover = program("prover", &prover_img, 256, 1);
    let verifier = program("verifier", &verifier_img, 256, 1);
    accepted(&node.base, &deploy(&user, "p", prover.clone(), verifier)).await;
    let first = run(
        &user,
        vec![step(
            &prover,
            &["--sleep-ms", "4000", "--nonce", "1"],
            vec![],
        )],
    );
    accepted(&node.base, &first).await;
    wait_tasks(
        &node.base,
        &first.hash,
        Duration::from_secs(120),
        "running",
        |t| phase_of(t, 0) == "running",
    )
    .await;

    let c = reqwest::Client::new();
    let token = api_token(&c, &node.base, "admin", "drain-admin-pass").await;
    let drain = format!("{}/api/v1/node/drain", node.base);
    let state: Value = c
        .post(&drain)
        .bearer_auth(&token)
        .send()
        .await
        .expect("drain")
        .json()
        .await
        .expect("json");
    assert_eq!(state["draining"], true, "{state}");
    assert_eq!(state["running_tasks"], 1, "{state}");

    // New work is still accepted, and waits: the only node that could run it drains.
    let second = run(&user, vec![step(&prover, &["--nonce", "2"], vec![])]);
    accepted(&node.base, &second).await;
    wait_placement(&node.base, &second.hash, Duration::from_secs(60), |p| {
        p["state"] == "waiting" && p["reason"].as_str().is_some_and(|r| r.contains("drains"))
    })
    .await;
    let done = all_end(&node.base, &first.hash, 120).await;
    assert_eq!(
        phases(&done),
        ["succeeded"],
        "the running VM finished: {done:?}"
    );
    // Its resources are free, and still nothing started.
    let usage = get(&format!("{}/api/v1/node/resources", node.base)).await["usage"].clone();
    assert_eq!(usage["running_tasks"], 0, "{usage}");
    assert_eq!(usage["waiting_tasks"], 0, "{usage}");
    assert!(tasks(&node.base, &second.hash).await.is_empty());

    let state: Value = c
        .delete(&drain)
        .bearer_auth(&token)
        .send()
        .await
        .expect("resume")
        .json()
        .await
        .expect("json");
    assert_eq!(state["draining"], false, "{state}");
    let done = all_end(&node.base, &second.hash, 120).await;
    assert_eq!(phases(&done), ["succeeded"], "{done:?}");
}

#[tokio::test]
async fn sigterm_stops_the_vm_after_the_grace_period_and_the_next_start_resumes_it() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let grace = [("GEVULOT_SHUTDOWN_GRACE", "1")];
    let node = lab.start(&grace);
    let user = SecretKey::generate().expect("key");
    let prover = program("prover", &prover_img, 256, 1);
    let verifier = program("verifier", &verifier_img, 256, 1);
    accepted(&node.base, &deploy(&user, "p", prover.clone(), verifier)).await;
    let long = run(&user, vec![step(&prover, &["--sleep-ms", "8000"], vec![])]);
    accepted(&node.base, &long).await;
    let running = wait_tasks(
        &node.base,
        &long.hash,
        Duration::from_secs(120),
        "running",
        |t| phase_of(t, 0) == "running",
    )
    .await;
    let task = running[0]["id"].as_i64().expect("task id");
    let pid_file = node
        .data
        .path()
        .join(format!("vms/task-{task}/run/qemu.pid"));
    let qemu: u32 = std::fs::read_to_string(&pid_file)
        .expect("the VM's pid file")
        .trim()
        .parse()
        .expect("pid");

    let (data, log) = node.stop();
    assert!(
        log.contains("stopped the tasks still running after the grace period"),
        "{log}"
    );
    // The VM went with the node (a reaped or zombie process has no command line).
    let cmdline = std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&format!("gevulot-task-{task}")),
        "QEMU {qemu} outlived the node"
    );

    let node = lab.start_in(data, &grace);
    let done = all_end(&node.base, &long.hash, 240).await;
    assert_eq!(phases(&done), ["succeeded"], "{done:?}");
    // An orderly stop is not the program's failure: that attempt does not count, and the
    // timeline says why the task ran again.
    assert_eq!(
        done[0]["attempt"], 1,
        "the stopped attempt does not count: {done:?}"
    );
    let timeline: Vec<(&str, &str)> = done[0]["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| {
            (
                e["phase"].as_str().unwrap_or(""),
                e["note"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let stopped = timeline
        .iter()
        .position(|(phase, note)| *phase == "queued" && note.contains("the node stopped"))
        .unwrap_or_else(|| panic!("the stop in the timeline: {timeline:?}"));
    assert_eq!(timeline[stopped - 1].0, "running", "{timeline:?}");
    assert_eq!(
        timeline.iter().filter(|(p, _)| *p == "booting").count(),
        2,
        "booted again after the start: {timeline:?}"
    );
}

/// An operator's drain outlives a restart: the node starts drained, from the same moment, until
/// it is resumed; a resume outlives one too; and the drain a stop itself makes (SIGTERM) is not
/// kept, so a node that was only stopped takes work again when it starts.
#[tokio::test]
async fn an_operators_drain_outlives_a_restart_and_a_stops_does_not() {
    let env = [("GEVULOT_ADMIN_PASSWORD", "drain-admin-pass")];
    let node = Running::start_with(None, &env);
    let c = reqwest::Client::new();
    let token = api_token(&c, &node.base, "admin", "drain-admin-pass").await;
    let call = |node: &Running, method: reqwest::Method| {
        c.request(method, format!("{}/api/v1/node/drain", node.base))
            .bearer_auth(&token)
            .send()
    };
    let state = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.expect("json")
    };

    let drained = state(call(&node, reqwest::Method::POST).await.expect("drain")).await;
    assert_eq!(drained["draining"], true, "{drained}");
    let (data, _) = node.stop();
    let node = Running::start_in(data, None, &env);
    let after = state(call(&node, reqwest::Method::GET).await.expect("get")).await;
    assert_eq!(after["draining"], true, "{after}");
    assert_eq!(after["since"], drained["since"], "the drain keeps its time");
    let metrics = node.metrics_text().await;
    assert!(metrics.contains("gevulot_draining 1"), "{metrics}");

    let resumed = state(call(&node, reqwest::Method::DELETE).await.expect("resume")).await;
    assert_eq!(resumed["draining"], false, "{resumed}");
    let (data, log) = node.stop();
    assert!(log.contains("starting drained"), "{log}");
    // This stop drained the node too, for that run of the process only.
    let node = Running::start_in(data, None, &env);
    let after = state(call(&node, reqwest::Method::GET).await.expect("get")).await;
    assert_eq!(after["draining"], false, "{after}");
    let (_, log) = node.stop();
    assert!(!log.contains("starting drained"), "{log}");
}
