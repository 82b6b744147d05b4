//! The whitelist kept in step with a published list, fetched over real HTTP from a server that
//! changes its answer: keys added and removed, a failing or empty list changing nothing, and a
//! password in the URL never shown.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::acl::{SyncError, SyncStatus};
use app::crypto::PublicKey;
use app::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::key;

/// What the list server answers: a status code and a body.
type Answer = Arc<Mutex<(u16, String)>>;

/// Serves the current answer at every path; returns its base URL.
async fn list_server(answer: Answer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let (status, body) = answer.lock().expect("lock").clone();
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    base
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = testkit::tempdir();
    let store = Store::connect(&testkit::sqlite_url(dir.path()), &Default::default())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    (dir, store)
}

async fn whitelist(store: &Store) -> BTreeSet<PublicKey> {
    store.acl_list().await.expect("list").into_iter().collect()
}

fn hex(seed: u8) -> String {
    key(seed).public_key().to_hex()
}

#[tokio::test]
async fn the_whitelist_follows_the_published_list() {
    let (_dir, store) = store().await;
    let answer: Answer = Arc::new(Mutex::new((
        200,
        format!(
            "# devnet members\n{}\n\n  {}  \nnot a key\n",
            hex(1),
            hex(2)
        ),
    )));
    let url = format!("{}/acl/devnet", list_server(answer.clone()).await);
    let client = app::acl::client().expect("client");
    // A key the operator added by hand: the published list is the truth, so it goes.
    store
        .acl_add(&key(9).public_key())
        .await
        .expect("whitelist");

    let synced = app::acl::sync(&store, &client, &url).await.expect("sync");
    assert_eq!(
        (synced.added, synced.removed, synced.total, synced.bad_lines),
        (2, 1, 2, vec![5])
    );
    assert_eq!(
        whitelist(&store).await,
        BTreeSet::from([key(1).public_key(), key(2).public_key()])
    );

    // The list changes: one key stays, one goes, one comes.
    answer.lock().expect("lock").1 = format!("{}\n{}\n", hex(2), hex(3));
    let synced = app::acl::sync(&store, &client, &url).await.expect("sync");
    assert_eq!((synced.added, synced.removed), (1, 1));
    let expected = BTreeSet::from([key(2).public_key(), key(3).public_key()]);
    assert_eq!(whitelist(&store).await, expected);

    // Nothing changes on a server error or on a list without any key.
    *answer.lock().expect("lock") = (500, "oops".into());
    let e = app::acl::sync(&store, &client, &url)
        .await
        .expect_err("a 500");
    assert!(matches!(e, SyncError::Fetch { .. }), "{e}");
    assert!(e.to_string().contains("500"), "{e}");
    *answer.lock().expect("lock") = (200, "# nobody\n\n".into());
    let e = app::acl::sync(&store, &client, &url)
        .await
        .expect_err("an empty list");
    assert!(matches!(e, SyncError::Empty { .. }), "{e}");
    assert_eq!(whitelist(&store).await, expected);

    // A server that cannot be reached changes nothing, and its URL's password is not shown.
    let dead = "http://reader:list-s3cret@127.0.0.1:9/acl";
    let e = app::acl::sync(&store, &client, dead)
        .await
        .expect_err("nothing listens on port 9");
    assert!(!e.to_string().contains("list-s3cret"), "{e}");
    assert!(e.to_string().contains("***"), "{e}");
    assert_eq!(whitelist(&store).await, expected);
}

#[tokio::test]
async fn the_sync_loop_reports_each_outcome() {
    let (_dir, store) = store().await;
    let answer: Answer = Arc::new(Mutex::new((200, hex(4))));
    let url = list_server(answer.clone()).await;
    let status = SyncStatus::default();
    assert!(status.last().is_none());
    tokio::spawn(app::acl::keep_synced(
        store.clone(),
        url,
        Duration::from_millis(200),
        status.clone(),
    ));
    let start = std::time::Instant::now();
    while status.last().is_none_or(|l| l.outcome.is_err()) {
        assert!(start.elapsed() < Duration::from_secs(20), "no sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        whitelist(&store).await,
        BTreeSet::from([key(4).public_key()])
    );
    // The change is announced (the P2P network applies it at once).
    tokio::time::timeout(Duration::from_secs(5), status.changed())
        .await
        .expect("the change is announced");
    // A later failure is reported, and the whitelist stays.
    *answer.lock().expect("lock") = (503, String::new());
    while status.last().is_none_or(|l| l.outcome.is_ok()) {
        assert!(start.elapsed() < Duration::from_secs(20), "no failure seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = status.last().expect("a sync");
    assert!(
        last.outcome.as_ref().is_err_and(|e| e.contains("503")),
        "{last:?}"
    );
    assert_eq!(
        whitelist(&store).await,
        BTreeSet::from([key(4).public_key()])
    );
}
