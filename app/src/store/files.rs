//! Output files of Proofs and Verifications.

use super::{Backend, Result, Store, StoreError};
use crate::model::OutputFile;
use crate::tx::{Hash, Kind};

impl Store {
    /// Output files of Proofs and Verifications, newest transaction first, then in file order.
    /// `after` is the keyset `(transaction seq, file index)` of the last file of the previous
    /// page; the result's second item is the keyset for the next page.
    pub async fn list_output_files(
        &self,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<(Vec<OutputFile>, Option<(i64, i64)>)> {
        let limit = limit.clamp(1, 1000);
        let (seq, index) = after.unwrap_or((i64::MAX, -1));
        let rows: Vec<(String, i64, String, String, i64, String, String)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT f.tx, f.file_index, f.vm_path, f.checksum, t.seq, t.kind, f.url FROM tx_files f \
                 JOIN transactions t ON t.hash = f.tx \
                 WHERE t.seq < $1 OR (t.seq = $1 AND f.file_index > $2) \
                 ORDER BY t.seq DESC, f.file_index LIMIT $3",
            )
            .bind(seq)
            .bind(index)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await?
        });
        let mut items = Vec::with_capacity(rows.len());
        for (tx, index, vm_path, checksum, seq, kind, producer_url) in rows {
            let bad = || StoreError::Corrupt(format!("bad output file row {tx}/{index}"));
            items.push(OutputFile {
                tx: Hash::from_hex(&tx).ok_or_else(bad)?,
                index,
                vm_path,
                checksum: Hash::from_hex(&checksum).ok_or_else(bad)?,
                tx_seq: seq,
                kind: Kind::parse(&kind).ok_or_else(bad)?,
                producer_url,
            });
        }
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|f| (f.tx_seq, f.index))
        } else {
            None
        };
        Ok((items, next))
    }

    /// One output file.
    pub async fn output_file(&self, tx: &Hash, index: i64) -> Result<Option<OutputFile>> {
        let row: Option<(String, String, i64, String, String)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT f.vm_path, f.checksum, t.seq, t.kind, f.url FROM tx_files f JOIN transactions t ON t.hash = f.tx \
                 WHERE f.tx = $1 AND f.file_index = $2",
            )
            .bind(tx.to_hex())
            .bind(index)
            .fetch_optional(pool)
            .await?
        });
        let Some((vm_path, checksum, tx_seq, kind, producer_url)) = row else {
            return Ok(None);
        };
        let bad = || StoreError::Corrupt(format!("bad output file row {tx}/{index}"));
        Ok(Some(OutputFile {
            tx: *tx,
            index,
            vm_path,
            checksum: Hash::from_hex(&checksum).ok_or_else(bad)?,
            tx_seq,
            kind: Kind::parse(&kind).ok_or_else(bad)?,
            producer_url,
        }))
    }
}
