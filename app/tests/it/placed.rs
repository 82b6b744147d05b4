//! The pipeline under placement, with the scripted executor: a node plans only the Runs it is
//! handed, skips a step another node already proved, stops its own step when another node's
//! result for it arrives first (its VM is stopped), and forgets a Run it gives up.

use app::model::{Phase, Source};
use app::pipeline::Pipeline;
use app::tx::{Hash, Payload, ProgramMetadata, Transaction};

use crate::pipeline_rules::{Act, Lab, Scripted, all_free, settings};

/// A pipeline that placement drives, with one result per step.
fn placed(lab: &Lab) -> Pipeline<Scripted> {
    let pipeline = lab.start(settings(&lab.data));
    pipeline.set_placed(1);
    pipeline
}

/// A Proof of `run`'s step running `program`, signed by another node.
fn peer_proof(lab: &Lab, run: &Hash, program: &ProgramMetadata) -> Transaction {
    let peer = app::crypto::SecretKey::from_bytes(&[77; 32]).expect("key");
    Transaction::new_signed(
        Payload::Proof {
            parent: *run,
            prover: program.hash,
            proof: b"proven elsewhere".to_vec(),
            files: vec![],
        },
        lab.nonce(),
        &peer,
    )
}

#[tokio::test]
async fn a_run_is_planned_only_when_handed_over() {
    let lab = Lab::new().await;
    let pipeline = placed(&lab);
    let p = lab.program("handed", 1024);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;
    // Stored, but placement has not handed it to this node: nothing is planned (a pause that
    // would let a wrongly planned task appear; it cannot make the test fail when all is well).
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(lab.task(&run).await.is_none());
    pipeline.take(run).await.expect("take");
    assert_eq!(lab.ended(&run).await.phase, Phase::Succeeded);
    assert_eq!(lab.proofs(&run).await, 1);
}

#[tokio::test]
async fn a_step_another_node_proved_is_not_run_again() {
    let lab = Lab::new().await;
    let pipeline = placed(&lab);
    let p = lab.program("proven", 1024);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;
    let elsewhere = peer_proof(&lab, &run, &p);
    lab.intake
        .submit(&elsewhere, Source::P2p)
        .await
        .expect("peer proof");
    // Taken over after the node that held it proved the step and went.
    pipeline.take(run).await.expect("take");
    assert_eq!(lab.ended(&run).await.phase, Phase::Succeeded);
    assert_eq!(lab.exec.attempts("proven"), 0, "not executed here");
    assert_eq!(lab.proofs(&run).await, 0, "no second Proof");
}

#[tokio::test]
async fn the_first_proof_wins_and_the_loser_stops_its_vm() {
    let lab = Lab::new().await;
    let pipeline = placed(&lab);
    let p = lab.program("raced", 1024);
    lab.exec.script("raced", &[Act::HangRunning]);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;
    pipeline.take(run).await.expect("take");
    lab.wait_for(&run, Phase::Running).await;
    // Another node, which also held the Run after a split view, proves the step first.
    let first = peer_proof(&lab, &run, &p);
    lab.intake
        .submit(&first, Source::P2p)
        .await
        .expect("peer proof");
    assert!(pipeline.peer_result(&first).await.expect("peer result"));
    let task = lab.ended(&run).await;
    assert_eq!(task.phase, Phase::Succeeded);
    let why = task.error.unwrap_or_default();
    assert!(why.contains("proven first by another node"), "{why}");
    assert!(why.contains(&first.hash.to_hex()), "{why}");
    all_free(&pipeline).await;
    assert_eq!(lab.proofs(&run).await, 0, "the loser made no Proof");
    // This node's own results never stop anything.
    assert!(!pipeline.peer_result(&first).await.expect("again"));
}

#[tokio::test]
async fn a_run_given_up_stops_and_is_forgotten_here() {
    let lab = Lab::new().await;
    let pipeline = placed(&lab);
    let p = lab.program("given up", 1024);
    lab.exec.script("given up", &[Act::HangRunning]);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;
    pipeline.take(run).await.expect("take");
    lab.wait_for(&run, Phase::Running).await;
    assert_eq!(pipeline.release(run).await.expect("release"), 1);
    all_free(&pipeline).await;
    assert!(lab.task(&run).await.is_none(), "no task left here");
    // Handed back later (the other node went): planned afresh.
    lab.exec.script("given up", &[Act::Succeed]);
    pipeline.take(run).await.expect("take again");
    assert_eq!(lab.ended(&run).await.phase, Phase::Succeeded);
    assert_eq!(lab.proofs(&run).await, 1);
}
