//! Hot statements written as raw SQL are prepared once per connection, not planned per call.

use chrono::Utc;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use domain::db::dispatch::claim_due;
use domain::testing::TestDatabase;

#[tokio::test]
async fn the_claim_is_prepared_once_per_connection() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let prepared = "SELECT count(*) AS n FROM pg_prepared_statements \
                     WHERE statement LIKE '%FROM due_enrollments%' \
                       AND statement NOT LIKE '%pg_prepared_statements%'";
    for _ in 0..3 {
        claim_due(&mut conn, Utc::now(), 100).await?;
    }
    let count: Count = diesel::sql_query(prepared).get_result(&mut conn).await?;
    assert_eq!(count.n, 1, "one prepared statement, reused by every call");
    Ok(())
}
