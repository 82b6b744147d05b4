//! Placement on a node of its own network: Runs stored before endings were recorded (a node
//! upgraded with history) end at once when their results are there, and the others wait, saying
//! why.

use std::time::{Duration, Instant};

use app::model::Source;
use app::node::AclPolicy;
use app::tx::{Hash, Payload, Transaction, Workflow, WorkflowStep};

use crate::p2p::{launch, network_config, store};
use crate::support::key;

fn one_step(author: u8, nonce: u64, program: Hash) -> Transaction {
    Transaction::new_signed(
        Payload::Run {
            workflow: Workflow {
                steps: vec![WorkflowStep {
                    program,
                    args: vec![],
                    inputs: vec![],
                }],
            },
        },
        nonce,
        &key(author),
    )
}

#[tokio::test]
async fn runs_from_before_endings_were_recorded_end_once_seen() {
    let (dir, store) = store(&[]).await;
    let program = Hash([3; 32]);
    let proven = one_step(5, 1, program);
    let proof = Transaction::new_signed(
        Payload::Proof {
            parent: proven.hash,
            prover: program,
            proof: b"proof".to_vec(),
            files: vec![],
        },
        2,
        &key(6),
    );
    let open = one_step(5, 3, program);
    for (tx, source) in [
        (&proven, Source::Rpc),
        (&proof, Source::P2p),
        (&open, Source::Rpc),
    ] {
        store.insert_transaction(tx, source).await.expect("insert");
    }
    // A node that never executes, alone in its network.
    let node = launch(
        dir,
        store,
        1,
        AclPolicy::Open,
        network_config("endings", &[]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ended = node.store().run_ending(&proven.hash).await.expect("read");
        let waiting = node.core.placement().and_then(|p| p.get(&open.hash));
        if let (Some(ended), Some(waiting)) = (ended, waiting) {
            assert_eq!(ended.outcome, "done");
            assert_eq!(waiting.state, "waiting");
            assert_eq!(waiting.reason.as_deref(), Some("no executing node is live"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the placement did not look at both Runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        node.core
            .placement()
            .and_then(|p| p.get(&proven.hash))
            .is_none()
    );
    assert!(
        node.store()
            .run_ending(&open.hash)
            .await
            .expect("read")
            .is_none()
    );
}
