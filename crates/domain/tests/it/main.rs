//! Integration tests of the domain crate against real PostgreSQL and Kafka.

mod contacts;
mod kafka;
mod migrations;
mod outbox;
mod readiness;
mod schema;
mod suppressions;
