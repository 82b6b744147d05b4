//! The guest protocol end to end over a Unix socket (as the hybrid vsock delivers it): a client
//! built like a program's SDK gets its task and submits its result; each VM sees only its own task.

use std::sync::{Arc, Mutex};

use app::vm::guest_server::{GuestHandler, hybrid_listener_path, serve_hybrid};
use guest::proto::{
    Client, File, Task, TaskError, TaskResult, TaskResultRequest, task_result_request,
};

#[derive(Default)]
struct Node {
    results: Mutex<Vec<(String, TaskResultRequest)>>,
}

impl GuestHandler for Node {
    async fn get_task(&self, vm: &str) -> Option<Task> {
        (vm == "vm-with-task").then(|| Task {
            tx_hash: "ab".repeat(32),
            name: "prover".into(),
            args: vec!["--nonce".into(), "1".into()],
            files: vec!["/workspace/in.txt".into()],
        })
    }

    async fn submit_result(
        &self,
        vm: &str,
        result: TaskResultRequest,
    ) -> Result<bool, tonic::Status> {
        if result.tx_hash != "ab".repeat(32) {
            return Err(tonic::Status::permission_denied("not this VM's task"));
        }
        self.results
            .lock()
            .expect("lock")
            .push((vm.to_string(), result));
        Ok(false)
    }
}

async fn client(path: std::path::PathBuf) -> Client {
    let channel = tonic::transport::Endpoint::from_static("http://vm.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect");
    Client::new(channel)
}

#[tokio::test]
async fn get_task_and_submit_result() {
    let dir = testkit::tempdir();
    let node = Arc::new(Node::default());
    let mut clients = Vec::new();
    for vm in ["vm-with-task", "vm-without-task"] {
        let uds = dir.path().join(format!("{vm}.vsock"));
        let path = hybrid_listener_path(&uds, guest::proto::DEFAULT_PORT);
        assert!(path.display().to_string().ends_with(".vsock_8080"));
        let listener = tokio::net::UnixListener::bind(&path).expect("listen");
        tokio::spawn(serve_hybrid(listener, vm.to_string(), node.clone()));
        clients.push(client(path).await);
    }
    let task = clients[0]
        .get_task()
        .await
        .expect("get task")
        .expect("a task");
    assert_eq!(task.args, ["--nonce", "1"]);
    assert_eq!(
        clients[1].get_task().await.expect("get task"),
        None,
        "Unavailable"
    );

    let result = TaskResultRequest {
        tx_hash: task.tx_hash.clone(),
        result: Some(task_result_request::Result::Task(TaskResult {
            data: b"proof".to_vec(),
            files: vec![File {
                path: "/workspace/proof.dat".into(),
                checksum: blake3::hash(b"x").as_bytes().to_vec(),
            }],
        })),
    };
    assert!(
        !clients[0].submit_result(result).await.expect("submit"),
        "no more work"
    );
    let denied = clients[1]
        .submit_result(TaskResultRequest {
            tx_hash: "cd".repeat(32),
            result: Some(task_result_request::Result::Error(TaskError::Failed as i32)),
        })
        .await
        .expect_err("refused");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let results = node.results.lock().expect("lock");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "vm-with-task");
}

/// A handler that takes results up to its own message bound.
struct Bounded(usize);

impl GuestHandler for Bounded {
    fn max_message_bytes(&self) -> usize {
        self.0
    }

    async fn get_task(&self, _vm: &str) -> Option<Task> {
        None
    }

    async fn submit_result(
        &self,
        _vm: &str,
        _result: TaskResultRequest,
    ) -> Result<bool, tonic::Status> {
        Ok(false)
    }
}

fn result_of(data_bytes: usize) -> TaskResultRequest {
    TaskResultRequest {
        tx_hash: "ab".repeat(32),
        result: Some(task_result_request::Result::Task(TaskResult {
            data: vec![7; data_bytes],
            files: Vec::new(),
        })),
    }
}

/// A result carries its proof inline: the handler's bound, not tonic's 4 MiB default, decides
/// which results fit, and one that does not is refused without ending the connection.
#[tokio::test]
async fn a_result_is_bounded_by_the_handlers_message_size() {
    let dir = testkit::tempdir();
    let path = hybrid_listener_path(&dir.path().join("vm.vsock"), guest::proto::DEFAULT_PORT);
    let listener = tokio::net::UnixListener::bind(&path).expect("listen");
    let bound = app::vm::executor::guest_message_bytes(6 << 20);
    tokio::spawn(serve_hybrid(
        listener,
        "vm".into(),
        Arc::new(Bounded(bound)),
    ));
    let mut guest = client(path).await;
    guest
        .submit_result(result_of(6 << 20))
        .await
        .expect("a 6 MiB proof is within the bound");
    let refused = guest
        .submit_result(result_of(bound + 1))
        .await
        .expect_err("over the bound");
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    guest
        .submit_result(result_of(16))
        .await
        .expect("the connection still serves");
}

