//! Integration tests of the webhooks service (real PostgreSQL, Kafka, HTTP receivers).
