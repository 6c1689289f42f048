//! Integration tests of the scheduler service against real PostgreSQL and Kafka.

mod health;
