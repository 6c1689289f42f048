//! Every pooled connection starts with the session settings of the configuration.

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use domain::testing::{TestDatabase, test_config_for};

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

#[tokio::test]
async fn pooled_sessions_use_the_configured_random_page_cost() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    config.database.random_page_cost = 1.25;
    config.database.max_connections = 2;
    let pool = domain::db::pool(&config.database)?;
    // Both connections of the pool, held at once, so neither is a reused one.
    let mut first = pool.get().await?;
    let mut second = pool.get().await?;
    for conn in [&mut first, &mut second] {
        let setting: Setting =
            diesel::sql_query("SELECT current_setting('random_page_cost') AS value")
                .get_result(&mut **conn)
                .await?;
        assert_eq!(setting.value, "1.25");
    }
    Ok(())
}
