//! The storage conformance suite: every case runs unchanged against SQLite and PostgreSQL.

use app::model::{NewTask, Phase, ProgramRole, Source, TaskKind, TxFilter};
use app::node::{AclPolicy, Intake, SubmitError};
use app::store::{Inserted, Store};
use app::tx::rpc::{RpcTransaction, TransactionTree};
use app::tx::{Hash, Kind, Payload, Transaction};
use app::validate::{Limits, ValidationError};

use crate::support::*;

/// A database for one test and what keeps it alive.
pub(crate) struct Db {
    pub(crate) store: Store,
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn put(&self, tx: &Transaction, source: Source) {
        self.store
            .insert_transaction(tx, source)
            .await
            .expect("insert");
    }

    async fn tree(&self, hash: &Hash) -> TransactionTree {
        self.store
            .transaction_tree(hash)
            .await
            .expect("tree query")
            .expect("a tree")
    }
}

pub(crate) async fn sqlite() -> Db {
    let dir = testkit::tempdir();
    let url = testkit::sqlite_url(dir.path());
    let store = Store::connect(&url, &Default::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    Db {
        store,
        url,
        _dir: Some(dir),
    }
}

pub(crate) async fn postgres() -> Db {
    let url = testkit::postgres_url()
        .await
        .expect("a PostgreSQL database for the test");
    let store = Store::connect(&url, &Default::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    Db {
        store,
        url,
        _dir: None,
    }
}

/// Generates one test per backend for each case (`super::sqlite` and `super::postgres` must be in
/// scope where it is used).
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[tokio::test] async fn $case() { super::$case(super::sqlite().await).await } )*
        }
        mod on_postgres {
            $( #[tokio::test] async fn $case() { super::$case(super::postgres().await).await } )*
        }
    };
}
pub(crate) use conformance;

conformance!(
    fixtures_round_trip_exactly,
    replay_is_idempotent,
    deploy_registers_programs,
    tree_at_every_stage,
    keyset_pagination_and_filters,
    acl_whitelist,
    task_lifecycle,
    stopped_attempts_do_not_count,
    runs_to_plan,
    intake_rules,
    durable_across_reconnect,
    batch_insert,
    gpu_assignments,
    sessions_expire,
    results_and_cancels_of_a_run,
    catch_up_pages_and_cursors,
);

async fn fixtures_round_trip_exactly(db: Db) {
    for name in transaction_vector_names() {
        let tx = vector_tx(&name);
        let inserted = db
            .store
            .insert_transaction(&tx, Source::Rpc)
            .await
            .expect("insert");
        assert!(matches!(inserted, Inserted::New(_)), "{name}");
        let stored = db
            .store
            .get_transaction(&tx.hash)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(stored.tx, tx, "{name}: read back exactly");
        assert_eq!(stored.tx.compute_hash(), tx.hash, "{name}: re-hashes");
        assert_eq!(stored.source, Source::Rpc);
        // The full payload comes back, unlike the original (which lost Transfer/Stake/Unstake/Cancel).
        let v = testkit::vector(&name);
        let out = RpcTransaction::from_transaction(&stored.tx, "http://127.0.0.1:9995");
        assert_eq!(
            serde_json::to_string(&out).expect("json"),
            v["rpc_output_json"].as_str().expect("output"),
            "{name}: output form after storage"
        );
    }
    assert_eq!(
        db.store.count_transactions().await.expect("count"),
        transaction_vector_names().len() as i64
    );
    assert_eq!(
        db.store.get_transaction(&Hash([1; 32])).await.expect("get"),
        None
    );
}

