//! The directives of `gevulot backup` and `gevulot restore`.

use std::path::PathBuf;

use clap::Args;

use super::DbArgs;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The directory to write the backup to: new, or empty.
    #[arg(long)]
    pub to: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
    /// Node keypair file [default: <data directory>/node.key]
    #[arg(long, env = "GEVULOT_NODE_KEY_FILE")]
    pub node_key_file: Option<PathBuf>,
    /// `pg_dump`, for a PostgreSQL database (the server's major version or newer).
    #[arg(long, env = "GEVULOT_PG_DUMP", default_value = "pg_dump")]
    pub pg_dump: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A directory written by `gevulot backup`.
    #[arg(long)]
    pub from: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
    /// Node keypair file [default: <data directory>/node.key]
    #[arg(long, env = "GEVULOT_NODE_KEY_FILE")]
    pub node_key_file: Option<PathBuf>,
    /// `pg_restore`, for a PostgreSQL database.
    #[arg(long, env = "GEVULOT_PG_RESTORE", default_value = "pg_restore")]
    pub pg_restore: PathBuf,
}
