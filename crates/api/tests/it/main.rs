//! Integration tests of the api service against real PostgreSQL and Kafka.

mod health;