async fn replay_is_idempotent(db: Db) {
    let k = key(1);
    let d = deploy(&k, "p", "v", 0);
    let r = run(&k, &[program("p").hash, program("v").hash], 1);
    for tx in [&d, &r] {
        db.put(tx, Source::Rpc).await;
    }
    let before = db
        .store
        .get_transaction(&r.hash)
        .await
        .expect("get")
        .expect("found");
    let task = db
        .store
        .create_task(&NewTask {
            tx: r.hash,
            step_index: 0,
            program: program("p").hash,
            kind: TaskKind::Proof,
        })
        .await
        .expect("task");
    assert!(
        db.store
            .set_task_phase(task.id, Phase::Running, None)
            .await
            .expect("phase")
    );
    // The same transaction again, from another source: acknowledged, nothing changes.
    let again = db
        .store
        .insert_transaction(&r, Source::P2p)
        .await
        .expect("insert");
    assert_eq!(again, Inserted::AlreadyPresent);
    let after = db
        .store
        .get_transaction(&r.hash)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(after, before, "seq, source and time are unchanged");
    let tasks = db.store.tasks_for_tx(&r.hash).await.expect("tasks");
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0].phase,
        Phase::Running,
        "execution state is not reset"
    );
    assert_eq!(db.store.count_transactions().await.expect("count"), 2);
}

async fn deploy_registers_programs(db: Db) {
    let k = key(2);
    let d = deploy(&k, "prover", "verifier", 0);
    db.put(&d, Source::Rest).await;
    let p = db
        .store
        .get_program(&program("prover").hash)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(p.name, "prover");
    assert_eq!(p.role, ProgramRole::Prover);
    assert_eq!(p.deploy_tx, d.hash);
    assert_eq!(p.image_file_checksum, program("prover").image_file_checksum);
    assert_eq!(
        p.resource_requirements,
        program("prover").resource_requirements
    );
    // A program deployed without requirements reads back as None (the default applies).
    let fixture = vector_tx("deploy");
    db.put(&fixture, Source::Rpc).await;
    let app::tx::Payload::Deploy { verifier, .. } = &fixture.payload else {
        panic!("deploy")
    };
    let v = db
        .store
        .get_program(&verifier.hash)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(v.resource_requirements, None);
    let all = db.store.list_programs(100).await.expect("list");
    assert_eq!(all.len(), 4);
    let names: Vec<_> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["prover", "prover", "verifier", "verifier"]);
    // Runs using a program, newest first.
    let r1 = run(&k, &[program("prover").hash, program("verifier").hash], 1);
    let r2 = run(&k, &[program("prover").hash], 2);
    for r in [&r1, &r2] {
        db.put(r, Source::Rpc).await;
    }
    let runs = db
        .store
        .runs_using_program(&program("prover").hash, 10)
        .await
        .expect("runs");
    assert_eq!(runs, vec![r2.hash, r1.hash]);
    let runs = db
        .store
        .runs_using_program(&program("verifier").hash, 10)
        .await
        .expect("runs");
    assert_eq!(runs, vec![r1.hash]);
}

async fn tree_at_every_stage(db: Db) {
    let run_tx = vector_tx("run");
    let proof_tx = vector_tx("proof");
    let verification_tx = vector_tx("verification");
    let deploy_tx = vector_tx("deploy");
    db.put(&deploy_tx, Source::Rpc).await;
    db.put(&run_tx, Source::Rpc).await;
    // A Run with no proof yet is a root without children.
    let tree = db.tree(&run_tx.hash).await;
    assert_eq!(
        tree,
        TransactionTree::Root {
            children: vec![],
            hash: run_tx.hash
        }
    );
    db.put(&proof_tx, Source::Node).await;
    let tree = db.tree(&proof_tx.hash).await;
    assert_eq!(
        tree,
        TransactionTree::Root {
            children: vec![TransactionTree::Leaf {
                hash: proof_tx.hash
            }],
            hash: run_tx.hash
        }
    );
    db.put(&verification_tx, Source::Node).await;
    let expected = testkit::vector("tx_tree_run_proof_verification")["result_json"]
        .as_str()
        .expect("json")
        .to_string();
    for h in [run_tx.hash, proof_tx.hash, verification_tx.hash] {
        let tree = db.tree(&h).await;
        assert_eq!(
            serde_json::to_string(&tree).expect("json"),
            expected,
            "queried by {h}"
        );
    }
    // Not part of a tree, or unknown.
    assert_eq!(
        db.store
            .transaction_tree(&deploy_tx.hash)
            .await
            .expect("tree"),
        None
    );
    assert_eq!(
        db.store
            .transaction_tree(&Hash([3; 32]))
            .await
            .expect("tree"),
        None
    );
}

