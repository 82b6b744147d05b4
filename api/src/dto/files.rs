//! Output files and their download locations.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::transactions::{bad_cursor, cursor_parts, encode_cursor};

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

/// Cursor over (transaction seq, file index): `v1.<seq>.<index>`.
pub fn encode_file_cursor((seq, index): (i64, i64)) -> String {
    format!("{}.{index}", encode_cursor(seq))
}

pub fn decode_file_cursor(cursor: &str) -> Result<(i64, i64), BadRequest> {
    match cursor_parts(cursor)?.as_slice() {
        [seq, index] => Ok((*seq, *index)),
        _ => Err(bad_cursor()),
    }
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^v1\.[0-9]{1,18}\.[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}
