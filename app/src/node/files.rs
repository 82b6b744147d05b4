//! Files the network knows: output files of Proofs and Verifications, and program images, each
//! with where a client downloads it.

use crate::model::{OutputFile, Program};

use super::{Node, NodeError};

/// A file with its download location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileView<T> {
    pub file: T,
    /// Size in bytes, when this node holds the file.
    pub size: Option<u64>,
    /// Where to download it (Range requests work): this node's file server when it holds the
    /// file, otherwise the server of the node that produced it (the base it signed into the
    /// transaction). The original output form keeps naming this node's server, as the original
    /// did.
    pub url: String,
}

impl Node {
    /// Output files, newest transaction first; `after` is the previous page's keyset, and the
    /// second item the next page's.
    pub async fn output_files(
        &self,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<(Vec<FileView<OutputFile>>, Option<(i64, i64)>), NodeError> {
        let (files, next) = self.store().list_output_files(after, limit).await?;
        Ok((
            files.into_iter().map(|f| self.locate_output(f)).collect(),
            next,
        ))
    }

    pub async fn output_file(
        &self,
        tx: &crate::tx::Hash,
        index: i64,
    ) -> Result<FileView<OutputFile>, NodeError> {
        match self.store().output_file(tx, index).await? {
            Some(f) => Ok(self.locate_output(f)),
            None => Err(NodeError::NotFound(format!(
                "no output file {index} of {}",
                tx.to_hex()
            ))),
        }
    }

    /// Program images, with where this node serves them (when it has fetched them).
    pub async fn images(&self, limit: u32) -> Result<Vec<FileView<Program>>, NodeError> {
        Ok(self
            .programs(limit)
            .await?
            .into_iter()
            .map(|program| {
                let relative = program.image_path();
                FileView {
                    size: self.held_size(&relative),
                    url: format!("{}/{relative}", self.file_base_url()),
                    file: program,
                }
            })
            .collect())
    }

    fn locate_output(&self, file: OutputFile) -> FileView<OutputFile> {
        let (size, url) = self.locate(&file.relative_path(), &file.producer_url);
        FileView { file, size, url }
    }

    /// Where a client downloads the file at `relative` (as the download server names it): its
    /// size and URL here when this node holds it, else its URL on `producer`, the download base
    /// the producing node signed into the transaction.
    pub fn locate(&self, relative: &str, producer: &str) -> (Option<u64>, String) {
        let size = self.held_size(relative);
        let elsewhere = producer.starts_with("http://") || producer.starts_with("https://");
        let base = if size.is_some() || !elsewhere {
            self.file_base_url()
        } else {
            producer.trim_end_matches('/')
        };
        (size, format!("{base}/{relative}"))
    }

    /// The size of a served file this node holds (a regular file: the download server serves
    /// nothing else).
    fn held_size(&self, relative: &str) -> Option<u64> {
        let path = self.data_dir().served(relative)?;
        std::fs::symlink_metadata(path)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
    }
}