async fn keyset_pagination_and_filters(db: Db) {
    let a = key(3);
    let b = key(4);
    let mut all = Vec::new();
    for n in 0..25u64 {
        let tx = empty(if n % 5 == 0 { &b } else { &a }, n);
        db.put(&tx, Source::Rpc).await;
        all.push(tx.hash);
    }
    db.store
        .insert_transaction(&deploy(&a, "x", "y", 99), Source::Rpc)
        .await
        .expect("insert");
    // Newest first, pages of 10 without overlap.
    let mut seen = Vec::new();
    let mut before = None;
    let filter = TxFilter {
        kind: Some(Kind::Empty),
        ..Default::default()
    };
    loop {
        let page = db
            .store
            .list_transactions(&filter, before, 10)
            .await
            .expect("list");
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().map(|t| t.tx.hash));
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    all.reverse();
    assert_eq!(seen, all);
    let by_author = TxFilter {
        author: Some(b.public_key().to_hex()),
        ..Default::default()
    };
    let page = db
        .store
        .list_transactions(&by_author, None, 100)
        .await
        .expect("list");
    assert_eq!(page.items.len(), 5);
    assert!(page.next.is_none());
    let deploys = TxFilter {
        kind: Some(Kind::Deploy),
        ..Default::default()
    };
    assert_eq!(
        db.store
            .list_transactions(&deploys, None, 100)
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    let target = all[7];
    let prefix = TxFilter {
        hash_prefix: Some(target.to_hex()[..6].to_uppercase()),
        ..Default::default()
    };
    let page = db
        .store
        .list_transactions(&prefix, None, 100)
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|t| t.tx.hash).collect::<Vec<_>>(),
        vec![target]
    );
    let failed = TxFilter {
        phase: Some(Phase::Failed),
        ..Default::default()
    };
    assert!(
        db.store
            .list_transactions(&failed, None, 100)
            .await
            .expect("list")
            .items
            .is_empty()
    );
    let future = TxFilter {
        since_ms: Some(app::store::now_ms() + 60_000),
        ..Default::default()
    };
    assert!(
        db.store
            .list_transactions(&future, None, 100)
            .await
            .expect("list")
            .items
            .is_empty()
    );
    let past = TxFilter {
        until_ms: Some(app::store::now_ms() + 60_000),
        ..Default::default()
    };
    assert_eq!(
        db.store
            .list_transactions(&past, None, 1000)
            .await
            .expect("list")
            .items
            .len(),
        26
    );
}

async fn catch_up_pages_and_cursors(db: Db) {
    assert_eq!(db.store.head_seq().await.expect("head"), 0);
    assert!(
        db.store
            .transactions_after(0, 10)
            .await
            .expect("page")
            .is_empty()
    );
    let txs: Vec<Transaction> = (0..5).map(|n| empty(&key(8), n)).collect();
    for tx in &txs {
        db.put(tx, Source::Rpc).await;
    }
    // A replay takes no sequence number a reader could see (PostgreSQL may skip one).
    db.put(&txs[0], Source::P2p).await;
    let head = db.store.head_seq().await.expect("head");
    let all = db.store.transactions_after(0, 10).await.expect("page");
    assert_eq!(
        all.iter().map(|s| s.tx.hash).collect::<Vec<_>>(),
        txs.iter().map(|t| t.hash).collect::<Vec<_>>(),
        "oldest first"
    );
    assert_eq!(all.last().map(|s| s.seq), Some(head));
    let page = db
        .store
        .transactions_after(all[1].seq, 2)
        .await
        .expect("page");
    assert_eq!(
        page.iter().map(|s| s.seq).collect::<Vec<_>>(),
        [all[2].seq, all[3].seq]
    );
    assert!(
        db.store
            .transactions_after(head, 10)
            .await
            .expect("page")
            .is_empty()
    );

    assert_eq!(db.store.peer_cursor("peer-a").await.expect("cursor"), None);
    db.store
        .advance_peer_cursor("peer-a", 3, 9, 3)
        .await
        .expect("advance");
    db.store
        .advance_peer_cursor("peer-a", 5, 9, 2)
        .await
        .expect("advance");
    db.store
        .advance_peer_cursor("peer-b", 1, 1, 1)
        .await
        .expect("advance");
    let a = db
        .store
        .peer_cursor("peer-a")
        .await
        .expect("cursor")
        .expect("kept");
    assert_eq!((a.cursor, a.head, a.pulled), (5, 9, 5), "pulled adds up");
    assert!(a.synced_at_ms > 0);
    let b = db
        .store
        .peer_cursor("peer-b")
        .await
        .expect("cursor")
        .expect("kept");
    assert_eq!((b.cursor, b.head, b.pulled), (1, 1, 1));
}

