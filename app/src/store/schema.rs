//! A normalised description of the schema, so that a test can check that the PostgreSQL and
//! SQLite migrations describe the same logical schema: the same tables and columns with the
//! same logical types, nullability and primary keys, and the same indexes.

use std::collections::BTreeSet;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use super::{Result, StoreError};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaColumn {
    pub table: String,
    pub name: String,
    /// `integer`, `text` or `blob`.
    pub logical_type: String,
    pub nullable: bool,
    pub primary_key: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaIndex {
    pub table: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaDescription {
    pub columns: BTreeSet<SchemaColumn>,
    /// Secondary indexes and unique constraints (primary keys are on the columns).
    pub indexes: BTreeSet<SchemaIndex>,
}

fn logical_type(declared: &str) -> Result<String> {
    let t = declared.to_ascii_lowercase();
    let logical = match t.as_str() {
        // `xid8`: a 64-bit transaction counter (PostgreSQL only writes it; SQLite keeps 0).
        "bigint" | "integer" | "int" | "int8" | "int4" | "smallint" | "xid8" => "integer",
        "text" | "character varying" | "varchar" => "text",
        "bytea" | "blob" => "blob",
        other => {
            return Err(StoreError::Corrupt(format!(
                "unexpected column type {other}"
            )));
        }
    };
    Ok(logical.to_string())
}

const HIDDEN_TABLE: &str = "_sqlx_migrations";

pub(super) async fn describe_postgres(pool: &PgPool) -> Result<SchemaDescription> {
    let mut out = SchemaDescription::default();
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = current_schema() AND table_name <> $1",
    )
    .bind(HIDDEN_TABLE)
    .fetch_all(pool)
    .await?;
    let indexes: Vec<(String, bool, bool, String)> = sqlx::query_as(
        "SELECT t.relname::text, ix.indisunique, ix.indisprimary, \
         array_to_string(ARRAY(SELECT a.attname::text FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord), ',') \
         FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = current_schema() AND t.relname <> $1",
    )
    .bind(HIDDEN_TABLE)
    .fetch_all(pool)
    .await?;
    let primary: BTreeSet<(String, String)> = indexes
        .iter()
        .filter(|(_, _, primary, _)| *primary)
        .flat_map(|(table, _, _, cols)| cols.split(',').map(|c| (table.clone(), c.to_string())))
        .collect();
    for (table, name, ty, nullable) in columns {
        let primary_key = primary.contains(&(table.clone(), name.clone()));
        out.columns.insert(SchemaColumn {
            logical_type: logical_type(&ty)?,
            nullable: nullable == "YES" && !primary_key,
            primary_key,
            table,
            name,
        });
    }
    for (table, unique, primary, cols) in indexes {
        if !primary {
            out.indexes.insert(SchemaIndex {
                table,
                columns: cols.split(',').map(str::to_string).collect(),
                unique,
            });
        }
    }
    Ok(out)
}

pub(super) async fn describe_sqlite(pool: &SqlitePool) -> Result<SchemaDescription> {
    let mut out = SchemaDescription::default();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> $1",
    )
    .bind(HIDDEN_TABLE)
    .fetch_all(pool)
    .await?;
    for table in tables {
        let columns: Vec<(String, String, i64, i64)> =
            sqlx::query_as("SELECT name, type, \"notnull\", pk FROM pragma_table_info($1)")
                .bind(&table)
                .fetch_all(pool)
                .await?;
        let pk: Vec<String> = columns
            .iter()
            .filter(|c| c.3 > 0)
            .map(|c| c.0.clone())
            .collect();
        for (name, ty, notnull, pk) in columns {
            out.columns.insert(SchemaColumn {
                table: table.clone(),
                name,
                logical_type: logical_type(&ty)?,
                nullable: notnull == 0 && pk == 0,
                primary_key: pk > 0,
            });
        }
        let indexes: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, \"unique\" FROM pragma_index_list($1)")
                .bind(&table)
                .fetch_all(pool)
                .await?;
        for (index, unique) in indexes {
            let mut cols: Vec<(i64, String)> =
                sqlx::query_as("SELECT seqno, name FROM pragma_index_info($1)")
                    .bind(&index)
                    .fetch_all(pool)
                    .await?;
            cols.sort();
            let columns: Vec<String> = cols.into_iter().map(|(_, n)| n).collect();
            if columns == pk {
                continue;
            }
            out.indexes.insert(SchemaIndex {
                table: table.clone(),
                columns,
                unique: unique != 0,
            });
        }
    }
    Ok(out)
}
