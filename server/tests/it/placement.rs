//! Placement across real `gevulot run` processes on loopback, with VMs under TCG: a Run is
//! executed once, by a node that can fit it, wherever it arrived; a node killed mid-run is
//! replaced by another; redundancy asks for proofs from several nodes.

use std::collections::BTreeSet;
use std::time::Duration;

use app::crypto::SecretKey;
use serde_json::{Value, json};

use crate::network::{ADMIN, Member, eventually_within, member_in};
use crate::support::{
    Image, Lab, accepted, deploy, input, program, prove_and_verify, rpc, run, step,
};

/// Long enough for a few TCG boots on a busy 2-core machine.
const RUN_WAIT: Duration = Duration::from_secs(240);

/// A node of the lab's network: VMs under TCG, announcements every second, joined through
/// `join` when given.
async fn lab_member(lab: &Lab, join: Option<&Member>, extra: &[(&'static str, &str)]) -> Member {
    let mut env: Vec<(&str, String)> = lab.node_env();
    env.push(("GEVULOT_ADMIN_PASSWORD", ADMIN.1.into()));
    env.push(("GEVULOT_P2P_ANNOUNCE_INTERVAL_SECS", "1".into()));
    if let Some(peer) = join {
        env.push(("GEVULOT_P2P_DISCOVERY_ADDR", peer.node.p2p.to_string()));
    }
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k, (*v).to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    member_in(testkit::tempdir(), &env).await
}

impl Member {
    async fn status(&self, hash: &str) -> Value {
        let r = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/transactions/{hash}/status",
                self.node.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("status");
        r.json().await.expect("json")
    }

    async fn tree(&self, hash: &str) -> Value {
        let hash = app::tx::Hash::from_hex(hash).expect("a hash");
        rpc(&self.node.base, "getTransactionTree", json!([hash])).await["result"].clone()
    }

    async fn peer_id(&self) -> String {
        self.network().await["peer_id"]
            .as_str()
            .expect("peer id")
            .to_string()
    }

    /// How many executing nodes this node hears announce.
    async fn live_executors(&self) -> usize {
        self.network().await["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|e| e["execution"] == true).count())
    }

    async fn placement_counter(&self, event: &str) -> u64 {
        let metrics = self.metrics().await;
        let series = format!("gevulot_placement_total{{event=\"{event}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The Proofs and Verifications of a Run's tree: (kind, author) for each, in tree order.
async fn results(member: &Member, run: &str) -> Vec<(String, String)> {
    let tree = member.tree(run).await;
    let mut hashes = Vec::new();
    collect(&tree["Ok"], &mut hashes);
    let mut out = Vec::new();
    for hash in hashes.into_iter().skip(1) {
        let tx =
            rpc(&member.node.base, "getTransaction", json!([hash])).await["result"]["Ok"].clone();
        let kind = tx["payload"]
            .as_object()
            .and_then(|p| p.keys().next().cloned())
            .unwrap_or_default();
        out.push((kind, tx["author"].as_str().unwrap_or("").to_string()));
    }
    out
}

/// Every hash of an original-shaped tree (`{"Root"|"Node"|"Leaf": {hash, children}}`), root first.
fn collect(tree: &Value, out: &mut Vec<Value>) {
    let Some(inner) = ["Root", "Node", "Leaf"].iter().find_map(|k| tree.get(*k)) else {
        return;
    };
    out.push(inner["hash"].clone());
    for child in inner["children"].as_array().into_iter().flatten() {
        collect(child, out);
    }
}

/// Waits until every node of `members` hears `executors` executing nodes.
async fn all_hear(members: &[&Member], executors: usize) {
    for m in members {
        eventually_within(
            Duration::from_secs(60),
            &format!("every node hears {executors} executors"),
            || async { m.live_executors().await == executors },
        )
        .await;
    }
}

/// The test prover and verifier, deployed by a fresh user through `on`.
struct Deployed {
    user: SecretKey,
    prover_img: Image,
    prover: app::tx::ProgramMetadata,
    verifier: app::tx::ProgramMetadata,
}

async fn deployed(lab: &Lab, on: &Member, name: &str) -> Deployed {
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let user = SecretKey::generate().expect("key");
    let prover = program("prover", &prover_img, 256, 1);
    let verifier = program("verifier", &verifier_img, 256, 1);
    accepted(
        &on.node.base,
        &deploy(&user, name, prover.clone(), verifier.clone()),
    )
    .await;
    Deployed {
        user,
        prover_img,
        prover,
        verifier,
    }
}

/// Which of `members` runs the first step of `hash` on a VM, once one does.
async fn running_on(members: &[&Member], hash: &str) -> usize {
    let found = std::cell::Cell::new(None);
    eventually_within(RUN_WAIT, "a node runs the first step", || async {
        for (i, m) in members.iter().enumerate() {
            if m.status(hash).await["tasks"][0]["phase"] == "running" {
                found.set(Some(i));
                return true;
            }
        }
        false
    })
    .await;
    found.get().expect("a node runs it")
}

/// A Run proving `data` with `prover` (given `args`), then verifying the proof.
fn with_hash(mut meta: app::tx::ProgramMetadata) -> app::tx::ProgramMetadata {
    meta.hash = meta.compute_hash();
    meta
}

async fn all_have(members: &[&Member], run: &str, proofs: usize, verifications: usize) -> bool {
    for m in members {
        let r = results(m, run).await;
        let p = r.iter().filter(|(k, _)| k == "Proof").count();
        let v = r.iter().filter(|(k, _)| k == "Verification").count();
        if p < proofs || v < verifications {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_once_to_a_node_that_fits_it() {
    let Some(lab) = Lab::new().await else { return };
    let data = lab.serve("in.txt", b"a placed witness".to_vec());
    let sysfs = testkit::tempdir();
    app::gpu::fixture::workstation(sysfs.path()).expect("fixture");
    // The GPU's whole IOMMU group on vfio-pci: ready for passthrough.
    app::gpu::fixture::bind(sysfs.path(), "0000:01:00.2", "vfio-pci").expect("bind");
    let root = sysfs.path().display().to_string();

    // a relays only; b executes without GPUs; c has a GPU in its pool.
    let a = lab_member(&lab, None, &[("GEVULOT_NODE_NO_EXECUTION", "true")]).await;
    let b = lab_member(&lab, Some(&a), &[]).await;
    let c = lab_member(
        &lab,
        Some(&a),
        &[
            ("GEVULOT_SYSFS_ROOT", &root),
            ("GEVULOT_GPU_DEVICES", "0000:01:00.0"),
        ],
    )
    .await;
    all_hear(&[&a, &b, &c], 2).await;
    let (b_id, c_id) = (b.peer_id().await, c.peer_id().await);

    let Deployed {
        user,
        prover_img,
        prover,
        verifier,
    } = deployed(&lab, &a, "placed").await;
    let r = prove_and_verify(
        &user,
        &prover,
        &verifier,
        &[],
        vec![input("/workspace/in.txt", &data)],
    );
    // Sent to the node that never executes.
    accepted(&a.node.base, &r).await;
    let hash = r.hash.to_hex();
    eventually_within(
        RUN_WAIT,
        "the Run is proven and verified everywhere",
        || async { all_have(&[&a, &b, &c], &hash, 1, 1).await },
    )
    .await;
    let everywhere: Vec<Value> =
        futures::future::join_all([&a, &b, &c].map(|m| m.tree(&hash))).await;
    assert!(
        everywhere.iter().all(|t| *t == everywhere[0]),
        "{everywhere:?}"
    );
    let found = results(&a, &hash).await;
    assert_eq!(found.len(), 2, "one Proof and one Verification: {found:?}");
    let authors: BTreeSet<&str> = found.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(authors.len(), 1, "both by the node that held it: {found:?}");
    assert!(
        *authors.iter().next().expect("an author") != a.key,
        "the relay proved nothing"
    );
    eventually_within(
        Duration::from_secs(30),
        "every node records that the Run is done",
        || async {
            let mut done = true;
            for m in [&a, &b, &c] {
                done &= m.status(&hash).await["placement"]["outcome"] == "done";
            }
            done
        },
    )
    .await;
    assert_eq!(
        b.placement_counter("placed").await + c.placement_counter("placed").await,
        1
    );
    // The console says so too: on the Run's page, and on the network page.
    let page = a.console(&format!("/console/transactions/{hash}")).await;
    assert!(page.contains("id=\"placement\""), "{page}");
    assert!(page.contains("ended (done)"), "{page}");
    let network = a.console("/console/network").await;
    assert!(
        network.contains("id=\"placement\"") && network.contains("Runs held"),
        "{network}"
    );

    // A Run that asks for a GPU goes to the node whose pool has one, not to the node it was sent to.
    let gpu_prover = program("gpu prover", &prover_img, 256, 1);
    let gpu_prover = app::tx::ProgramMetadata {
        resource_requirements: Some(app::tx::ResourceRequest {
            mem: 256,
            cpus: 1,
            gpus: 1,
        }),
        ..gpu_prover
    };
    let gpu_prover = with_hash(gpu_prover);
    accepted(
        &b.node.base,
        &deploy(&user, "gpu", gpu_prover.clone(), verifier.clone()),
    )
    .await;
    let g = run(&user, vec![step(&gpu_prover, &[], vec![])]);
    accepted(&b.node.base, &g).await;
    let g_hash = g.hash.to_hex();
    // c holds it (its VM then fails for want of /dev/vfio here, which ends the Run on c).
    let on_c_or_ended_there =
        |p: &Value| p["nodes"][0]["peer_id"] == c_id.as_str() || p["ended_on"] == c_id.as_str();
    eventually_within(
        Duration::from_secs(60),
        "the GPU Run is placed on c",
        || async { on_c_or_ended_there(&a.status(&g_hash).await["placement"]) },
    )
    .await;
    let on_c = c.status(&g_hash).await;
    assert_eq!(on_c["tasks"].as_array().map_or(0, Vec::len), 1, "{on_c}");
    eventually_within(
        Duration::from_secs(30),
        "b sees the GPU Run on c",
        || async { on_c_or_ended_there(&b.status(&g_hash).await["placement"]) },
    )
    .await;
    let on_b = b.status(&g_hash).await;
    assert_eq!(on_b["tasks"], json!([]), "b does not run it: {on_b}");
    assert_ne!(b_id, c_id);

    // A Run no node can fit (two GPUs) fails at once, with the reason, everywhere.
    let greedy = with_hash(app::tx::ProgramMetadata {
        resource_requirements: Some(app::tx::ResourceRequest {
            mem: 256,
            cpus: 1,
            gpus: 2,
        }),
        ..program("greedy prover", &prover_img, 256, 1)
    });
    accepted(
        &a.node.base,
        &deploy(&user, "greedy", greedy.clone(), verifier.clone()),
    )
    .await;
    let too_big = run(&user, vec![step(&greedy, &[], vec![])]);
    accepted(&a.node.base, &too_big).await;
    let big_hash = too_big.hash.to_hex();
    eventually_within(Duration::from_secs(30), "no node can fit it", || async {
        let mut all = true;
        for m in [&a, &b, &c] {
            let p = &m.status(&big_hash).await["placement"];
            all &= p["outcome"] == "unplaceable"
                && p["reason"].as_str().is_some_and(|r| r.contains("2 GPUs"));
        }
        all
    })
    .await;

    // An operator cancels, through the relay, a Run that runs on another node: it stops there,
    // and every node records it.
    let long = run(
        &user,
        vec![step(
            &prover,
            &["--sleep-ms", "120000"],
            vec![input("/workspace/in.txt", &data)],
        )],
    );
    accepted(&a.node.base, &long).await;
    let l_hash = long.hash.to_hex();
    eventually_within(RUN_WAIT, "a node runs the long Run", || async {
        for m in [&b, &c] {
            if m.status(&l_hash).await["tasks"][0]["phase"] == "running" {
                return true;
            }
        }
        false
    })
    .await;
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/transactions/{l_hash}/cancel",
            a.node.base
        ))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    eventually_within(
        Duration::from_secs(60),
        "the holder stops the cancelled Run",
        || async {
            let mut recorded = true;
            for m in [&a, &b, &c] {
                recorded &= m.status(&l_hash).await["placement"]["outcome"] == "cancelled";
            }
            let mut stopped = false;
            for m in [&b, &c] {
                stopped |= m.status(&l_hash).await["tasks"][0]["phase"] == "cancelled";
            }
            recorded && stopped
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_is_replaced_and_the_run_completes_once() {
    let Some(lab) = Lab::new().await else { return };
    let data = lab.serve("in.txt", b"a witness that outlives its node".to_vec());
    let a = lab_member(&lab, None, &[]).await;
    let b = lab_member(&lab, Some(&a), &[]).await;
    let c = lab_member(&lab, Some(&a), &[]).await;
    let members = [a, b, c];
    all_hear(&[&members[0], &members[1], &members[2]], 3).await;
    let Deployed {
        user,
        prover_img: _,
        prover,
        verifier,
    } = deployed(&lab, &members[0], "takeover").await;
    // The prover works for a while: long enough to be killed in the middle.
    let r = prove_and_verify(
        &user,
        &prover,
        &verifier,
        &["--sleep-ms", "8000"],
        vec![input("/workspace/in.txt", &data)],
    );
    accepted(&members[0].node.base, &r).await;
    let hash = r.hash.to_hex();

    // Find the holder once its VM runs.
    let holder = running_on(&[&members[0], &members[1], &members[2]], &hash).await;
    // The network page lists the open Run where it is placed.
    let watcher = &members[(holder + 1) % 3];
    let page = watcher.console("/console/network").await;
    assert!(
        page.contains("id=\"open-runs\"") && page.contains(&hash[..8]),
        "{page}"
    );
    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
    let killed = members[holder].take().expect("holder");
    let killed_id = killed.peer_id().await;
    let killed_key = killed.key.clone();
    let _dir = killed.node.kill_for_good();
    let survivors: Vec<Member> = members.into_iter().flatten().collect();
    // While the survivor works, the Run's status says whom it took the Run over from.
    eventually_within(RUN_WAIT, "a survivor says it took the Run over", || async {
        let mut seen = false;
        for m in &survivors {
            let p = &m.status(&hash).await["placement"];
            seen |=
                p["nodes"][0]["taken_over_from"] == killed_id.as_str() || p["outcome"] == "done";
        }
        seen
    })
    .await;

    eventually_within(RUN_WAIT, "a survivor completes the Run", || async {
        all_have(&[&survivors[0], &survivors[1]], &hash, 1, 1).await
    })
    .await;
    let trees: Vec<Value> =
        futures::future::join_all(survivors.iter().map(|m| m.tree(&hash))).await;
    assert_eq!(trees[0], trees[1]);
    let found = results(&survivors[0], &hash).await;
    assert_eq!(found.len(), 2, "one Proof and one Verification: {found:?}");
    assert!(found.iter().all(|(_, a)| *a != killed_key), "{found:?}");
    let taken: u64 =
        futures::future::join_all(survivors.iter().map(|m| m.placement_counter("taken_over")))
            .await
            .into_iter()
            .sum();
    assert_eq!(taken, 1, "one survivor took the Run over from {killed_id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundancy_two_yields_proofs_from_two_nodes() {
    let Some(lab) = Lab::new().await else { return };
    let data = lab.serve("in.txt", b"proven twice".to_vec());
    let twice = [("GEVULOT_PLACEMENT_REDUNDANCY", "2")];
    let a = lab_member(&lab, None, &twice).await;
    let b = lab_member(&lab, Some(&a), &twice).await;
    all_hear(&[&a, &b], 2).await;
    let Deployed {
        user,
        prover_img: _,
        prover,
        verifier,
    } = deployed(&lab, &a, "twice").await;
    let r = prove_and_verify(
        &user,
        &prover,
        &verifier,
        &[],
        vec![input("/workspace/in.txt", &data)],
    );
    accepted(&a.node.base, &r).await;
    let hash = r.hash.to_hex();
    eventually_within(RUN_WAIT, "two Proofs and two Verifications", || async {
        all_have(&[&a, &b], &hash, 2, 2).await
    })
    .await;
    let found = results(&a, &hash).await;
    let provers: BTreeSet<&str> = found
        .iter()
        .filter(|(k, _)| k == "Proof")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(provers.len(), 2, "from two different nodes: {found:?}");
    assert_eq!(provers, BTreeSet::from([a.key.as_str(), b.key.as_str()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_hands_the_next_step_to_a_peer_that_fetches_its_output() {
    let Some(lab) = Lab::new().await else { return };
    let data = lab.serve("in.txt", b"proven here, verified there".to_vec());
    let a = lab_member(&lab, None, &[]).await;
    let b = lab_member(&lab, Some(&a), &[]).await;
    all_hear(&[&a, &b], 2).await;
    let Deployed {
        user,
        prover_img: _,
        prover,
        verifier,
    } = deployed(&lab, &a, "handed on").await;
    let r = prove_and_verify(
        &user,
        &prover,
        &verifier,
        &["--sleep-ms", "3000"],
        vec![input("/workspace/in.txt", &data)],
    );
    accepted(&a.node.base, &r).await;
    let hash = r.hash.to_hex();
    let (holder, other) = match running_on(&[&a, &b], &hash).await {
        0 => (&a, &b),
        _ => (&b, &a),
    };
    // The holder drains while its prover runs: the prover finishes there, the verifier step
    // goes to the other node, which fetches the proof file from the holder.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/node/drain", holder.node.base))
        .bearer_auth(&holder.token)
        .send()
        .await
        .expect("drain");
    assert_eq!(r.status(), 200);
    eventually_within(RUN_WAIT, "the Run is proven and verified", || async {
        all_have(&[&a, &b], &hash, 1, 1).await
    })
    .await;
    let found = results(other, &hash).await;
    assert_eq!(
        found,
        vec![
            ("Proof".to_string(), holder.key.clone()),
            ("Verification".to_string(), other.key.clone()),
        ]
    );
    assert_eq!(other.placement_counter("taken_over").await, 1);
    assert_eq!(holder.placement_counter("released").await, 1);
}
