//! Schema migrations from `migrations/`, embedded in every binary and run through
//! diesel-async's connection wrapper (pure Rust, no libpq).

use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel_async::AsyncPgConnection;
use diesel_async::RunQueryDsl;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::{ExposeSecret, SecretString};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("could not connect to the database: {0}")]
    Connect(String),
    #[error("migration failed: {0}")]
    Run(String),
    #[error("migration task panicked or was cancelled")]
    Join(#[from] tokio::task::JoinError),
}

/// One migration and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub version: String,
    pub name: String,
    pub applied: bool,
}

/// Every migration this binary knows, in order, as `(version, full name)`.
pub fn known() -> Result<Vec<(String, String)>, MigrationError> {
    let migrations: Vec<Box<dyn Migration<Pg>>> = MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map_err(|e| MigrationError::Run(e.to_string()))?;
    Ok(migrations
        .iter()
        .map(|m| (m.name().version().to_string(), m.name().to_string()))
        .collect())
}

/// Applies pending migrations; returns the versions applied.
pub async fn run_pending(url: &SecretString) -> Result<Vec<String>, MigrationError> {
    with_harness(url, |conn| {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
    })
    .await
}

/// Reverts the most recent migration, or all of them; returns the versions reverted.
pub async fn revert(url: &SecretString, all: bool) -> Result<Vec<String>, MigrationError> {
    with_harness(url, move |conn| {
        if all {
            conn.revert_all_migrations(MIGRATIONS)
                .map(|versions| versions.iter().map(ToString::to_string).collect())
        } else {
            conn.revert_last_migration(MIGRATIONS)
                .map(|v| vec![v.to_string()])
        }
    })
    .await
}

/// Every known migration with its applied flag.
pub async fn status(url: &SecretString) -> Result<Vec<MigrationState>, MigrationError> {
    let applied = with_harness(url, |conn| {
        conn.applied_migrations()
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
    })
    .await?;
    Ok(known()?
        .into_iter()
        .map(|(version, name)| MigrationState {
            applied: applied.contains(&version),
            version,
            name,
        })
        .collect())
}

/// Known migrations the database lacks; used by `/readyz` on a pooled connection.
pub async fn pending(conn: &mut AsyncPgConnection) -> Result<Vec<String>, diesel::result::Error> {
    #[derive(diesel::QueryableByName)]
    struct Applied {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let applied: Vec<Applied> =
        match diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
            .load(conn)
            .await
        {
            Ok(rows) => rows,
            // No table yet: nothing is applied.
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("does not exist") =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
    let known =
        known().map_err(|e| diesel::result::Error::QueryBuilderError(e.to_string().into()))?;
    Ok(known
        .into_iter()
        .map(|(version, _)| version)
        .filter(|v| !applied.iter().any(|a| &a.version == v))
        .collect())
}

async fn with_harness<T, F>(url: &SecretString, f: F) -> Result<T, MigrationError>
where
    T: Send + 'static,
    F: FnOnce(&mut AsyncConnectionWrapper<AsyncPgConnection>) -> Result<T, BoxError>
        + Send
        + 'static,
{
    use diesel::Connection;
    let url = url.expose_secret().to_owned();
    // The harness is synchronous; the wrapper drives the async connection on this runtime
    // from a blocking thread.
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| MigrationError::Connect(e.to_string()))?;
        f(&mut conn).map_err(|e| MigrationError::Run(e.to_string()))
    })
    .await?
}
