//! Integration tests of the tracker service against real PostgreSQL and Kafka.

mod events;
mod health;
mod publish;
mod responses;
mod support;
mod tokens;
