//! Both migration folders describe the same logical schema, and every migration file is embedded.

use app::store::Store;

#[tokio::test]
async fn postgres_and_sqlite_schemas_match() -> anyhow::Result<()> {
    let dir = testkit::tempdir();
    let lite = Store::connect(&testkit::sqlite_url(dir.path()), &Default::default()).await?;
    lite.migrate().await?;
    let pg = Store::connect(&testkit::postgres_url().await?, &Default::default()).await?;
    pg.migrate().await?;
    // CI runs this suite once per supported PostgreSQL major version and says which it expects.
    let version = pg.server_version().await?;
    if let Ok(major) = std::env::var("GEVULOT_TEST_PG_EXPECT_MAJOR") {
        assert!(
            version.starts_with(&format!("{major}.")),
            "expected PostgreSQL {major}, got {version}"
        );
    }
    assert!(!lite.server_version().await?.is_empty());
    let a = lite.describe_schema().await?;
    let b = pg.describe_schema().await?;
    assert!(a.columns.len() > 30, "suspiciously small schema: {a:?}");
    let only_lite: Vec<_> = a.columns.difference(&b.columns).collect();
    let only_pg: Vec<_> = b.columns.difference(&a.columns).collect();
    assert!(
        only_lite.is_empty() && only_pg.is_empty(),
        "columns differ:\nsqlite only: {only_lite:#?}\npostgres only: {only_pg:#?}"
    );
    assert_eq!(a.indexes, b.indexes, "indexes differ");
    // Migrating again is a no-op.
    lite.migrate().await?;
    pg.migrate().await?;
    Ok(())
}

#[test]
fn every_migration_file_is_embedded() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    for (dir, column) in [("postgres", 2usize), ("sqlite", 3usize)] {
        let mut files: Vec<String> = std::fs::read_dir(root.join(dir))
            .expect("migrations folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = app::store::MIGRATIONS
            .iter()
            .map(|m| {
                if column == 2 {
                    m.2.to_string()
                } else {
                    m.3.to_string()
                }
            })
            .collect();
        assert_eq!(
            files, listed,
            "migrations/{dir} and the embedded list differ"
        );
    }
}

/// A schema that a newer release migrated further is refused, unchanged, with what to do; the
/// current schema migrates again as a no-op.
async fn newer_schema_is_refused(store: Store) -> anyhow::Result<()> {
    store.migrate().await?;
    store.migrate().await?;
    let checksum = match store.backend() {
        app::store::BackendKind::Postgres => "'\\x00'::bytea",
        app::store::BackendKind::Sqlite => "X'00'",
    };
    store
        .execute_raw(&format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', TRUE, {checksum}, 0)"
        ))
        .await?;
    let refused = store
        .migrate()
        .await
        .expect_err("a newer schema is refused");
    let message = refused.to_string();
    assert!(
        matches!(
            refused,
            app::store::StoreError::NewerSchema { found: 9999, .. }
        ),
        "{refused:?}"
    );
    assert!(
        message.contains("9999") && message.contains("newer"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn newer_schema_is_refused_on_sqlite() -> anyhow::Result<()> {
    let dir = testkit::tempdir();
    newer_schema_is_refused(
        Store::connect(&testkit::sqlite_url(dir.path()), &Default::default()).await?,
    )
    .await
}

#[tokio::test]
async fn newer_schema_is_refused_on_postgres() -> anyhow::Result<()> {
    newer_schema_is_refused(
        Store::connect(&testkit::postgres_url().await?, &Default::default()).await?,
    )
    .await
}