async fn acl_whitelist(db: Db) {
    let k = key(5).public_key();
    assert!(!db.store.acl_contains(&k).await.expect("contains"));
    assert!(db.store.acl_add(&k).await.expect("add"));
    assert!(
        !db.store.acl_add(&k).await.expect("add again"),
        "adding twice is a no-op"
    );
    assert!(db.store.acl_contains(&k).await.expect("contains"));
    assert_eq!(db.store.acl_list().await.expect("list"), vec![k]);
    assert_eq!(db.store.acl_count().await.expect("count"), 1);
    assert!(db.store.acl_remove(&k).await.expect("remove"));
    assert!(!db.store.acl_remove(&k).await.expect("remove again"));
    assert!(db.store.acl_list().await.expect("list").is_empty());
    assert_eq!(db.store.acl_count().await.expect("count"), 0);
}

async fn task_lifecycle(db: Db) {
    let k = key(6);
    let r = run(&k, &[program("p").hash], 0);
    db.put(&r, Source::Rpc).await;
    let new = NewTask {
        tx: r.hash,
        step_index: 0,
        program: program("p").hash,
        kind: TaskKind::Proof,
    };
    let t = db.store.create_task(&new).await.expect("create");
    assert_eq!(
        (t.phase, t.attempt, t.started_at_ms, t.finished_at_ms),
        (Phase::Queued, 0, None, None)
    );
    assert_eq!(
        db.store.create_task(&new).await.expect("again").id,
        t.id,
        "idempotent"
    );
    for phase in [Phase::Downloading, Phase::Booting, Phase::Running] {
        assert!(
            db.store
                .set_task_phase(t.id, phase, None)
                .await
                .expect("phase")
        );
    }
    // A crash and a retry: a second boot counts a second attempt.
    assert!(
        db.store
            .set_task_phase(t.id, Phase::Booting, None)
            .await
            .expect("phase")
    );
    assert!(
        db.store
            .set_task_phase(t.id, Phase::Running, None)
            .await
            .expect("phase")
    );
    let running = db
        .store
        .tasks_in_phase(Phase::Running, 10)
        .await
        .expect("list");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].attempt, 2);
    assert!(running[0].started_at_ms.is_some());
    assert!(
        db.store
            .set_task_phase(t.id, Phase::Failed, Some("guest panicked"))
            .await
            .expect("phase")
    );
    // Terminal phases are final.
    assert!(
        !db.store
            .set_task_phase(t.id, Phase::Running, None)
            .await
            .expect("phase")
    );
    let done = db.store.tasks_for_tx(&r.hash).await.expect("tasks");
    assert_eq!(done[0].phase, Phase::Failed);
    assert_eq!(done[0].error.as_deref(), Some("guest panicked"));
    // The timeline has every change that happened, in order, and nothing that was refused.
    let timeline = db.store.task_timelines(&r.hash).await.expect("timeline");
    let phases: Vec<Phase> = timeline.iter().map(|c| c.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::Queued,
            Phase::Downloading,
            Phase::Booting,
            Phase::Running,
            Phase::Booting,
            Phase::Running,
            Phase::Failed
        ]
    );
    assert!(timeline.iter().all(|c| c.task_id == t.id));
    assert_eq!(timeline[6].note.as_deref(), Some("guest panicked"));
    assert!(timeline.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(done[0].finished_at_ms.is_some());
    assert!(
        db.store
            .tasks_in_phase(Phase::Running, 10)
            .await
            .expect("list")
            .is_empty()
    );
    let failed = TxFilter {
        phase: Some(Phase::Failed),
        ..Default::default()
    };
    let page = db
        .store
        .list_transactions(&failed, None, 10)
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|t| t.tx.hash).collect::<Vec<_>>(),
        vec![r.hash]
    );
    // A Run's steps are created together; a step that exists is kept, not duplicated.
    let second = NewTask {
        step_index: 1,
        ..new.clone()
    };
    let both = db
        .store
        .create_tasks(&[new.clone(), second])
        .await
        .expect("create both");
    assert_eq!(
        both.iter().map(|t| t.step_index).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(both[0].id, t.id, "the existing step is kept");
    assert_eq!(
        db.store.tasks_for_tx(&r.hash).await.expect("tasks").len(),
        2
    );
    let queued: Vec<i64> = db
        .store
        .task_timelines(&r.hash)
        .await
        .expect("timelines")
        .iter()
        .filter(|c| c.phase == Phase::Queued)
        .map(|c| c.task_id)
        .collect();
    assert_eq!(queued, [t.id, both[1].id], "one first phase for each task");
}

