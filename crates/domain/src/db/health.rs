//! Database part of readiness: reachable, and every known migration applied.

use diesel_async::RunQueryDsl;

use super::PgPool;

pub async fn check(pool: &PgPool) -> Result<(), String> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| format!("database unreachable: {e}"))?;
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .map_err(|e| format!("database query failed: {e}"))?;
    let pending = super::migrations::pending(&mut conn)
        .await
        .map_err(|e| format!("could not read applied migrations: {e}"))?;
    if pending.is_empty() {
        Ok(())
    } else {
        Err(format!("migrations not applied: {}", pending.join(", ")))
    }
}
