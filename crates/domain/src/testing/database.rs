//! Per-test databases cloned from a migrated template.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use anyhow::Context as _;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::db::{self, PgPool, migrations};

const MISSING_ENV: &str = "DATABASE_URL is not set: run the tests through `cargo xtask test` \
     (or export the variables printed by `cargo xtask infra`)";

/// The server-level URL tests derive their databases from.
pub fn admin_database_url() -> anyhow::Result<String> {
    std::env::var("DATABASE_URL").context(MISSING_ENV)
}

/// A database of one test, dropped (forcibly) when the value is dropped.
pub struct TestDatabase {
    pub name: String,
    pub url: SecretString,
    admin_url: String,
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

impl TestDatabase {
    /// A fresh, fully migrated database.
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url = admin_database_url()?;
        let template = TEMPLATE
            .get_or_try_init(|| ensure_template(&admin_url))
            .await?
            .clone();
        let name = format!("test_{}", Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&admin_url).await?;
        diesel::sql_query(format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating {name} from {template}"))?;
        Ok(Self {
            url: SecretString::from(with_database(&admin_url, &name)),
            name,
            admin_url,
        })
    }

    /// An empty database with no migrations applied (for migration tests).
    pub async fn create_empty() -> anyhow::Result<Self> {
        let admin_url = admin_database_url()?;
        let name = format!("test_{}", Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&admin_url).await?;
        diesel::sql_query(format!(r#"CREATE DATABASE "{name}""#))
            .execute(&mut admin)
            .await?;
        Ok(Self {
            url: SecretString::from(with_database(&admin_url, &name)),
            name,
            admin_url,
        })
    }

    pub fn pool(&self) -> anyhow::Result<PgPool> {
        let mut config = super::test_config_for(self)?.database;
        config.max_connections = 4;
        Ok(db::pool(&config)?)
    }

    pub async fn connect(&self) -> anyhow::Result<AsyncPgConnection> {
        Ok(AsyncPgConnection::establish(self.url.expose_secret()).await?)
    }

    /// Runs one SQL statement; returns the rows it affected.
    pub async fn exec(&self, sql: &str) -> anyhow::Result<usize> {
        use diesel_async::RunQueryDsl as _;
        Ok(diesel::sql_query(sql)
            .execute(&mut self.connect().await?)
            .await?)
    }

    /// The `n` (an int8) of a query's one row, e.g. `SELECT count(*) AS n FROM messages`.
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        use diesel_async::RunQueryDsl as _;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let row: Count = diesel::sql_query(sql)
            .get_result(&mut self.connect().await?)
            .await?;
        Ok(row.n)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a plain thread with a blocking connection
        // wrapper avoids nesting runtimes. Best effort: `cargo xtask test` also sweeps leftovers.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url).await {
                    let _ = diesel::sql_query(format!(
                        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                    ))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Creates (once per distinct migration set) a migrated template database and returns its name.
async fn ensure_template(admin_url: &str) -> anyhow::Result<String> {
    let template = format!("seq_template_{:016x}", migrations_fingerprint()?);
    let mut admin = AsyncPgConnection::establish(admin_url).await?;
    // Serialises template creation across test binaries running at once.
    diesel::sql_query("SELECT pg_advisory_lock(7312001)")
        .execute(&mut admin)
        .await?;
    let result = build_template_if_missing(&mut admin, admin_url, &template).await;
    diesel::sql_query("SELECT pg_advisory_unlock(7312001)")
        .execute(&mut admin)
        .await?;
    result.map(|()| template)
}

async fn build_template_if_missing(
    admin: &mut AsyncPgConnection,
    admin_url: &str,
    template: &str,
) -> anyhow::Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let existing: Count =
        diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(template)
            .get_result(admin)
            .await?;
    if existing.n > 0 {
        return Ok(());
    }
    let building = format!("{template}_building");
    diesel::sql_query(format!(
        r#"DROP DATABASE IF EXISTS "{building}" WITH (FORCE)"#
    ))
    .execute(admin)
    .await?;
    diesel::sql_query(format!(r#"CREATE DATABASE "{building}""#))
        .execute(admin)
        .await?;
    migrations::run_pending(&SecretString::from(with_database(admin_url, &building))).await?;
    // Renamed only when complete, so a crash mid-build never leaves a half-migrated template.
    diesel::sql_query(format!(
        r#"ALTER DATABASE "{building}" RENAME TO "{template}""#
    ))
    .execute(admin)
    .await?;
    Ok(())
}

/// Hash of the migration files' names and contents: an edited migration gets a new template.
fn migrations_fingerprint() -> anyhow::Result<u64> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            for sql in ["up.sql", "down.sql"] {
                let path = entry.path().join(sql);
                if path.exists() {
                    files.push((entry.file_name(), sql, std::fs::read(&path)?));
                }
            }
        }
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    files.hash(&mut hasher);
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_keeping_credentials_and_options() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:5", "x"), "postgres://h:5/x");
    }
}