/// The Runs a starting pipeline picks up: this node's own, without tasks or unfinished; never
/// one a peer relayed (the node its client chose runs it).
/// An orderly stop puts the tasks that were on a VM back to `queued` without counting that
/// attempt; tasks elsewhere and finished ones are left as they are.
async fn stopped_attempts_do_not_count(db: Db) {
    let k = key(7);
    let r = run(
        &k,
        &[program("p").hash, program("q").hash, program("s").hash],
        0,
    );
    db.put(&r, Source::Rpc).await;
    let mut ids = Vec::new();
    for (step_index, walk) in [
        &[Phase::Booting, Phase::Running][..],
        &[Phase::WaitingForResources][..],
        &[Phase::Booting, Phase::Running, Phase::Succeeded][..],
    ]
    .into_iter()
    .enumerate()
    {
        let t = db
            .store
            .create_task(&NewTask {
                tx: r.hash,
                step_index: step_index as i64,
                program: program("p").hash,
                kind: TaskKind::Proof,
            })
            .await
            .expect("create");
        for phase in walk {
            assert!(
                db.store
                    .set_task_phase(t.id, *phase, None)
                    .await
                    .expect("phase")
            );
        }
        ids.push(t.id);
    }
    let note = "the node stopped during this attempt";
    assert_eq!(
        db.store.requeue_stopped(&ids, note).await.expect("requeue"),
        1
    );
    let tasks = db.store.tasks_for_tx(&r.hash).await.expect("tasks");
    let seen: Vec<(Phase, i64)> = tasks.iter().map(|t| (t.phase, t.attempt)).collect();
    assert_eq!(
        seen,
        [
            (Phase::Queued, 0),
            (Phase::WaitingForResources, 0),
            (Phase::Succeeded, 1)
        ]
    );
    assert_eq!(tasks[0].error.as_deref(), Some(note));
    let timeline = db.store.task_timelines(&r.hash).await.expect("timeline");
    let last = timeline
        .iter()
        .rfind(|c| c.task_id == ids[0])
        .expect("changes");
    assert_eq!(
        (last.phase, last.note.as_deref()),
        (Phase::Queued, Some(note))
    );
    // Booting again counts the same attempt number once more.
    assert!(
        db.store
            .set_task_phase(ids[0], Phase::Booting, None)
            .await
            .expect("phase")
    );
    let again = db.store.tasks_for_tx(&r.hash).await.expect("tasks");
    assert_eq!(again[0].attempt, 1);
}

