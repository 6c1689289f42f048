//! PostgreSQL access: the pool, migrations and (per table or aggregate) query functions.
//!
//! Query functions take `&mut AsyncPgConnection`, so the same function runs on a pooled
//! connection alone or inside a caller's transaction (`conn.transaction(|tx| ...)`).

pub mod api_keys;
pub mod contacts;
pub mod dispatch;
pub mod enrollments;
pub mod events;
pub mod health;
pub mod inbox;
pub mod mailbox_health;
pub mod mailbox_oauth;
pub mod mailboxes;
pub mod messages;
pub mod migrations;
pub mod oauth_authorizations;
pub mod outbox;
pub mod prepared;
pub mod progress;
pub mod resolutions;
pub mod schema;
pub mod send_jobs;
pub mod sending;
pub mod sequences;
pub mod stats;
pub mod steps;
pub mod suppressions;
pub mod webhook_deliveries;
pub mod webhook_dispatch;
pub mod webhook_endpoints;
pub mod workspaces;

use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, SimpleAsyncConnection as _};
use futures::FutureExt as _;
use secrecy::ExposeSecret;

use crate::config::DatabaseConfig;

pub type PgPool = Pool<AsyncPgConnection>;
pub type PooledConn = Object<AsyncPgConnection>;
pub use diesel_async::AsyncPgConnection as PgConn;
pub use diesel_async::pooled_connection::deadpool::PoolError;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("could not get a database connection: {0}")]
    Pool(#[from] diesel_async::pooled_connection::deadpool::PoolError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("could not build the database pool: {0}")]
    Build(#[from] diesel_async::pooled_connection::deadpool::BuildError),
}

/// Builds the pool. Connections open lazily, so this succeeds with the database down; the
/// timeouts make callers (and `/readyz`) fail fast instead of hanging. Each connection gets
/// the session settings of [`session_settings`] before it is used.
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let settings = session_settings(config);
    let mut setup = ManagerConfig::<AsyncPgConnection>::default();
    setup.custom_setup = Box::new(move |url| {
        let settings = settings.clone();
        let url = url.to_owned();
        async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            conn.batch_execute(&settings)
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        config.url.expose_secret(),
        setup,
    );
    let connect = Duration::from_millis(config.connect_timeout_ms);
    Ok(Pool::builder(manager)
        .max_size(config.max_connections)
        .wait_timeout(Some(Duration::from_millis(config.acquire_timeout_ms)))
        .create_timeout(Some(connect))
        .recycle_timeout(Some(connect))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
}

/// What every pooled session sets first: the planner's random page cost (validated as a
/// positive finite number, so the statement is well formed).
pub fn session_settings(config: &DatabaseConfig) -> String {
    format!("SET random_page_cost = {}", config.random_page_cost)
}
