//! The guest protocol, exactly as the original's `vm_service.proto` (`wire-format.md`): gRPC
//! service `vm_service.VMService` with `GetTask` and `SubmitResult`. The messages are written
//! out with `prost`'s derive (same field numbers and types as the `.proto`), so no protobuf
//! compiler is needed to build the node or a program.
//!
//! ```proto
//! service VMService {
//!   rpc GetTask(TaskRequest) returns (TaskResponse);
//!   rpc SubmitResult(TaskResultRequest) returns (TaskResultResponse);
//! }
//! message Task { string tx_hash = 1; string name = 2; repeated string args = 3; repeated string files = 4; }
//! message TaskResponse { oneof result { Task task = 1; TaskError error = 2; } }
//! message TaskResultRequest { string tx_hash = 1; oneof result { TaskResult task = 2; TaskError error = 3; } }
//! message TaskResult { bytes data = 2; repeated File files = 3; }
//! message File { string path = 1; bytes checksum = 2; }
//! message TaskResultResponse { bool continue = 1; }
//! enum TaskError { Unavailable = 0; Failed = 1; }
//! ```

/// The vsock port the node's guest service listens on, and the host's CID.
pub const DEFAULT_PORT: u32 = 8080;
pub const HOST_CID: u32 = 2;

pub const GET_TASK: &str = "/vm_service.VMService/GetTask";
pub const SUBMIT_RESULT: &str = "/vm_service.VMService/SubmitResult";

#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Task {
    #[prost(string, tag = "1")]
    pub tx_hash: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, repeated, tag = "3")]
    pub args: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub files: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum TaskError {
    Unavailable = 0,
    Failed = 1,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskResponse {
    #[prost(oneof = "task_response::Result", tags = "1, 2")]
    pub result: Option<task_response::Result>,
}

pub mod task_response {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        #[prost(message, tag = "1")]
        Task(super::Task),
        #[prost(enumeration = "super::TaskError", tag = "2")]
        Error(i32),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct File {
    #[prost(string, tag = "1")]
    pub path: String,
    /// BLAKE3, 32 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub checksum: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskResult {
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub files: Vec<File>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskResultRequest {
    #[prost(string, tag = "1")]
    pub tx_hash: String,
    #[prost(oneof = "task_result_request::Result", tags = "2, 3")]
    pub result: Option<task_result_request::Result>,
}

pub mod task_result_request {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        #[prost(message, tag = "2")]
        Task(super::TaskResult),
        #[prost(enumeration = "super::TaskError", tag = "3")]
        Error(i32),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskResultResponse {
    #[prost(bool, tag = "1")]
    pub r#continue: bool,
}

/// A client of the node's guest service over any channel (vsock in a VM, a Unix socket in tests).
#[derive(Debug, Clone)]
pub struct Client {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl Client {
    pub fn new(channel: tonic::transport::Channel) -> Self {
        Self {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    async fn unary<Req, Resp>(
        &mut self,
        path: &'static str,
        req: Req,
    ) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc.ready().await.map_err(|e| {
            tonic::Status::unavailable(format!("the node's guest service is not reachable: {e}"))
        })?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
        self.grpc
            .unary(tonic::Request::new(req), path, codec)
            .await
            .map(tonic::Response::into_inner)
    }

    /// `GetTask`: the task for this VM, or `None` when there is none (yet).
    pub async fn get_task(&mut self) -> Result<Option<Task>, tonic::Status> {
        let response: TaskResponse = self.unary(GET_TASK, TaskRequest {}).await?;
        Ok(match response.result {
            Some(task_response::Result::Task(task)) => Some(task),
            _ => None,
        })
    }

    /// `SubmitResult`: returns whether the node has more work (`continue`).
    pub async fn submit_result(
        &mut self,
        request: TaskResultRequest,
    ) -> Result<bool, tonic::Status> {
        let response: TaskResultResponse = self.unary(SUBMIT_RESULT, request).await?;
        Ok(response.r#continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Bytes as the original's prost 0.11 encoding produces them for the same values.
    #[test]
    fn wire_bytes_follow_the_proto() {
        let task = Task {
            tx_hash: "ab".into(),
            name: "n".into(),
            args: vec!["x".into()],
            files: vec!["/workspace/in".into()],
        };
        let response = TaskResponse {
            result: Some(task_response::Result::Task(task)),
        };
        let bytes = response.encode_to_vec();
        // field 1, length-delimited, containing: 1:"ab", 2:"n", 3:"x", 4:"/workspace/in"
        assert_eq!(
            bytes,
            [
                [0x0a, 25].as_slice(),
                &[0x0a, 2, b'a', b'b', 0x12, 1, b'n', 0x1a, 1, b'x', 0x22, 13],
                b"/workspace/in",
            ]
            .concat()
        );
        let unavailable = TaskResponse {
            result: Some(task_response::Result::Error(TaskError::Unavailable as i32)),
        };
        assert_eq!(unavailable.encode_to_vec(), [0x10, 0x00]);
        let result = TaskResultRequest {
            tx_hash: "h".into(),
            result: Some(task_result_request::Result::Task(TaskResult {
                data: vec![7],
                files: vec![File {
                    path: "/workspace/o".into(),
                    checksum: vec![1; 32],
                }],
            })),
        };
        let decoded =
            TaskResultRequest::decode(result.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, result);
        assert_eq!(
            TaskResultResponse { r#continue: false }.encode_to_vec(),
            Vec::<u8>::new()
        );
    }
}
