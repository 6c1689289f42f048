//! The transactional outbox against real PostgreSQL and Kafka.

mod queries;
