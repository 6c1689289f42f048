//! Integration tests of the tracker service against real PostgreSQL and Kafka.

mod health;
