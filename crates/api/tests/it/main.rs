//! Integration tests of the api service against real PostgreSQL and Kafka.

mod api_keys;
mod contacts;
mod errors;
mod health;
mod import;
mod openapi;
mod support;
mod suppressions;
mod workspaces;
