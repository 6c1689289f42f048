//! Integration tests of the sender-worker service against real PostgreSQL and Kafka.

mod health;
