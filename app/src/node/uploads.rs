//! Uploads: files an operator sends to the node, streamed to disk and hashed, stored where the
//! download server serves them (`txfiles/<blake3>/<name>`) and where downloads look first
//! (`content/<blake3>`). A file appears under its final name only once complete.

use futures::{Stream, StreamExt as _};
use tokio::io::AsyncWriteExt as _;

use crate::tx::Hash;

use super::programs::check_file_name;
use super::{Node, NodeError};

/// A stored upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    pub name: String,
    /// BLAKE3 of the content, computed by the node.
    pub checksum: Hash,
    pub size: u64,
    /// Where the node serves it; what Deploys and Runs name.
    pub url: String,
}

impl Node {
    /// Streams an upload named `name` to disk, hashing it, and stores it. Returns whether it is
    /// new. `field` names the name's origin in errors; `by` is who uploads, for the audit log.
    pub async fn save_upload<S, B, E>(
        &self,
        field: &str,
        name: &str,
        stream: S,
        by: &crate::model::Actor,
    ) -> Result<(bool, Uploaded), NodeError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let result = self.store_upload(field, name, stream).await;
        let detail = match &result {
            Ok((new, u)) => format!(
                "{} bytes, BLAKE3 {}{}",
                u.size,
                u.checksum,
                if *new { "" } else { " (already held)" }
            ),
            Err(e) => e.to_string(),
        };
        self.record(
            by,
            crate::model::AuditAction::Upload,
            Some(name),
            Some(&detail),
            result.is_ok(),
        )
        .await;
        result
    }

    async fn store_upload<S, B, E>(
        &self,
        field: &str,
        name: &str,
        stream: S,
    ) -> Result<(bool, Uploaded), NodeError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        check_file_name(field, name)?;
        let data = self.data_dir();
        tokio::fs::create_dir_all(data.tmp())
            .await
            .map_err(|e| NodeError::io("cannot create the upload directory", e))?;
        let tmp = data.temp_file("upload");
        let (checksum, size) = match self.receive(stream, &tmp).await {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let dest = data.upload(&checksum, name);
        let uploaded = Uploaded {
            url: format!(
                "{}/{}",
                self.file_base_url(),
                crate::data_dir::DataDir::upload_url_path(&checksum, name)
            ),
            name: name.to_string(),
            checksum,
            size,
        };
        if tokio::fs::metadata(&dest).await.is_ok_and(|m| m.is_file()) {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Ok((false, uploaded));
        }
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| NodeError::io("cannot create the upload's directory", e))?;
        }
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(|e| NodeError::io("cannot move the upload into place", e))?;
        // Programs and inputs naming this content find it without downloading it from the node.
        if tokio::fs::create_dir_all(data.content()).await.is_ok() {
            let _ = tokio::fs::hard_link(&dest, data.content_file(&checksum)).await;
        }
        Ok((true, uploaded))
    }

    /// Streams `stream` into `tmp`, hashing as it goes; returns the BLAKE3 and the size.
    async fn receive<S, B, E>(
        &self,
        mut stream: S,
        tmp: &std::path::Path,
    ) -> Result<(Hash, u64), NodeError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let max = self.max_upload_bytes();
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| NodeError::io("cannot create the upload file", e))?;
        let mut hasher = blake3::Hasher::new();
        let mut size: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| NodeError::UploadBroken(format!("the upload broke off: {e}")))?;
            let chunk = chunk.as_ref();
            size += chunk.len() as u64;
            if size > max {
                return Err(NodeError::TooLarge(format!(
                    "the upload is larger than {max} bytes (GEVULOT_MAX_UPLOAD_BYTES)"
                )));
            }
            hasher.update(chunk);
            file.write_all(chunk)
                .await
                .map_err(|e| NodeError::io("cannot write the upload", e))?;
        }
        file.sync_all()
            .await
            .map_err(|e| NodeError::io("cannot write the upload", e))?;
        Ok((Hash(*hasher.finalize().as_bytes()), size))
    }
}
