//! Deployed programs (rows derived from Deploy transactions).

use sqlx::AssertSqlSafe;

use super::{Backend, Result, Store, StoreError};
use crate::model::{Program, ProgramRole};
use crate::tx::{Hash, ResourceRequest};

/// A `programs` row in [`PROGRAM_COLUMNS`] order.
type ProgramTuple = (
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    String,
    String,
    i64,
);

const PROGRAM_COLUMNS: &str = "hash, name, image_file_name, image_file_url, image_file_checksum, mem_mib, cpus, gpus, role, deploy_tx, created_at";

fn decode_program(t: ProgramTuple) -> Result<Program> {
    let (
        hash,
        name,
        image_file_name,
        image_file_url,
        image_file_checksum,
        mem_mib,
        cpus,
        gpus,
        role,
        deploy_tx,
        created_at,
    ) = t;
    let corrupt = |what: &str| StoreError::Corrupt(format!("program {hash}: {what}"));
    let resource_requirements = match (mem_mib, cpus, gpus) {
        (Some(mem), Some(cpus), Some(gpus)) => Some(ResourceRequest {
            mem: u64::try_from(mem).map_err(|_| corrupt("negative mem"))?,
            cpus: u64::try_from(cpus).map_err(|_| corrupt("negative cpus"))?,
            gpus: u64::try_from(gpus).map_err(|_| corrupt("negative gpus"))?,
        }),
        _ => None,
    };
    Ok(Program {
        hash: Hash::from_hex(&hash).ok_or_else(|| corrupt("bad hash"))?,
        deploy_tx: Hash::from_hex(&deploy_tx).ok_or_else(|| corrupt("bad deploy tx"))?,
        name,
        image_file_name,
        image_file_url,
        image_file_checksum,
        resource_requirements,
        role: ProgramRole::parse(&role).ok_or_else(|| corrupt("bad role"))?,
        created_at_ms: created_at,
    })
}

impl Store {
    pub async fn get_program(&self, hash: &Hash) -> Result<Option<Program>> {
        let row: Option<ProgramTuple> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(format!("SELECT {PROGRAM_COLUMNS} FROM programs WHERE hash = $1")))
                .bind(hash.to_hex())
                .fetch_optional(pool)
                .await?
        });
        row.map(decode_program).transpose()
    }

    /// Programs by name then hash.
    pub async fn list_programs(&self, limit: u32) -> Result<Vec<Program>> {
        let rows: Vec<ProgramTuple> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(format!("SELECT {PROGRAM_COLUMNS} FROM programs ORDER BY name, hash LIMIT $1")))
                .bind(i64::from(limit.clamp(1, 1000)))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(decode_program).collect()
    }

    /// Runs whose workflow uses `program`, newest first.
    pub async fn runs_using_program(&self, program: &Hash, limit: u32) -> Result<Vec<Hash>> {
        let rows: Vec<String> = dispatch!(self, pool => {
            sqlx::query_scalar(
                // Each Run once, however many of its steps run the program.
                "SELECT t.hash FROM transactions t WHERE t.hash IN \
                 (SELECT s.run_tx FROM workflow_steps s WHERE s.program = $1) \
                 ORDER BY t.seq DESC LIMIT $2",
            )
            .bind(program.to_hex())
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(pool)
            .await?
        });
        rows.iter()
            .map(|h| {
                Hash::from_hex(h).ok_or_else(|| StoreError::Corrupt(format!("bad run hash {h}")))
            })
            .collect()
    }
}
