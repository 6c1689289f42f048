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

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
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
/// timeouts make callers (and `/readyz`) fail fast instead of hanging.
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new(config.url.expose_secret());
    let connect = Duration::from_millis(config.connect_timeout_ms);
    Ok(Pool::builder(manager)
        .max_size(config.max_connections)
        .wait_timeout(Some(Duration::from_millis(config.acquire_timeout_ms)))
        .create_timeout(Some(connect))
        .recycle_timeout(Some(connect))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
}