async fn runs_to_plan(db: Db) {
    let k = key(6);
    let p = program("p").hash;
    let (fresh, relayed, open, done) = (
        run(&k, &[p], 1),
        run(&k, &[p], 2),
        run(&k, &[p], 3),
        run(&k, &[p], 4),
    );
    db.put(&fresh, Source::Rpc).await;
    db.put(&relayed, Source::P2p).await;
    db.put(&open, Source::Rest).await;
    db.put(&done, Source::Console).await;
    for (r, phase) in [(&open, Phase::Running), (&done, Phase::Succeeded)] {
        let t = db
            .store
            .create_task(&NewTask {
                tx: r.hash,
                step_index: 0,
                program: p,
                kind: TaskKind::Proof,
            })
            .await
            .expect("create");
        assert!(
            db.store
                .set_task_phase(t.id, phase, None)
                .await
                .expect("phase")
        );
    }
    assert_eq!(
        db.store.runs_to_plan().await.expect("runs"),
        vec![fresh.hash, open.hash]
    );
}

async fn intake_rules(db: Db) {
    let intake = Intake::new(db.store.clone(), Limits::default(), AclPolicy::Open);
    let k = key(7);
    let d = deploy(&k, "p", "v", 0);
    let first = intake.submit(&d, Source::Rpc).await.expect("accepted");
    assert!(first.new);
    let again = intake
        .submit(&d, Source::Rpc)
        .await
        .expect("accepted again");
    assert!(!again.new);
    // Bad input is refused and changes nothing.
    let mut forged = empty(&k, 1);
    forged.nonce = 2;
    let err = intake
        .submit(&forged, Source::Rpc)
        .await
        .expect_err("refused");
    assert!(matches!(
        err,
        SubmitError::Invalid(ValidationError::HashMismatch { .. })
    ));
    // A Proof must name a Run as its parent, a Verification a Proof.
    let bad_proof = proof(&k, d.hash, program("p").hash, 3);
    match intake.submit(&bad_proof, Source::Rpc).await {
        Err(SubmitError::Invalid(e @ ValidationError::ParentWrongKind { .. })) => {
            assert_eq!(e.code(), "parent_wrong_kind");
            assert!(e.to_string().contains("must name a Run"), "{e}");
        }
        other => panic!("expected parent_wrong_kind, got {other:?}"),
    }
    let r = run(&k, &[program("p").hash, program("v").hash], 4);
    intake.submit(&r, Source::Rpc).await.expect("run");
    let bad_verification = verification(&k, r.hash, program("v").hash, 5);
    assert!(intake.submit(&bad_verification, Source::Rpc).await.is_err());
    let good_proof = proof(&k, r.hash, program("p").hash, 6);
    intake
        .submit(&good_proof, Source::Node)
        .await
        .expect("proof");
    intake
        .submit(
            &verification(&k, good_proof.hash, program("v").hash, 7),
            Source::Node,
        )
        .await
        .expect("verification");
    assert_eq!(db.store.count_transactions().await.expect("count"), 4);

    // With a whitelist, unknown authors are refused until whitelisted.
    let strict = Intake::new(db.store.clone(), Limits::default(), AclPolicy::Whitelist);
    let other = key(8);
    let tx = empty(&other, 0);
    match strict.submit(&tx, Source::Rpc).await {
        Err(SubmitError::Invalid(e)) => assert_eq!(e.code(), "author_not_whitelisted"),
        other => panic!("expected author_not_whitelisted, got {other:?}"),
    }
    db.store
        .acl_add(&other.public_key())
        .await
        .expect("whitelist");
    assert!(strict.submit(&tx, Source::Rpc).await.expect("accepted").new);
}

async fn durable_across_reconnect(db: Db) {
    let k = key(9);
    let txs: Vec<Transaction> = (0..5).map(|n| empty(&k, n)).collect();
    for tx in &txs {
        db.put(tx, Source::Rpc).await;
    }
    db.store.close().await;
    let reopened = Store::connect(&db.url, &Default::default())
        .await
        .expect("reconnect");
    reopened.migrate().await.expect("migrate is idempotent");
    for tx in &txs {
        let stored = reopened
            .get_transaction(&tx.hash)
            .await
            .expect("get")
            .expect("still there");
        assert_eq!(&stored.tx, tx);
    }
}

