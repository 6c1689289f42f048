//! Integration tests of the tracker service and the inbox watcher against real PostgreSQL,
//! Kafka and (for the watcher) GreenMail.

mod events;
mod health;
mod inbox;
mod publish;
mod responses;
mod support;
mod tokens;
