//! Output files of Proofs and Verifications.

use crate::tx::{Hash, Kind};

/// An output file of a Proof or Verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    pub tx: Hash,
    pub index: i64,
    pub vm_path: String,
    pub checksum: Hash,
    pub tx_seq: i64,
    pub kind: Kind,
    /// The producer's download base, as signed into the transaction (`TxFile.url`); empty for
    /// files stored before it was recorded.
    pub producer_url: String,
}

impl OutputFile {
    /// The file's name without directories.
    pub fn basename(&self) -> &str {
        self.vm_path.rsplit('/').next().unwrap_or(&self.vm_path)
    }

    /// The path on the download server and under the data directory.
    pub fn relative_path(&self) -> String {
        format!(
            "txfiles/{}/{}/{}",
            self.tx.to_hex(),
            self.checksum.to_hex(),
            self.basename()
        )
    }
}