async fn batch_insert(db: Db) {
    let k = key(10);
    let txs: Vec<Transaction> = (0..50).map(|n| empty(&k, n)).collect();
    let out = db
        .store
        .insert_transactions(&txs, Source::Rpc)
        .await
        .expect("batch");
    assert!(out.iter().all(|o| matches!(o, Inserted::New(_))));
    // Sequence numbers follow the batch's order.
    let seqs: Vec<i64> = out
        .iter()
        .filter_map(|o| match o {
            Inserted::New(seq) => Some(*seq),
            Inserted::AlreadyPresent => None,
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let again = db
        .store
        .insert_transactions(&txs[..10], Source::Rpc)
        .await
        .expect("batch");
    assert!(again.iter().all(|o| *o == Inserted::AlreadyPresent));
    assert_eq!(db.store.count_transactions().await.expect("count"), 50);
    // A transaction repeated within one batch is stored once; derived rows are written once.
    let d = deploy(&k, "bp", "bv", 100);
    let r = run(&k, &[program("bp").hash, program("bv").hash], 101);
    let out = db
        .store
        .insert_transactions(&[d.clone(), r.clone(), d.clone(), r.clone()], Source::Rpc)
        .await
        .expect("batch with repeats");
    assert!(matches!(out[0], Inserted::New(_)) && matches!(out[1], Inserted::New(_)));
    assert_eq!(
        out[2..],
        [Inserted::AlreadyPresent, Inserted::AlreadyPresent]
    );
    assert_eq!(
        db.store
            .runs_using_program(&program("bp").hash, 10)
            .await
            .expect("runs"),
        vec![r.hash]
    );
    assert_eq!(
        db.store
            .get_transaction(&r.hash)
            .await
            .expect("get")
            .expect("found")
            .tx,
        r
    );
    // Big batches: several statements on SQLite, arrays as long as the batch on PostgreSQL.
    let many: Vec<Transaction> = (1000..1450).map(|n| empty(&k, n)).collect();
    db.store
        .insert_transactions(&many, Source::P2p)
        .await
        .expect("big batch");
    assert_eq!(db.store.count_transactions().await.expect("count"), 502);
    // A batch with more values than one statement could bind one by one (66,198: 22 Runs of
    // 1,000 steps each): statement by statement on SQLite, in one database transaction.
    let steps = vec![program("bp").hash; 1000];
    let long: Vec<Transaction> = (2000..2022).map(|n| run(&k, &steps, n)).collect();
    let out = db
        .store
        .insert_transactions(&long, Source::Rpc)
        .await
        .expect("a batch beyond one statement's binds");
    assert!(out.iter().all(|o| matches!(o, Inserted::New(_))));
    assert_eq!(db.store.count_transactions().await.expect("count"), 524);
    let using = db
        .store
        .runs_using_program(&program("bp").hash, 100)
        .await
        .expect("runs");
    assert_eq!(
        using.len(),
        23,
        "each Run once, whatever its steps: {using:?}"
    );
}

async fn gpu_assignments(db: Db) {
    assert!(db.store.gpu_assignments().await.expect("list").is_empty());
    db.store
        .set_gpu_assignment(
            "0000:01:00.0",
            app::gpu::PoolDecision::Assigned,
            None,
            "alice",
        )
        .await
        .expect("assign");
    db.store
        .set_gpu_assignment(
            "0000:01:00.0",
            app::gpu::PoolDecision::Maintenance,
            Some("fan"),
            "bob",
        )
        .await
        .expect("replace");
    let all = db.store.gpu_assignments().await.expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(
        (
            all[0].state.as_str(),
            all[0].reason.as_deref(),
            all[0].updated_by.as_str()
        ),
        ("maintenance", Some("fan"), "bob")
    );
}

async fn sessions_expire(db: Db) {
    let user = db
        .store
        .create_user("sam", "$argon2id$placeholder", "viewer")
        .await
        .expect("create")
        .expect("new");
    db.store
        .insert_session("live", user.id, "csrf", app::store::now_ms() + 60_000)
        .await
        .expect("live session");
    db.store
        .insert_session("old", user.id, "csrf", app::store::now_ms() - 1)
        .await
        .expect("expired session");
    assert!(
        db.store.session("old").await.expect("query").is_none(),
        "expired sessions are refused"
    );
    assert_eq!(db.store.delete_expired_sessions().await.expect("purge"), 1);
    assert!(db.store.session("live").await.expect("query").is_some());
    assert!(
        db.store
            .create_user("sam", "x", "viewer")
            .await
            .expect("query")
            .is_none(),
        "names are unique"
    );
}

async fn results_and_cancels_of_a_run(db: Db) {
    let (client, node, other) = (key(1), key(2), key(3));
    let deploy = deploy(&client, "p", "v", 1);
    let Payload::Deploy {
        prover, verifier, ..
    } = &deploy.payload
    else {
        unreachable!("a Deploy")
    };
    let run = run(&client, &[prover.hash, verifier.hash], 2);
    for tx in [&deploy, &run] {
        db.put(tx, Source::Rpc).await;
    }
    let node_key = node.public_key();
    let results = |db: &Db| {
        let store = db.store.clone();
        async move {
            store
                .results_of_run(&run.hash, Some(&node_key))
                .await
                .expect("results")
                .into_iter()
                .map(|s| s.tx.hash)
                .collect::<Vec<_>>()
        }
    };
    assert!(results(&db).await.is_empty());
    // Only the node's own Proofs of this Run and its own Verifications of them count.
    let foreign = proof(&other, run.hash, prover.hash, 3);
    let own = proof(&node, run.hash, prover.hash, 4);
    db.put(&foreign, Source::P2p).await;
    db.put(&own, Source::Node).await;
    let foreign_check = verification(&other, own.hash, verifier.hash, 5);
    let own_check = verification(&node, own.hash, verifier.hash, 6);
    db.put(&foreign_check, Source::P2p).await;
    db.put(&own_check, Source::Node).await;
    assert_eq!(results(&db).await, vec![own.hash, own_check.hash]);

    // The first Cancel by one of the named authors; others are ignored.
    let authors = [client.public_key(), node.public_key()];
    let cancel = |k: &app::crypto::SecretKey, nonce| {
        Transaction::new_signed(Payload::Cancel { parent: run.hash }, nonce, k)
    };
    assert_eq!(
        db.store
            .cancel_of(&run.hash, &authors)
            .await
            .expect("cancel"),
        None
    );
    db.put(&cancel(&other, 7), Source::P2p).await;
    assert_eq!(
        db.store
            .cancel_of(&run.hash, &authors)
            .await
            .expect("cancel"),
        None
    );
    let by_client = cancel(&client, 8);
    db.put(&by_client, Source::Rpc).await;
    db.put(&cancel(&node, 9), Source::Node).await;
    assert_eq!(
        db.store
            .cancel_of(&run.hash, &authors)
            .await
            .expect("cancel"),
        Some(by_client.hash)
    );
    assert_eq!(
        db.store.cancel_of(&run.hash, &[]).await.expect("cancel"),
        None
    );
}

/// A SQLite database, its WAL and its shared memory are readable by the node's user alone (the
/// data directory around them is searchable by the VM user); an existing database that others
/// could read is made so when the node opens it.
#[tokio::test]
async fn sqlite_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = testkit::tempdir();
    let url = testkit::sqlite_url(dir.path());
    let db_file = dir.path().join("gevulot.db");
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .expect("file")
            .permissions()
            .mode()
            & 0o777
    };
    let store = Store::connect(&url, &Default::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
        .insert_transaction(&empty(&key(31), 1), Source::Rpc)
        .await
        .expect("insert");
    for name in ["gevulot.db", "gevulot.db-wal", "gevulot.db-shm"] {
        assert_eq!(mode(name), 0o600, "{name}");
    }
    store.close().await;

    std::fs::set_permissions(&db_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store = Store::connect(&url, &Default::default())
        .await
        .expect("reopen");
    assert_eq!(mode("gevulot.db"), 0o600);
    assert_eq!(store.count_transactions().await.expect("count"), 1);
    store.close().await;
}
