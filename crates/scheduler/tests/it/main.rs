//! Integration tests of the scheduler service against real PostgreSQL and Kafka.

mod batches;
mod deletes;
mod dispatch;
mod health;
mod outcomes;
mod progress;
mod reputation;
mod resolutions;
mod service;
mod webhook_events;
mod world;
