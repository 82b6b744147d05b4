//! The node's side of the guest protocol: gRPC `vm_service.VMService` served over one
//! connection from a VM (HTTP/2 over a vsock stream, or over the per-VM Unix socket of the
//! hybrid vsock). The caller of [`serve_connection`] knows which VM the connection belongs to
//! (the peer's CID, or the per-VM socket it accepted on), so a guest can only ever ask about its
//! own task.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use guest::proto::{
    GET_TASK, SUBMIT_RESULT, Task, TaskError, TaskRequest, TaskResponse, TaskResultRequest,
    TaskResultResponse, task_response,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::codegen::http;

/// The largest guest protocol message a handler accepts unless it says otherwise (tonic's own
/// default).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;

/// What the node answers to a VM.
pub trait GuestHandler: Send + Sync + 'static {
    /// The largest message this VM may send, in bytes (a result carries its proof inline); a
    /// larger one is refused with `OUT_OF_RANGE` and the connection goes on.
    fn max_message_bytes(&self) -> usize {
        DEFAULT_MAX_MESSAGE_BYTES
    }
    /// The task for `vm`, if it has one now.
    fn get_task(&self, vm: &str) -> impl Future<Output = Option<Task>> + Send;
    /// A result from `vm`; returns whether the VM should ask for more work.
    fn submit_result(
        &self,
        vm: &str,
        result: TaskResultRequest,
    ) -> impl Future<Output = Result<bool, tonic::Status>> + Send;
}

fn unimplemented() -> http::Response<tonic::body::Body> {
    let mut response = http::Response::new(tonic::body::Body::empty());
    let headers = response.headers_mut();
    headers.insert("grpc-status", http::HeaderValue::from_static("12"));
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Serves the guest protocol on one connection from `vm` until the guest closes it.
pub async fn serve_connection<IO, H>(
    io: IO,
    vm: String,
    handler: Arc<H>,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: GuestHandler,
{
    let max_message = handler.max_message_bytes();
    let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        let vm = vm.clone();
        async move {
            let response = match req.uri().path() {
                GET_TASK => {
                    let method = tower::service_fn(move |_: tonic::Request<TaskRequest>| {
                        let handler = handler.clone();
                        let vm = vm.clone();
                        async move {
                            let result = match handler.get_task(&vm).await {
                                Some(task) => task_response::Result::Task(task),
                                None => task_response::Result::Error(TaskError::Unavailable as i32),
                            };
                            Ok::<_, tonic::Status>(tonic::Response::new(TaskResponse {
                                result: Some(result),
                            }))
                        }
                    });
                    let codec = tonic_prost::ProstCodec::<TaskResponse, TaskRequest>::default();
                    tonic::server::Grpc::new(codec)
                        .max_decoding_message_size(max_message)
                        .unary(method, req)
                        .await
                }
                SUBMIT_RESULT => {
                    let method = tower::service_fn(move |r: tonic::Request<TaskResultRequest>| {
                        let handler = handler.clone();
                        let vm = vm.clone();
                        async move {
                            let more = handler.submit_result(&vm, r.into_inner()).await?;
                            Ok::<_, tonic::Status>(tonic::Response::new(TaskResultResponse {
                                r#continue: more,
                            }))
                        }
                    });
                    let codec =
                        tonic_prost::ProstCodec::<TaskResultResponse, TaskResultRequest>::default();
                    tonic::server::Grpc::new(codec)
                        .max_decoding_message_size(max_message)
                        .unary(method, req)
                        .await
                }
                _ => unimplemented(),
            };
            Ok::<_, Infallible>(response)
        }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .await
}

/// Where [`HybridDaemon::start`] notes its daemon's pid, in the daemon's (the VM's) directory.
pub const DAEMON_PID_FILE: &str = "vsock-daemon.pid";

/// A `vhost-device-vsock` daemon giving one VM the hybrid vsock, killed when dropped. QEMU
/// connects to [`socket`](Self::socket); the guest's connections to host port P arrive on
/// [`hybrid_listener_path`]`(uds, P)`.
#[derive(Debug)]
pub struct HybridDaemon {
    child: std::process::Child,
    /// The vhost-user socket QEMU connects to.
    pub socket: PathBuf,
    /// The host side's base path.
    pub uds: PathBuf,
}

impl HybridDaemon {
    /// Starts `binary` for guest `cid` with its sockets in `dir`, and waits (up to 10 s) until
    /// its vhost-user socket exists. Blocking: call it from a blocking context.
    pub fn start(binary: &Path, dir: &Path, cid: u32) -> std::io::Result<HybridDaemon> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("vhost-user-vsock.sock");
        let uds = dir.join("vm.vsock");
        let child = std::process::Command::new(binary)
            .arg("--vm")
            .arg(format!(
                "guest-cid={cid},socket={},uds-path={}",
                socket.display(),
                uds.display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        // For `reap_orphans`, should the node be killed while the daemon runs.
        let _ = std::fs::write(dir.join(DAEMON_PID_FILE), child.id().to_string());
        let daemon = HybridDaemon { child, socket, uds };
        for _ in 0..400 {
            if daemon.socket.exists() {
                return Ok(daemon);
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(std::io::Error::other(format!(
            "{} did not create its socket within 10 s",
            binary.display()
        )))
    }
}

impl Drop for HybridDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Unix socket the hybrid vsock daemon connects to when the guest dials the host on `port`:
/// `<uds path>_<port>`.
pub fn hybrid_listener_path(uds_path: &Path, port: u32) -> PathBuf {
    let mut name = uds_path.as_os_str().to_owned();
    name.push(format!("_{port}"));
    PathBuf::from(name)
}

/// Connections a guest may hold open at once; more are closed as they arrive (the SDK uses one).
pub const MAX_GUEST_CONNECTIONS: usize = 8;

/// Accepts guest connections for `vm` on its hybrid vsock listener until the listener fails or
/// the task is dropped. Each connection is served on its own task.
pub async fn serve_hybrid<H: GuestHandler>(
    listener: tokio::net::UnixListener,
    vm: String,
    handler: Arc<H>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_GUEST_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(target: "gevulot", vm = %vm, "a guest opened too many connections; closed one");
            continue;
        };
        let (vm, handler) = (vm.clone(), handler.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_connection(stream, vm.clone(), handler).await {
                tracing::debug!(target: "gevulot", vm = %vm, error = %e, "guest connection ended with an error");
            }
        });
    }
}
