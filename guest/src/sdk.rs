//! The program SDK, in the shape of the original's: a program calls [`run`] with a callback that
//! gets its task (`{id, args, files}`) and returns `(data, output files)`. The SDK talks to the
//! node over vsock (CID 2, port 8080), waits for `/workspace`, hashes the output files (BLAKE3)
//! and submits the result; a callback error is reported as a failed task.

use std::path::Path;
use std::time::Duration;

use crate::proto::{
    Client, DEFAULT_PORT, File, HOST_CID, TaskError, TaskResult, TaskResultRequest,
    task_result_request,
};

/// What a program gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// The transaction being executed (hex).
    pub id: String,
    pub args: Vec<String>,
    /// Input files, as paths under `/workspace`.
    pub files: Vec<String>,
}

/// What a program returns: the proof (or verification) bytes and its output files (paths
/// under `/workspace`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub data: Vec<u8>,
    pub files: Vec<String>,
}

#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

const WORKSPACE: &str = "/workspace";

fn workspace_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(WORKSPACE))
        })
        .unwrap_or(false)
}

async fn connect(port: u32) -> Result<Client, Error> {
    let channel = tonic::transport::Endpoint::from_static("http://node.invalid")
        .connect_with_connector(tower::service_fn(move |_| async move {
            let stream =
                tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(HOST_CID, port))
                    .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }))
        .await
        .map_err(|e| Error(format!("cannot reach the node over vsock port {port}: {e}")))?;
    Ok(Client::new(channel))
}

fn checksum(path: &str) -> Result<Vec<u8>, Error> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).map_err(|e| Error(format!("output {path}: {e}")))?;
    hasher
        .update_reader(file)
        .map_err(|e| Error(format!("output {path}: {e}")))?;
    Ok(hasher.finalize().as_bytes().to_vec())
}

/// Runs `callback` for each task the node gives this VM, until the node says there is no more.
pub fn run(callback: impl Fn(Task) -> Result<Output, String>) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error(format!("cannot start the runtime: {e}")))?;
    let port = std::env::var("GEVULOT_VSOCK_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT);
    runtime.block_on(async {
        for _ in 0..300 {
            if workspace_mounted() || !Path::new("/proc/mounts").exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut client = connect(port).await?;
        let mut idle = 0;
        loop {
            let task = client
                .get_task()
                .await
                .map_err(|e| Error(format!("GetTask failed: {e}")))?;
            let Some(task) = task else {
                idle += 1;
                if idle > 60 {
                    return Err(Error(
                        "the node had no task for this VM for a minute".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let tx_hash = task.tx_hash.clone();
            let outcome = callback(Task {
                id: task.tx_hash,
                args: task.args,
                files: task.files,
            });
            let result = match outcome.map_err(Error).and_then(|out| {
                let files = out
                    .files
                    .iter()
                    .map(|path| {
                        Ok(File {
                            path: path.clone(),
                            checksum: checksum(path)?,
                        })
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                Ok(TaskResult {
                    data: out.data,
                    files,
                })
            }) {
                Ok(r) => task_result_request::Result::Task(r),
                Err(e) => {
                    eprintln!("task failed: {e}");
                    task_result_request::Result::Error(TaskError::Failed as i32)
                }
            };
            let more = client
                .submit_result(TaskResultRequest {
                    tx_hash,
                    result: Some(result),
                })
                .await
                .map_err(|e| Error(format!("SubmitResult failed: {e}")))?;
            if !more {
                return Ok(());
            }
        }
    })
}