/// A handler that checks what it is given as the node does: the hash must be this VM's task.
struct Strict;

impl GuestHandler for Strict {
    async fn get_task(&self, _vm: &str) -> Option<Task> {
        Some(Task {
            tx_hash: "ab".repeat(32),
            name: "prover".into(),
            args: Vec::new(),
            files: Vec::new(),
        })
    }

    async fn submit_result(
        &self,
        _vm: &str,
        result: TaskResultRequest,
    ) -> Result<bool, tonic::Status> {
        if result.tx_hash != "ab".repeat(32) {
            return Err(tonic::Status::permission_denied("not this VM's task"));
        }
        Ok(false)
    }
}

/// What a hostile guest can put on the wire: raw bytes, bytes after the HTTP/2 preface, or
/// protocol messages with any values.
#[derive(Debug, Clone)]
enum Attack {
    Raw(Vec<u8>),
    AfterPreface(Vec<u8>),
    Message {
        tx_hash: String,
        data: Vec<u8>,
        files: Vec<(String, Vec<u8>)>,
        error: Option<i32>,
    },
}

fn attack() -> impl proptest::strategy::Strategy<Value = Attack> {
    use proptest::prelude::*;
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(Attack::Raw),
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(Attack::AfterPreface),
        (
            prop_oneof![Just("ab".repeat(32)), "\\PC{0,80}"],
            proptest::collection::vec(any::<u8>(), 0..2048),
            proptest::collection::vec(
                ("\\PC{0,64}", proptest::collection::vec(any::<u8>(), 0..40)),
                0..8
            ),
            proptest::option::of(any::<i32>()),
        )
            .prop_map(|(tx_hash, data, files, error)| Attack::Message {
                tx_hash,
                data,
                files,
                error,
            }),
    ]
}

/// Whatever a guest sends, the guest service answers or closes the connection, never panics,
/// and serves the next well-behaved connection. Bounded: 96 cases.
#[test]
fn any_bytes_or_message_from_a_guest_leave_the_service_serving() {
    use proptest::test_runner::{Config, TestRunner};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = testkit::tempdir();
    let path = hybrid_listener_path(&dir.path().join("vm.vsock"), guest::proto::DEFAULT_PORT);
    let listener = rt.block_on(async { tokio::net::UnixListener::bind(&path).expect("listen") });
    let serving = rt.spawn(serve_hybrid(listener, "vm".to_string(), Arc::new(Strict)));
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&attack(), |attack| {
            rt.block_on(async {
                match &attack {
                    Attack::Raw(bytes) | Attack::AfterPreface(bytes) => {
                        let mut s = tokio::net::UnixStream::connect(&path)
                            .await
                            .expect("connect");
                        if matches!(attack, Attack::AfterPreface(_)) {
                            let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
                        }
                        let _ = s.write_all(bytes).await;
                        let _ = s.shutdown().await;
                        let mut sink = Vec::new();
                        let read = tokio::time::timeout(
                            std::time::Duration::from_secs(10),
                            s.read_to_end(&mut sink),
                        )
                        .await;
                        assert!(read.is_ok(), "the service neither answered nor closed");
                    }
                    Attack::Message {
                        tx_hash,
                        data,
                        files,
                        error,
                    } => {
                        let result = match error {
                            Some(e) => task_result_request::Result::Error(*e),
                            None => task_result_request::Result::Task(TaskResult {
                                data: data.clone(),
                                files: files
                                    .iter()
                                    .map(|(path, checksum)| File {
                                        path: path.clone(),
                                        checksum: checksum.clone(),
                                    })
                                    .collect(),
                            }),
                        };
                        let answer = client(path.clone())
                            .await
                            .submit_result(TaskResultRequest {
                                tx_hash: tx_hash.clone(),
                                result: Some(result),
                            })
                            .await;
                        if *tx_hash != "ab".repeat(32) {
                            assert!(answer.is_err(), "another task's result was taken");
                        }
                    }
                }
                // The next well-behaved guest is served.
                let task = client(path.clone()).await.get_task().await;
                assert!(matches!(task, Ok(Some(_))), "{task:?}");
            });
            Ok(())
        })
        .expect("the guest service survives every attack");
    assert!(!serving.is_finished(), "the guest service stopped");
}
