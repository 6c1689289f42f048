//! The shared domain and data layer of Sequence Service: configuration, telemetry, database
//! schema and queries, Kafka event types and plumbing, and what every service binary needs
//! to run (CLI, health endpoints, metrics, shutdown). The only crate the services share.

pub mod api_keys;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod events;
pub mod kafka;
pub mod mail;
pub mod oauth;
pub mod outbound;
pub mod outbox;
pub mod service;
pub mod telemetry;
pub mod templates;
pub mod tracking_token;
pub mod webhooks;

#[cfg(feature = "test-support")]
pub mod testing;
