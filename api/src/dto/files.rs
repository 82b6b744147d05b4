//! Output files and their download locations.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::transactions::{CURSOR_PREFIX, bad_cursor, cursor_text};

use crate::error::BadRequest;

/// An output file of a Proof or Verification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileInfo {
    /// The Proof or Verification transaction (hex).
    pub tx: String,
    /// `proof` or `verification`.
    pub tx_kind: String,
    /// Position in the transaction's file list.
    pub index: i64,
    /// The path the program wrote, inside its VM.
    pub vm_path: String,
    /// Hex BLAKE3.
    pub checksum: String,
    /// Size in bytes, when this node has the file.
    pub size: Option<u64>,
    /// Download URL (supports Range requests): on this node's file server when it has the file,
    /// otherwise on the server of the node that produced it.
    pub url: String,
}

impl From<&app::node::FileView<app::model::OutputFile>> for FileInfo {
    fn from(v: &app::node::FileView<app::model::OutputFile>) -> Self {
        let f = &v.file;
        Self {
            tx: f.tx.to_hex(),
            tx_kind: f.kind.as_str().to_string(),
            index: f.index,
            vm_path: f.vm_path.clone(),
            checksum: f.checksum.to_hex(),
            size: v.size,
            url: v.url.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FilePage {
    pub items: Vec<FileInfo>,
    pub next_cursor: Option<String>,
}

/// Cursor over (transaction seq, file index).
pub fn encode_file_cursor((seq, index): (i64, i64)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{seq}:{index}"))
}

pub fn decode_file_cursor(cursor: &str) -> Result<(i64, i64), BadRequest> {
    let text = cursor_text(cursor)?;
    let (seq, index) = text.split_once(':').ok_or_else(bad_cursor)?;
    Ok((
        seq.parse().map_err(|_| bad_cursor())?,
        index.parse().map_err(|_| bad_cursor())?,
    ))
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    pub limit: Option<u32>,
}
