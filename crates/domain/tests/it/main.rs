//! Integration tests of the domain crate against real PostgreSQL and Kafka (and the OAuth
//! test servers: Hydra and Dovecot).

mod batch_lanes;
mod contacts;
mod enrollments;
mod kafka;
mod messages;
mod migrations;
mod oauth_access;
mod oauth_tokens;
mod outbox;
mod prepared;
mod readiness;
mod schema;
mod sessions;
mod suppressions;
mod webhook_signatures;
mod xoauth2;
