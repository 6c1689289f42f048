//! `domain::db::schema` is written by hand (no libpq for `diesel print-schema`); this test
//! holds it to the migrated database.

use std::collections::BTreeMap;

use diesel::QueryDsl;
use diesel::pg::Pg;
use diesel_async::RunQueryDsl;
use domain::db::schema::*;
use domain::testing::TestDatabase;

#[tokio::test]
async fn schema_rs_matches_the_migrated_database() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        columns: i64,
    }
    let in_database: BTreeMap<String, usize> = diesel::sql_query(
        "SELECT table_name::text AS table_name, count(*) AS columns \
           FROM information_schema.columns \
          WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' \
          GROUP BY table_name",
    )
    .load::<Count>(&mut conn)
    .await?
    .into_iter()
    .map(|c| (c.table_name, c.columns as usize))
    .collect();

    let mut in_schema_rs = BTreeMap::new();
    macro_rules! check {
        ($($table:ident),* $(,)?) => {$(
            let query = $table::table.select($table::all_columns).limit(0);
            // Running the SELECT proves every column of schema.rs exists with that name.
            query.execute(&mut conn).await.map_err(|e| {
                anyhow::anyhow!("{}: schema.rs names a column the database lacks: {e}", stringify!($table))
            })?;
            let sql = diesel::debug_query::<Pg, _>(&query).to_string();
            let select_list = sql.split(" FROM ").next().unwrap_or_default();
            let columns = select_list.matches(concat!("\"", stringify!($table), "\".")).count();
            in_schema_rs.insert(stringify!($table).to_owned(), columns);
        )*};
    }
    check!(
        workspaces,
        contact_attribute_keys,
        api_keys,
        mailboxes,
        contacts,
        sequences,
        steps,
        sequence_mailboxes,
        enrollments,
        due_enrollments,
        messages,
        message_leases,
        mailbox_first_sends,
        events,
        suppressions,
        mailbox_daily_usage,
        outbox,
        send_jobs,
        step_stats,
        sequence_stats,
        inbox_watches,
        inbox_folder_positions,
        mailbox_oauth,
        oauth_authorizations,
        webhook_endpoints,
        webhook_deliveries,
        webhook_attempts,
    );
    // Same tables, same column counts: together with the SELECT above, the same columns.
    assert_eq!(in_schema_rs, in_database);
    Ok(())
}
