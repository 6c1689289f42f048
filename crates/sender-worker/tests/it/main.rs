//! Integration tests of the sender-worker service against real PostgreSQL and Kafka.

mod fake_smtp;
mod health;
mod smtp_pools;
