//! Integration tests of the api service against real PostgreSQL and Kafka.

mod api_keys;
mod contacts;
mod contract;
mod enroll;
mod enrollments;
mod errors;
mod fixtures;
mod health;
mod import;
mod input_rules;
mod mailbox_health;
mod mailboxes;
mod messages;
mod oauth_connect;
mod openapi;
mod sequences;
mod support;
mod suppressions;
mod webhook_deliveries;
mod webhooks;
mod workspaces;
