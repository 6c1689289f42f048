use diesel_async::RunQueryDsl;
use domain::db::migrations;
use domain::testing::TestDatabase;

/// Columns, constraints, indexes and triggers of the public schema, as sorted text lines.
async fn schema_snapshot(db: &TestDatabase) -> anyhow::Result<Vec<String>> {
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text)]
        line: String,
    }
    let mut conn = db.connect().await?;
    let lines: Vec<Line> = diesel::sql_query(
        r#"
        SELECT format('column %s.%s %s null=%s default=%s', table_name, column_name, data_type,
                      is_nullable, coalesce(column_default, '')) AS line
          FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL
        SELECT format('constraint %s %s', conrelid::regclass, pg_get_constraintdef(oid))
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL
        SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL
        SELECT format('trigger %s on %s', tgname, tgrelid::regclass)
          FROM pg_trigger WHERE NOT tgisinternal
        ORDER BY 1
        "#,
    )
    .load(&mut conn)
    .await?;
    Ok(lines.into_iter().map(|l| l.line).collect())
}

#[tokio::test]
async fn up_down_all_up_gives_the_same_schema() -> anyhow::Result<()> {
    let db = TestDatabase::create_empty().await?;
    let known = migrations::known()?;

    let applied = migrations::run_pending(&db.url).await?;
    assert_eq!(applied.len(), known.len());
    let first = schema_snapshot(&db).await?;
    assert!(
        first
            .iter()
            .any(|l| l.contains("UNIQUE (enrollment_id, step_id)")),
        "messages must be unique per enrollment and step: {first:#?}"
    );

    let reverted = migrations::revert(&db.url, true).await?;
    assert_eq!(reverted.len(), known.len());
    let empty = schema_snapshot(&db).await?;
    assert!(
        empty
            .iter()
            .all(|l| l.contains("__diesel_schema_migrations")),
        "down must remove everything it created: {empty:#?}"
    );

    migrations::run_pending(&db.url).await?;
    assert_eq!(schema_snapshot(&db).await?, first);
    Ok(())
}

#[tokio::test]
async fn status_lists_every_migration_with_its_state() -> anyhow::Result<()> {
    let db = TestDatabase::create_empty().await?;
    let known = migrations::known()?;

    let before = migrations::status(&db.url).await?;
    assert_eq!(before.len(), known.len());
    assert!(before.iter().all(|m| !m.applied));

    migrations::run_pending(&db.url).await?;
    migrations::revert(&db.url, false).await?;
    let after = migrations::status(&db.url).await?;
    let (last, rest) = after
        .split_last()
        .ok_or_else(|| anyhow::anyhow!("no migrations"))?;
    assert!(rest.iter().all(|m| m.applied), "{after:?}");
    assert!(!last.applied, "the last one was reverted: {after:?}");
    assert_eq!(
        after.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        known.into_iter().map(|(_, name)| name).collect::<Vec<_>>()
    );

    let mut conn = db.connect().await?;
    assert_eq!(
        migrations::pending(&mut conn).await?,
        vec![last.version.clone()]
    );
    Ok(())
}

#[tokio::test]
async fn migrate_subcommand_runs_against_the_database() -> anyhow::Result<()> {
    let db = TestDatabase::create_empty().await?;
    let config = domain::testing::test_config_for(&db)?;
    use domain::service::cli::{MigrateAction, migrate};

    migrate(&config, MigrateAction::Up).await?;
    let mut conn = db.connect().await?;
    assert!(migrations::pending(&mut conn).await?.is_empty());
    // Applying again is a no-op, not an error.
    migrate(&config, MigrateAction::Up).await?;
    migrate(&config, MigrateAction::Status).await?;
    migrate(&config, MigrateAction::Down { all: true }).await?;
    assert_eq!(
        migrations::pending(&mut conn).await?.len(),
        migrations::known()?.len()
    );
    let tables: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' \
          AND table_name <> '__diesel_schema_migrations')",
    ))
    .get_result(&mut conn)
    .await?;
    assert_eq!(tables, 0);
    Ok(())
}

/// Reverts the newest migrations one by one until `name` (a migration directory) is reverted.
async fn revert_through(db: &TestDatabase, name: &str) -> anyhow::Result<()> {
    let known = migrations::known()?;
    let version = known
        .iter()
        .find(|(_, n)| n == name)
        .map(|(v, _)| v.clone())
        .ok_or_else(|| anyhow::anyhow!("no migration {name}"))?;
    for _ in 0..known.len() {
        if migrations::revert(&db.url, false).await?.contains(&version) {
            return Ok(());
        }
    }
    anyhow::bail!("{name} was never reverted")
}

#[tokio::test]
async fn inbox_read_positions_become_inbox_folder_positions_and_back() -> anyhow::Result<()> {
    const FOLDERS: &str = "2026-12-06-000072_inbox_watch_folders";
    let db = TestDatabase::create_empty().await?;
    migrations::run_pending(&db.url).await?;
    revert_through(&db, FOLDERS).await?;
    let (workspace, read, unread) = (
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    );
    db.exec(&format!(
        "INSERT INTO workspaces (id, name) VALUES ('{workspace}', 'test')"
    ))
    .await?;
    for id in [read, unread] {
        db.exec(&format!(
            "INSERT INTO mailboxes (id, workspace_id, email, smtp_host, smtp_port) \
             VALUES ('{id}', '{workspace}', 'seller-{id}@example.test', 'smtp.test', 25)"
        ))
        .await?;
    }
    db.exec(&format!(
        "INSERT INTO inbox_watches (mailbox_id, uid_validity, last_uid) \
         VALUES ('{read}', 7, 42), ('{unread}', NULL, 0)"
    ))
    .await?;

    migrations::run_pending(&db.url).await?;
    let positions = |sql: String| {
        let db = &db;
        async move {
            #[derive(diesel::QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::Text)]
                line: String,
            }
            let mut conn = db.connect().await?;
            let rows: Vec<Row> = diesel::sql_query(sql).load(&mut conn).await?;
            anyhow::Ok(rows.into_iter().map(|r| r.line).collect::<Vec<_>>())
        }
    };
    assert_eq!(
        positions(
            "SELECT format('%s %s %s %s', mailbox_id, folder, uid_validity, last_uid) AS line \
               FROM inbox_folder_positions"
                .to_owned()
        )
        .await?,
        [format!("{read} INBOX 7 42")],
        "only a mailbox that was read has a position, INBOX's"
    );

    revert_through(&db, FOLDERS).await?;
    assert_eq!(
        positions(format!(
            "SELECT format('%s %s', uid_validity, last_uid) AS line FROM inbox_watches \
              ORDER BY mailbox_id = '{unread}'"
        ))
        .await?,
        ["7 42", " 0"]
    );
    Ok(())
}
