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
