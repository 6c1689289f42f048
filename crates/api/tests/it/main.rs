//! Integration tests of the api service against real PostgreSQL and Kafka.

mod api_keys;
mod errors;
mod health;
mod mailboxes;
mod openapi;
mod support;
mod workspaces;
